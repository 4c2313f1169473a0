# overlay.nix: a nixpkgs overlay that gives every derivation made by
# stdenv.mkDerivation whose name is in a poison.nix set's names its serial
# (docs/formats.md), so a local build reaches the same .drv and output paths as
# 'poison build --by-name' on the closure built without it.
#
#   import nixpkgs {
#     overlays = [ (import ./nix/overlay.nix { poison = ./poison.nix; }) ];
#   }
#
# Arguments:
#   poison   the poison.nix set, or a path to it (validated: a set of the
#            wrong shape is an evaluation error naming the problem)
#   attrs    top-level attribute names poisoned explicitly, by the name of
#            their derivation: for packages not made by a wrapped stdenv
#            (builtins.derivation, a stdenv from another package set);
#            default none
#   stdenvs  top-level stdenv attributes to wrap; default stdenv and
#            stdenvNoCC. Stdenvs derived from these with .override
#            (overrideCC, gccStdenv, clangStdenv ...) inherit the wrapper.
#
# The wrapper is a stdenv adapter like those of pkgs/stdenv/adapters.nix: it
# overrides mkDerivationFromStdenv, reads the name of each derivation the
# original makes, and adds the serial with overrideAttrs when it is not 0,
# so .overrideAttrs by users keeps it. Derivations whose name is not
# poisoned are returned untouched.
{ poison, attrs ? [ ], stdenvs ? [ "stdenv" "stdenvNoCC" ] }:
final: prev:
let
  plib = import ./lib.nix;
  p = plib.load poison;

  # nixpkgs' default for a stdenv made without mkDerivationFromStdenv; both
  # the current ({ mkDerivation = ...; }) and the older (a function) shapes
  # of make-derivation.nix.
  defaultMkDerivationFromStdenv = stdenv:
    let
      r = import (prev.path + "/pkgs/stdenv/generic/make-derivation.nix")
        { inherit (prev) lib config; } stdenv;
    in
    if builtins.isFunction r then r else r.mkDerivation;

  wrapStdenv = plib.poisonStdenv p defaultMkDerivationFromStdenv;
  poisonDrv = plib.poisonDerivation p;

  missing = name: throw "poison overlay: there is no attribute '${name}' to poison (attrs argument)";
in
builtins.listToAttrs
  (map (name: { inherit name; value = wrapStdenv (prev.${name} or (missing name)); }) stdenvs
  ++ map (name: { inherit name; value = poisonDrv (prev.${name} or (missing name)); }) attrs)
