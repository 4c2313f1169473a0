# mkDerivation as nixpkgs' pkgs/stdenv/generic/make-derivation.nix shapes
# it: the arguments are a set or a function of the final attributes, the
# name is name or pname-version, pname, version and everything else but
# passthru and meta reach builtins.derivation, and overrideAttrs extends
# the attributes (f prev or f final prev) and runs the same pipeline again.
{ lib, config }:
stdenv:
let
  makeDerivationExtensible = rattrs:
    let
      args = rattrs (args // { inherit finalPackage overrideAttrs; });
      finalPackage = mkDerivationSimple overrideAttrs args;
      overrideAttrs = f0:
        let
          f = self: super:
            let x = f0 super; in
            if builtins.isFunction x then f0 self super else x;
        in
        makeDerivationExtensible (self: let super = rattrs self; in super // f self super);
    in
    finalPackage;

  mkDerivationSimple = overrideAttrs: attrs:
    let
      name = if attrs ? name then attrs.name else "${attrs.pname}-${attrs.version}";
      derivationArg = removeAttrs attrs [ "passthru" "meta" "finalPackage" "overrideAttrs" "buildCommand" ] // {
        inherit name;
        builder = stdenv.shell;
        args = [ "-c" (attrs.buildCommand or "echo ${name} > $out") ];
        inherit (stdenv) system;
        inherit stdenv;
      };
      drv = derivation derivationArg;
    in
    drv // (attrs.passthru or { }) // { inherit overrideAttrs; meta = attrs.meta or { }; };

  mkDerivation = fnOrAttrs:
    makeDerivationExtensible (if builtins.isFunction fnOrAttrs then fnOrAttrs else _: fnOrAttrs);
in
{
  inherit mkDerivation;
}
