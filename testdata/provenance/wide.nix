# Independent derivations for the provenance tests: `n` leaves that each
# sleep `sleep` seconds (so several build at once under -j) and one with
# two outputs. `nonce` makes the paths unique per test.
{ nonce ? "0", n ? 6, sleep ? "1" }:
let
  leaf = i: derivation {
    name = "leaf-${toString i}";
    inherit nonce;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "/bin/sleep ${sleep}; echo ${toString i} > $out" ];
  };
in
builtins.genList leaf n ++ [
  (derivation {
    name = "split";
    inherit nonce;
    outputs = [ "out" "dev" ];
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "echo out > $out; echo dev > $dev" ];
  })
]
