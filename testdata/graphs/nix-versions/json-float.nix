# Nix 2.8 and Nix 2.26 give the same expression different .drv and output
# paths when __structuredAttrs holds floats (builtins.toJSON differs alike):
#   Nix 2.8:  "f":[0.000123457,42,1.23457e+06,3.14159,1e+20]   (C++ stream, 6 digits)
#   Nix 2.26: "f":[0.000123456789,42.0,1234567.0,3.14159265,1e+20]   (shortest round trip)
# Every dependent moves too. Each Nix is reproduced exactly by the rewrite
# (TestModernNixVersions), but a lock's canonical paths for such
# derivations hold for one Nix version only.
{ poison ? {} }:
let
  p = n: if poison ? ${n} then { POISON_SERIAL = toString poison.${n}; } else { };
  mk = n: a: derivation ({ builder = "/bin/sh"; system = builtins.currentSystem; } // a // p n);
in rec {
  floats = mk "floats" { name = "floats"; __structuredAttrs = true; f = [ 0.000123456789 42.0 1234567.0 3.14159265 1.0e20 ]; };
  plain = mk "plain" { name = "plain-float"; f = 0.000123456789; };
  dep = mk "dep" { name = "dep"; v = "${floats} ${plain}"; };
}
