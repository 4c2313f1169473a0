# The fixture package set, with nix/overlay.nix applied when poison is
# given (a poison.nix set or a path to one, as a path or a string).
{ poison ? null, attrs ? [ ] }:
import ./. {
  overlays = if poison == null then [ ] else [ (import ../../nix/overlay.nix { inherit poison attrs; }) ];
}
