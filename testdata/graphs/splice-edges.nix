# Cases of the patching path of the rewrite (rewriteSpliced): references
# glued to ATerm escapes, several references in one value, changed .drv and
# output paths among the input sources (re-sorted), a multi-output
# dependency, a fixed-output derivation with a changed input, structured
# attrs with references next to escaped quotes, and files larger than the
# loader's arena slack.
{ poison ? {} }:
let
  p = n: if poison ? ${n} then { POISON_SERIAL = toString poison.${n}; } else { };
  mk = n: a: derivation ({ builder = "/bin/sh"; system = builtins.currentSystem; } // a // p n);
  nd = builtins.unsafeDiscardStringContext;
  dod = builtins.unsafeDiscardOutputDependency;
  hashOf = s: builtins.substring (builtins.stringLength builtins.storeDir + 1) 32 (nd s);
in rec {
  a = mk "a" { name = "a"; outputs = [ "out" "dev" "lib" ]; };
  a2 = mk "a2" { name = "a2"; };
  glued = mk "glued" {
    name = "glued";
    nl = "\n${hashOf "${a}"}\r${hashOf "${a.dev}"}\t${hashOf a2.drvPath}";
    bs = "\\${hashOf "${a}"}\\\\${hashOf "${a.lib}"}\"${hashOf "${a2}"}\"";
    run = "${hashOf "${a}"}${hashOf "${a.dev}"}${hashOf "${a2}"}x${hashOf a.drvPath}";
    deps = "${a.dev}:${a.lib}:${a2}";
    args = [ "-c" "echo ${a}\n\\${a.lib}" ];
  };
  srcs = mk "srcs" {
    name = "srcs";
    f1 = builtins.toFile "f1" "one";
    f2 = builtins.toFile "f2" "two";
    d1 = dod a.drvPath;
    d2 = dod a2.drvPath;
    d3 = dod glued.drvPath;
  };
  fod = mk "fod" {
    name = "fod";
    outputHashAlgo = "sha256";
    outputHashMode = "flat";
    outputHash = "0000000000000000000000000000000000000000000000000000";
    url = "${a.dev}";
  };
  fodUser = mk "fodUser" { name = "fod-user"; src = "${fod}"; g = "${glued}"; };
  json = mk "json" {
    name = "json";
    __structuredAttrs = true;
    outputs = [ "out" "bin" ];
    v = "\"${a}\":\\${a.dev}\n";
    nested = { k = [ "${a2}" { x = "\"${hashOf "${a.lib}"}\\"; } ]; "q\"k" = "${fodUser}"; };
  };
  big = mk "big" {
    name = "big";
    v = builtins.concatStringsSep "" (builtins.genList (i: "${a}\n\\${a2}\"") 2000);
    j = "${json.bin}";
  };
}
