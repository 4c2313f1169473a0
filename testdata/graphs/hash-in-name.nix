# A dependency's hash inside a derivation name (without string context):
# the name, the output paths' names and the .drv name all change with it.
{ poison ? {} }:
let
  p = n: if poison ? ${n} then { POISON_SERIAL = toString poison.${n}; } else { };
  mk = n: a: derivation ({ builder = "/bin/sh"; system = builtins.currentSystem; } // a // p n);
  hashOf = s: builtins.substring (builtins.stringLength builtins.storeDir + 1) 32 (builtins.unsafeDiscardStringContext s);
in rec {
  a = mk "a" { name = "a"; outputs = [ "out" "dev" ]; };
  named = mk "named" { name = "h-${hashOf "${a}"}-v1"; outputs = [ "out" "dev" ]; x = "${a.dev}"; };
  after = mk "after" { name = "after"; x = "${named.dev}"; y = baseNameOf "${named}"; };
}
