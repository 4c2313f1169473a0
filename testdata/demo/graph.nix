# A small derivation graph for the README demo. Every builder appends its
# name to a log file OUTSIDE the store, so the demo can show exactly which
# derivations were (re)built (Debian's Nix builds without a sandbox).
#
# `poison` is only used to show that Nix itself agrees with poison: it adds
# the serial attribute by hand, as if the expression had been edited.
{ log, poison ? { } }:
let
  mk = name: deps: derivation ({
    inherit name log;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    deps = map (d: "${d}") deps;
    args = [ "-c" ''
      echo "built $name" >> "$log"
      echo "$name from: $deps" > "$out"
    '' ];
  } // (if poison ? ${name} then { POISON_SERIAL = toString poison.${name}; } else { }));
in rec {
  zlib = mk "zlib-1.3" [ ];
  openssl = mk "openssl-3.0.13" [ zlib ];
  curl = mk "curl-8.5.0" [ openssl zlib ];
  docs = mk "docs-1.0" [ zlib ];
  app = mk "app-2.1" [ curl docs ];
}
