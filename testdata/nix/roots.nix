# The roots the tests instantiate, without the overlay (poison = null) or
# with nix/overlay.nix applied to the fixture.
{ poison ? null, attrs ? [ ] }:
let
  overlays = if poison == null then [ ] else [ (import ../../nix/overlay.nix { inherit poison attrs; }) ];
  pkgs = import ./. { inherit overlays; };
in
[ pkgs.app pkgs.leaf pkgs.curl pkgs.cacert ]
