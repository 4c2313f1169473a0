# A small graph for builds on remote hosts (internal/remotetest):
#
#   a ── b ── top     (each also reads ./input.txt, an input source)
#
# A builder writes the host's marker (/marker, seen only in the sandbox of
# a test host) into its output, so a test sees where it was built.
{ nonce ? "0" }:
let
  mk = name: deps: derivation {
    inherit name nonce deps;
    src = ./input.txt;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" ''
      m="built without a marker"
      if [ -r /marker ]; then read m < /marker; fi
      read s < "$src"
      printf '%s\n%s\n%s\n' "$m" "$s" "$deps" > "$out"
    '' ];
  };
in rec {
  a = mk "a" [ ];
  b = mk "b" [ a ];
  top = mk "top" [ b ];
}
