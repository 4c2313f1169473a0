# ATerm escaping: builder, args, env keys and values with quotes,
# backslashes, newlines, tabs, control bytes and UTF-8.
{ poison ? {} }:
let
  p = n: if poison ? ${n} then { POISON_SERIAL = toString poison.${n}; } else { };
  mk = n: a: derivation ({ builder = "/bin/sh"; system = builtins.currentSystem; } // a // p n);
in rec {
  keys = mk "keys" { name = "keys"; "k!" = "1"; "k\"q" = "2"; "K\\b" = "3"; "a b" = "4"; "é" = "5"; "k#" = "6"; "k\ttab" = "7"; PATH = "8"; _x = "9"; POISON_SERIA = "a"; POISON_SERIAL_ = "b"; };
  values = mk "values" { name = "values"; v = "q\"uote back\\slash nl\n tab\t cr\r é 日本 ✓ $HOME \${x}"; e = ""; n = null; t = true; f = false; i = 42; l = [ 1 "two" 3.5 true null ]; dep = "\"${keys}\"\n"; };
  raw = mk "raw" { name = "raw"; ctl = " end"; latin1 = "caf�"; json = builtins.toJSON { a = ""; }; __structuredAttrs = false; };
  rawJson = mk "rawJson" { name = "raw-json"; __structuredAttrs = true; ctl = " end"; latin1 = "caf�"; dep = "${raw}"; };
  builderQuote = mk "builderQuote" { name = "builder-quote"; builder = "/bin/s\"h\t"; args = [ "-c" "echo \"${values}\" \\ \n" ]; };
}
