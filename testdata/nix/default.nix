# A miniature nixpkgs for the tests of nix/overlay.nix (nixpkgs itself is
# not available offline). It keeps the shapes the overlay relies on:
#   import ./. { overlays = [ ... ]; }   a fixed point extended by overlays,
#                                        as lib.fix (foldl' (flip extends))
#   pkgs.path                            the tree, for
#                                        pkgs/stdenv/generic/make-derivation.nix
#   stdenv.override (old: { mkDerivationFromStdenv = ...; })
#   stdenv.mkDerivation                  name or pname-version, outputs,
#                                        passthru, __structuredAttrs, a
#                                        finalAttrs function, overrideAttrs
#                                        taking prev: or final: prev:
# Nothing here is built: the tests only instantiate.
{ overlays ? [ ], config ? { } }:
let
  lib = import ./lib.nix;
  base = import ./pkgs/top-level/packages.nix { inherit lib config; path = ./.; };
in
lib.fix (builtins.foldl' (f: overlay: lib.extends overlay f) base overlays)
