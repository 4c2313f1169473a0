# The roots the tests instantiate, without the overlay (poison = null) or
# with nix/overlay.nix applied to the fixture.
{ poison ? null, attrs ? [ ] }:
let pkgs = import ./pkgs.nix { inherit poison attrs; }; in
[ pkgs.app pkgs.leaf pkgs.curl pkgs.cacert pkgs.curl-bumped pkgs.libressl ]
