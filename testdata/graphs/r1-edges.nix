# R1: every way a derivation can mention another, with and without an edge.
{ poison ? {} }:
let
  p = n: if poison ? ${n} then { POISON_SERIAL = toString poison.${n}; } else { };
  mk = n: a: derivation ({ builder = "/bin/sh"; system = builtins.currentSystem; } // a // p n);
  nd = builtins.unsafeDiscardStringContext;
  hashOf = s: builtins.substring (builtins.stringLength builtins.storeDir + 1) 32 (nd s);
in rec {
  a = mk "a" { name = "a"; outputs = [ "out" "dev" ]; };
  text = mk "text" { name = "text"; mention = nd "${a}"; drvmention = nd a.drvPath; };
  base = mk "base" { name = "base"; b = baseNameOf "${a.dev}"; };
  hash = mk "hash" { name = "hash"; h = hashOf "${a}"; hd = hashOf a.drvPath; };
  dod = mk "dod" { name = "dod"; d = builtins.unsafeDiscardOutputDependency a.drvPath; };
  deep = mk "deep" { name = "deep"; d = "${a.drvPath}"; o = "${a}"; };
  closure = mk "closure" { name = "closure"; d = "${deep.drvPath}"; t = nd "${text}"; };
  builderRef = mk "builderRef" { name = "builder-ref"; builder = "${a}/bin/sh"; args = [ "-c" "${base}" (nd "${hash}") ]; };
}
