# R6: fixed-output derivations with one output path, twins depending on
# each, and a dependent whose inputs have equal hash modulo: Nix 2.8 merges
# their output sets.
{ poison ? {} }:
let
  p = n: if poison ? ${n} then { POISON_SERIAL = toString poison.${n}; } else { };
  mk = n: a: derivation ({ builder = "/bin/sh"; system = builtins.currentSystem; } // a // p n);
  hash = "0000000000000000000000000000000000000000000000000000000000000001";
in rec {
  f1 = mk "f1" { name = "src.tar"; outputHashAlgo = "sha256"; outputHash = hash; args = [ "curl" ]; };
  f2 = mk "f2" { name = "src.tar"; outputHashAlgo = "sha256"; outputHash = hash; builder = "/bin/bash"; args = [ "wget" ]; };
  r1 = mk "r1" { name = "tree"; outputHashMode = "recursive"; outputHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAI="; };
  x1 = mk "x1" { name = "twin"; outputs = [ "out" "dev" "lib" ]; src = "${f1}"; };
  x2 = mk "x2" { name = "twin"; outputs = [ "out" "dev" "lib" ]; src = "${f2}"; };
  y = mk "y" { name = "y"; a = "${x1.dev}"; b = "${x2.lib}"; c = "${r1}"; };
  fboth = mk "fboth" { name = "fboth"; a = "${f1}"; b = "${f2}"; c = "${r1}"; };
  z = mk "z" { name = "z"; __structuredAttrs = true; a = [ "${x1}" "${x2.dev}" "${y}" "${fboth}" ]; };
}
