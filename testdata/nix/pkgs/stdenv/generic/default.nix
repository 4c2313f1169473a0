# A stdenv like nixpkgs' pkgs/stdenv/generic: a derivation (every package
# depends on it) carrying mkDerivation, made from the mkDerivationFromStdenv
# argument, and override, which re-applies this function to the original
# arguments (defaults not included) updated by a set or a function of them.
argsStdenv@{ lib
, config
, name ? "stdenv-fixture"
, system ? builtins.currentSystem
, shell ? "/bin/sh"
, hasCC ? true
, mkDerivationFromStdenv ? stdenv: (import ./make-derivation.nix { inherit lib config; } stdenv).mkDerivation
}:
let
  stdenv = derivation
    {
      inherit name system;
      builder = shell;
      args = [ "-c" "echo 'cc: ${if hasCC then "yes" else "no"}' > $out" ];
    } // {
    inherit shell system hasCC;
    mkDerivation = mkDerivationFromStdenv stdenv;
    override = f: import ./default.nix (argsStdenv // (if builtins.isFunction f then f argsStdenv else f));
  };
in
stdenv
