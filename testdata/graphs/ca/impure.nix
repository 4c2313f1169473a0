# Impure derivations (experimental feature impure-derivations): hash modulo
# "impure", dependents deferred. Reproduce Nix or refuse with a clear error.
{ poison ? {} }:
let
  p = n: if poison ? ${n} then { POISON_SERIAL = toString poison.${n}; } else { };
  mk = n: a: derivation ({ builder = "/bin/sh"; system = builtins.currentSystem; } // a // p n);
in rec {
  a = mk "a" { name = "a"; };
  imp = mk "imp" { name = "imp"; __impure = true; dep = "${a}"; };
  b = mk "b" { name = "b"; x = "${imp}"; };
  c = mk "c" { name = "c"; __structuredAttrs = true; x = [ "${b}" ]; };
}
