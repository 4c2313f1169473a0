# n fixed-output derivations that differ (their number) but have one
# output path, holding "NONCE\n" (hash: its sha256): built at once on
# several machines, every build copies the same path home.
{ nonce, hash, n ? 4 }:
builtins.genList (i: derivation {
  name = "same-output";
  inherit nonce;
  number = i;
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "/bin/sleep 1; echo \"$nonce\" > $out" ];
  outputHashMode = "flat";
  outputHashAlgo = "sha256";
  outputHash = hash;
}) n
