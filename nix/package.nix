# package.nix: the poison CLI, for pkgs.callPackage (flake.nix uses it for
# packages.<system>.default and overlays.default).
{ lib, buildGoModule, vendorHash ? null }:
buildGoModule {
  pname = "poison";
  version = "0.1.0";

  # The repository without .git, editor files and result links.
  src = lib.cleanSource ../.;

  # NAR hash of 'go mod vendor' for go.mod/go.sum and the packages the
  # module imports. It changes whenever a dependency or an import of a new
  # module does: recompute it with nix/vendor-hash.sh (offline, from the Go
  # module cache), or build once and copy the hash Nix reports ("got:").
  # flake.nix passes the current value.
  inherit vendorHash;

  subPackages = [ "cmd/poison" "cmd/poison-journal-hook" ];

  # The test suite needs a real Nix store and nix-daemon, which the build
  # sandbox does not have: run it with scripts/test.sh instead.
  doCheck = false;

  ldflags = [ "-s" "-w" ];

  meta = {
    description = "Input invalidation for Nix: make a bad build result unreachable without touching the binary cache";
    homepage = "https://github.com/poison-nix/poison";
    mainProgram = "poison";
  };
}
