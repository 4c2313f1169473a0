# Derivations covering what the rewrite must reproduce byte for byte
# (docs/rewrite.md R1-R8). builder/golden_test.go -update instantiates this file
# twice with real Nix, serial = 0 (clean) and serial = 5 (poisoned), copies
# both closures into store/ and records the roots in cases.json; without
# -update the test rewrites the clean closures and compares with Nix's files.
{ serial ? 0 }:
let
  s = if serial == 0 then {} else { POISON_SERIAL = toString serial; };
  mk = attrs: derivation ({ system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; } // attrs);
  fod = name: extra: mk ({ inherit name; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "0000000000000000000000000000000000000000000000000000000000000000"; } // extra);
  ca = attrs: mk ({ __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; } // attrs);

  # the poisoned derivation of the plain cases
  lib = mk ({ name = "lib"; outputs = [ "out" "dev" "doc" ]; } // s);
  escapes = mk {
    name = "escapes";
    builder = "/bin/sh\t\"quoted\" \\ back";
    args = [ "-c" "printf 'a\tb\nc\rd' > $out; echo ${lib.dev}" "\"" "\\" "" ];
    weird = "tab\tnl\ncr\rquote\"bs\\ \x01\x1f latin\xe9 ü";
    dep = lib;
  };
  structured = mk {
    name = "structured";
    __structuredAttrs = true;
    PATH = "/bin";
    POISON_A = 1;
    POISON_SERIAL_Z = "z";
    _under = 1.5;
    floats = [ 0.1 1.0e-7 123456789.0 (-2.5) ];
    big = 1234567890123;
    str = "q\"b\\n\nt\tc\x01 é";
    nested = { z = 1; A = [ { y = lib; x = null; } ]; };
    deps = [ lib.dev "${lib}/bin" ];
    flag = true;
  };
  srcs = fod "srcs.tar" { url = "https://example.org/x"; };
  srcRec = fod "src-rec" { outputHashMode = "recursive"; outputHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE="; };
  srcSha1 = fod "src-sha1" { outputHashAlgo = "sha1"; outputHash = "0000000000000000000000000000000000000000"; };
  uses = mk {
    name = "uses";
    a = srcs; b = srcRec; c = srcSha1; d = lib.doc;
    drv = lib.drvPath;
    onlySrc = builtins.unsafeDiscardOutputDependency escapes.drvPath;
    text = builtins.unsafeDiscardStringContext "${structured}";
    base = baseNameOf (builtins.unsafeDiscardStringContext (toString lib.dev));
  };
  top = mk { name = "top"; __structuredAttrs = true; x = [ uses escapes structured ]; };

  # a poisoned fixed-output derivation
  fodPoisoned = fod "fod-poisoned" s;
  afterFod = mk { name = "after-fod"; src = fodPoisoned; };

  # floating content-addressed (needs ca-derivations)
  caLib = ca ({ name = "ca-lib"; outputs = [ "out" "dev" ]; } // s);
  caUser = mk { name = "ca-user"; x = caLib; y = "${caLib.dev}/include"; };
  caTop = mk { name = "ca-top"; x = caUser; };
in
{
  inherit top afterFod caTop;
  # the derivations carrying the serial, for the lock
  targets = { inherit lib fodPoisoned caLib; };
}
