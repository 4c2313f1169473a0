# Floating content-addressed derivations (experimental feature
# ca-derivations): their outputs are unknown until built, so dependents
# mention them through placeholders and have deferred outputs (docs/rewrite.md R4,
# R6, R7). The rewrite must reproduce Nix or refuse with a clear error.
{ poison ? {} }:
let
  p = n: if poison ? ${n} then { POISON_SERIAL = toString poison.${n}; } else { };
  mk = n: a: derivation ({ builder = "/bin/sh"; system = builtins.currentSystem; } // a // p n);
in rec {
  a = mk "a" { name = "a"; outputs = [ "out" "dev" ]; };
  ca = mk "ca" { name = "ca"; __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputs = [ "out" "dev" ]; dep = "${a.dev}"; };
  b = mk "b" { name = "b"; x = "${ca}"; y = "${ca.dev}"; z = "${a}"; };
  c = mk "c" { name = "c"; __structuredAttrs = true; x = [ "${b}" "${ca}" ]; };
  d = mk "d" { name = "d"; __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; x = "${c}"; };
  e = mk "e" { name = "e"; x = "${d}"; y = builtins.unsafeDiscardStringContext "${d}"; };
}
