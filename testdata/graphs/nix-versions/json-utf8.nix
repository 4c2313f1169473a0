# Nix 2.26 refuses what Nix 2.8 writes: a __structuredAttrs string that is
# not UTF-8. Nix 2.8 copies the byte raw into __json; Nix 2.26 (nlohmann
# json) fails to instantiate it:
#   error: [json.exception.type_error.316] incomplete UTF-8 string; last byte: 0xE9
# The same string in a plain derivation is written raw by both
# (../latin1-env.nix). TestModernNixVersions checks both behaviours.
{ poison ? {} }:
{
  json = derivation ({
    name = "json-latin1"; builder = "/bin/sh"; system = builtins.currentSystem;
    __structuredAttrs = true; v = "café";
  } // (if poison ? json then { POISON_SERIAL = toString poison.json; } else { }));
}
