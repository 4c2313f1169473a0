# A small package set: packages that depend on each other through several
# stdenvs, a multi-output package, a fixed-output source, a package with
# __structuredAttrs, a builtins.derivation, overrideAttrs of a package, a
# reference whose string context was discarded, and a package downstream
# of nothing.
{ lib, config, path }:
self: {
  inherit lib config path;

  stdenv = import ../stdenv/generic { inherit lib config; };
  stdenvNoCC = self.stdenv.override { hasCC = false; };

  zlib = self.stdenv.mkDerivation {
    pname = "zlib";
    version = "1.3";
  };

  openssl = self.stdenv.mkDerivation {
    pname = "openssl";
    version = "3.0.13";
    outputs = [ "out" "dev" ];
    buildInputs = [ self.zlib ];
    buildCommand = "mkdir $out $dev";
  };

  # Same name as openssl: the name fallback poisons it too.
  openssl-nofips = self.openssl.overrideAttrs (old: {
    configureFlags = [ "no-fips" ];
  });

  curl = self.stdenv.mkDerivation (finalAttrs: {
    pname = "curl";
    version = "8.5.0";
    buildInputs = [ self.openssl self.openssl.dev self.zlib ];
    buildCommand = "echo ${self.openssl.dev}/include ${finalAttrs.pname} > $out";
    passthru.isCurl = true;
  });

  # overrideAttrs that change the name: the serial follows the new name.
  curl-bumped = self.curl.overrideAttrs (old: { version = "8.6.0"; });
  libressl = self.openssl.overrideAttrs (final: prev: { pname = "libressl"; });

  cacert = self.stdenvNoCC.mkDerivation {
    name = "nss-cacert-3.98";
  };

  hello-src = self.stdenvNoCC.mkDerivation {
    name = "hello-2.12.tar.gz";
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    buildCommand = "touch $out";
  };

  hello = (self.stdenv.mkDerivation {
    pname = "hello";
    version = "2.12";
    src = self.hello-src;
    buildInputs = [ self.curl ];
  }).overrideAttrs (final: prev: {
    doCheck = true;
  });

  python = self.stdenv.mkDerivation {
    pname = "python";
    version = "3.12";
    __structuredAttrs = true;
    buildInputs = [ self.curl self.cacert ];
    nested = { z = 1.5; a = [ "x" self.zlib ]; "PATH" = "/bin"; };
    buildCommand = "echo python > $out";
  };

  tool = derivation {
    name = "tool-1.0";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "echo ${self.zlib} > $out" ];
  };

  app = self.stdenv.mkDerivation {
    name = "app-1.0";
    buildInputs = [ self.hello self.python self.tool self.openssl.dev self.openssl-nofips ];
    opensslHash = builtins.unsafeDiscardStringContext (builtins.substring 0 32 (baseNameOf self.openssl));
  };

  leaf = self.stdenv.mkDerivation {
    name = "leaf-1.0";
  };
}
