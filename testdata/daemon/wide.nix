# n trivial derivations for benchmarks: node i depends on nodes i/2 and
# i/3, so every node depends on node 0 (poison it to rebuild them all) and
# the graph is shallow. `top` depends on every node. `poison` = "0" puts
# POISON_SERIAL = "1" on node 0, as the overlay would.
{ n ? 1000, nonce ? "0", poison ? "" }:
let
  node = i: derivation ({
    name = "w${toString i}";
    inherit nonce;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    deps = if i == 0 then [ ] else [ (builtins.elemAt nodes (i / 2)) (builtins.elemAt nodes (i / 3)) ];
    args = [ "-c" "echo $deps > $out" ];
  } // (if poison == toString i then { POISON_SERIAL = "1"; } else { }));
  nodes = builtins.genList node n;
in {
  w0 = builtins.elemAt nodes 0;
  top = derivation {
    name = "wide-top";
    inherit nonce;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    deps = nodes;
    args = [ "-c" "echo $deps > $out" ];
  };
}
