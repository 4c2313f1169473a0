# Bytes that are not UTF-8 (latin1 e-acute 0xE9, 0xFF) in plain derivations:
# in an env value, an env key, an argument and the builder, with dependents
# mentioning them. Nix 2.8 and Nix 2.26 both write them raw into the ATerm
# and agree on every path (in __structuredAttrs Nix 2.26 refuses them, see
# nix-versions/json-utf8.nix).
{ poison ? {} }:
let
  p = n: if poison ? ${n} then { POISON_SERIAL = toString poison.${n}; } else { };
  mk = n: a: derivation ({ builder = "/bin/sh"; system = builtins.currentSystem; } // a // p n);
in rec {
  raw = mk "raw" { name = "latin1"; v = "café ÿ end"; "kéy" = "1"; args = [ "-c" "echo café" ]; };
  builderRaw = mk "builderRaw" { name = "builder-latin1"; builder = "/bin/café"; dep = "${raw}"; };
  dep = mk "dep" { name = "dep"; v = "${raw}/café ${builderRaw}"; };
  json = mk "json" { name = "json"; __structuredAttrs = true; v = "cafÃ© ${dep}"; d = [ "${raw}" ]; };
}
