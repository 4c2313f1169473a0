# A dependency's hash inside attribute names: env keys of a plain
# derivation and JSON keys of a structured one. When the hash changes, Nix
# writes the new key, in its sorted place.
{ poison ? {} }:
let
  p = n: if poison ? ${n} then { POISON_SERIAL = toString poison.${n}; } else { };
  mk = n: a: derivation ({ builder = "/bin/sh"; system = builtins.currentSystem; } // a // p n);
  hashOf = s: builtins.substring (builtins.stringLength builtins.storeDir + 1) 32 (builtins.unsafeDiscardStringContext s);
in rec {
  a = mk "a" { name = "a"; };
  envKey = mk "envKey" ({ name = "env-key"; k-5 = "x"; k-f = "x"; k-m = "x"; k-s = "x"; k-z = "x"; dep = "${a}"; }
    // { ${"k-" + hashOf "${a}"} = "v"; });
  jsonKey = mk "jsonKey" ({ name = "json-key"; __structuredAttrs = true; k-5 = 1; k-f = 2; k-m = 3; k-s = 4; k-z = 5; dep = "${a}";
    nested = { ${hashOf "${a}"} = 1; "5" = 2; m = 3; z = 4; }; }
    // { ${"k-" + hashOf "${a}"} = "v"; });
}
