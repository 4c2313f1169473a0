# Edges of the format: an empty env key, output names with - _ and capitals,
# 1 MB values (plain and __json, the latter all quotes and backslashes)
# ending in a reference.
{ poison ? {} }:
let
  p = n: if poison ? ${n} then { POISON_SERIAL = toString poison.${n}; } else { };
  mk = n: a: derivation ({ builder = "/bin/sh"; system = builtins.currentSystem; } // a // p n);
in rec {
  a = mk "a" { name = "a"; outputs = [ "out" "dev-1" "lib_x" "Bin" ]; "" = "empty key"; };
  big = mk "big" { name = "big"; v = builtins.concatStringsSep "" (builtins.genList (i: "0123456789") 100000) + "${a.dev-1}"; j = "${a.Bin}"; };
  sbig = mk "sbig" { name = "sbig"; __structuredAttrs = true; v = builtins.concatStringsSep "" (builtins.genList (i: "\"\\") 200000) + "${a.lib_x}"; };
}
