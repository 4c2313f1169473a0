# n independent derivations that each sleep `sleep` seconds (0: none) and
# write the marker of the host that built them (a trivial output).
{ nonce, n, sleep ? "0" }:
builtins.genList (i: derivation {
  name = "dispatch-bench-${toString i}";
  inherit nonce;
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" ''
    ${if sleep == "0" then "" else "/bin/sleep ${sleep}"}
    m="built here"; [ -e /marker ] && read m < /marker
    echo "$m" > $out
  '' ];
}) (builtins.fromJSON n)
