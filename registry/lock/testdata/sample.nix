# poison.nix: the serials of a poison registry (docs/formats.md), written by
# 'poison export nix' from poison.lock. Do not edit: export it again.
# Consume it with nix/lib.nix or nix/overlay.nix from the poison flake.
{
  derivations = {
    "0a0a0n92z10kb50fggvwqzi15jj32g5b-a.drv" = 1;
    "6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv" = 2;
  };
  env = "POISON_SERIAL";
  names = {
    "b" = 3;
    "openssl-3.0.13" = 1;
  };
  outputs = {
    "bgzy1gmnwailjvdn2v79cvkn4xmr45v8-b" = 3;
  };
  registry = {
    commit = "abababababababababababababababababababab";
    ref = "main";
    url = "file:///srv/registry";
  };
  storeDir = "/nix/store";
  version = 1;
}
