# Undecidable reference (text without an edge): x1 and x2 share every output path (they differ
# only in which of two colliding fixed-output inputs they use). Poisoning one
# of them changes its outputs only, and a dependent that mentions the shared
# path textually, or lists the same output of both, does not say which twin
# it meant. The rewrite must reproduce Nix or refuse with an error naming the
# derivation; it must never guess.
{ poison ? {} }:
let
  p = n: if poison ? ${n} then { POISON_SERIAL = toString poison.${n}; } else { };
  mk = n: a: derivation ({ builder = "/bin/sh"; system = builtins.currentSystem; } // a // p n);
  hash = "0000000000000000000000000000000000000000000000000000000000000002";
in rec {
  f1 = mk "f1" { name = "src.tar"; outputHashAlgo = "sha256"; outputHash = hash; args = [ "one" ]; };
  f2 = mk "f2" { name = "src.tar"; outputHashAlgo = "sha256"; outputHash = hash; args = [ "two" ]; };
  x1 = mk "x1" { name = "twin"; outputs = [ "out" "dev" ]; src = "${f1}"; };
  x2 = mk "x2" { name = "twin"; outputs = [ "out" "dev" ]; src = "${f2}"; };
  text = mk "text" { name = "text"; t = builtins.unsafeDiscardStringContext "${x2}"; };
  after = mk "after" { name = "after"; a = "${text}"; };
}
