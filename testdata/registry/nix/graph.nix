# A two-node graph for the poison add tests: b depends on both outputs of a.
# With --arg serial N, a carries the serial attribute, as a rewritten
# (poisoned) closure would: poison add must record the canonical paths,
# those of the graph instantiated without it.
{ serial ? null, tag ? "t0" }:
let
  mk = attrs: derivation ({ system = builtins.currentSystem; builder = "/bin/sh"; } // attrs);
  a = mk ({ name = "a"; outputs = [ "out" "dev" ]; args = [ "-c" "echo a ${tag} > $out; echo d > $dev" ]; }
    // (if serial == null then { } else { POISON_SERIAL = toString serial; }));
  b = mk { name = "b"; args = [ "-c" "echo ${a} ${a.dev} > $out" ]; };
in { inherit a b; }
