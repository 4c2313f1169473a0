# A small derivation graph for the daemon and build tests.
#
#   a ── b ── c ──┐
#   │             top
#   └──── d ──────┘
#
# Every builder appends its name to the file `log` OUTSIDE the store
# (the sandbox is off), so a test can see exactly which builders ran.
# `nonce` makes the paths unique per test; `fail` names a node whose
# builder fails; `slow` names a node that logs "<name>-started", then
# sleeps `sleepSecs` seconds before finishing; `poison` names a node that
# carries POISON_SERIAL = "1", as the Nix overlay would write it.
{ nonce ? "0", log ? "/dev/null", fail ? "", slow ? "", sleepSecs ? "5", poison ? "" }:
let
  mk = name: deps: derivation ({
    inherit name nonce log deps;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" ''
      ${if name == slow then ''echo "${name}-started" >> "$log"; /bin/sleep ${sleepSecs}'' else ""}
      echo "${name}" >> "$log"
      echo "building ${name}"
      ${if name == fail then ''echo "${name}: failing on purpose"; exit 1'' else ""}
      echo "$deps" > "$out"
    '' ];
  } // (if name == poison then { POISON_SERIAL = "1"; } else { }));
in rec {
  a = mk "a" [ ];
  b = mk "b" [ a ];
  c = mk "c" [ b ];
  d = mk "d" [ a ];
  top = mk "top" [ c d ];
}
