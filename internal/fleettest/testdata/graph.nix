# a ── b ── top, a ── c ── top, and k (needs the kvm feature). Every
# builder reads its inputs (they must have been copied to the host it runs
# on) and writes the host's marker, then its inputs' content.
{ nonce, sleep ? "0", slow ? "", fail ? "" }:
let
  mk = name: deps: extra: derivation ({
    inherit name nonce deps;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" ''
      ${if name == slow then "/bin/sleep ${sleep}" else ""}
      ${if name == fail then "echo failing ${name}; exit 3" else ""}
      m="built here"; [ -e /marker ] && read m < /marker
      echo "$m" > $out
      for d in $deps; do read x < $d; echo "$x" >> $out; done
    '' ];
  } // extra);
in rec {
  a = mk "a" [ ] { };
  b = mk "b" [ a ] { };
  c = mk "c" [ a ] { };
  top = mk "top" [ b c ] { };
  k = mk "k" [ a ] { requiredSystemFeatures = [ "kvm" ]; };
}
