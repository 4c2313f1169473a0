{
  description = "poison: input invalidation for Nix, make a bad build result unreachable without touching the binary cache";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # Recompute with nix/vendor-hash.sh whenever go.mod, go.sum or the
      # set of imported modules changes (see nix/package.nix).
      vendorHash = "sha256-UgB34XQyoTj42UPIezRzypoLMp5za/aoJBnPHf/6jgA=";

      # go.mod requires Go 1.26: nixpkgs' default Go must be at least that.
      poisonFor = pkgs: pkgs.callPackage ./nix/package.nix { inherit vendorHash; };
    in
    {
      # Functions over a poison.nix set (nix/lib.nix), and
      #   lib.overlay { poison = ./poison.nix; attrs = [ ]; stdenvs = [ ... ]; }
      # the nixpkgs overlay that poisons derivations by name (nix/overlay.nix).
      lib = import ./nix/lib.nix // { overlay = import ./nix/overlay.nix; };

      # Adds the poison CLI as pkgs.poison. Poisoning needs a poison.nix, so
      # it is the overlay returned by lib.overlay, not this one.
      overlays.default = final: prev: { poison = poisonFor final; };

      packages = forAllSystems (pkgs: rec {
        poison = poisonFor pkgs;
        default = poison;
      });
    };
}
