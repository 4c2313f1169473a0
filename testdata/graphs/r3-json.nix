# R3: where the attribute goes in __json, and what must survive untouched.
{ poison ? {} }:
let
  p = n: if poison ? ${n} then { POISON_SERIAL = toString poison.${n}; } else { };
  mk = n: a: derivation ({ builder = "/bin/sh"; system = builtins.currentSystem; } // a // p n);
in rec {
  empty = mk "empty" { name = "empty"; __structuredAttrs = true; };
  around = mk "around" {
    name = "around";
    __structuredAttrs = true;
    PATH = "/bin";
    POISON = 1;
    POISON_SERIA = 2;
    POISON_SERIAL_ = 3;
    POISON_SERIALZ = 4;
    POISONS = 5;
    _x = 6;
    a = 7;
    nested = { POISON_SERIAL = "inner"; POISON_SERIALZ = [ ]; PATH = { }; };
    lookalike = "\"POISON_SERIAL\":\"9\",";
  };
  values = mk "values" {
    name = "values";
    __structuredAttrs = true;
    outputs = [ "out" "dev" ];
    floats = [ 3.14159265 0.1 1.0e-7 1.0e20 100000.0 1234567.0 ];
    ints = [ 0 (-1) 123456789012 ];
    bools = [ true false null ];
    text = "q\"uote back\\slash nl\n tab\t cr\r é 日本 ctl";
    dep = "${empty} ${around}";
    deps = { a = [ "${around}" { b = "${empty}"; } ]; };
  };
  last = mk "last" { name = "last"; __structuredAttrs = true; zzz = "${values.dev}"; };
  first = mk "first" { name = "first"; __structuredAttrs = true; A = 1; B = "${last}"; };
}
