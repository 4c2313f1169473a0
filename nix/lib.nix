# lib.nix: functions over a poison.nix attribute set (docs/formats.md), the file
# 'poison export nix' (or 'poison resolve --nix FILE') writes:
#
#   { derivations = { "<hash>-b.drv" = 1; }; env = "POISON_SERIAL";
#     names = { "b" = 1; }; outputs = { "<hash>-b" = 1; };
#     registry = { commit = "..."; ref = "..."; url = "..."; };
#     storeDir = "/nix/store"; version = 1; }
#
# Only env and names are required (a hand-written set may omit the rest);
# any other attribute, a wrong type or a serial below 1 is an evaluation
# error naming the problem, never a silent no-op.
#
# Nix code matches derivations by name only: the set's derivations and
# outputs are keyed by canonical store paths, which an evaluation cannot
# know without instantiating the unpoisoned closure. A name's serial counts
# every entry naming that name or a derivation of that name, so it is at
# least the serial of any of its derivations, and a derivation gets exactly
# the serial 'poison build --by-name' gives it.
#
#   plib = import ./nix/lib.nix;
#   p = plib.load ./poison.nix;                  # import and validate
#   plib.serialFor p "openssl-3.0.13"           # 2, or 0
#   derivation (plib.addSerial p { name = "b"; builder = ...; system = ...; })
#   plib.poisonDerivation p pkgs.hello           # via overrideAttrs
let
  inherit (builtins)
    all attrNames concatStringsSep elem filter hasAttr head isAttrs isInt
    isString match seq toString typeOf;

  known = [ "derivations" "env" "names" "outputs" "registry" "storeDir" "version" ];
  required = [ "env" "names" ];

  # Nix's store path hash alphabet (nixbase32).
  hashRE = "[0123456789abcdfghijklmnpqrsvwxyz]{32}";

  a = t: if t == "int" then "an int" else "a ${t}";

  # check label p: true, or a throw naming the first problem found.
  check = label: p:
    let
      fail = msg: throw "${label}: ${msg}";
      serials = field: keyOk: keyDesc: s:
        if !isAttrs s then
          fail "'${field}' must be an attribute set of serials, got ${a (typeOf s)}"
        else
          all
            (k:
              let v = s.${k}; in
              if !keyOk k then
                fail "${field} key \"${k}\" is not ${keyDesc}"
              else if !isInt v then
                fail "${field}.\"${k}\" must be an integer serial, got ${a (typeOf v)}"
              else if v < 1 then
                fail "${field}.\"${k}\" = ${toString v}: serials must be at least 1"
              else true)
            (attrNames s);
      strings = field: s: fields:
        if !isAttrs s then
          fail "'${field}' must be an attribute set, got ${a (typeOf s)}"
        else
          let extra = filter (k: !elem k fields) (attrNames s); in
          if extra != [ ] then
            fail "unknown attribute '${field}.${head extra}' (expected ${concatStringsSep ", " fields})"
          else
            all
              (k: isString s.${k} || fail "'${field}.${k}' must be a string, got ${a (typeOf s.${k})}")
              (attrNames s);
      missing = filter (k: !hasAttr k p) required;
      unknown = filter (k: !elem k known) (attrNames p);
    in
    if !isAttrs p then
      fail "expected the attribute set written by 'poison export nix', got ${a (typeOf p)}"
    else if missing != [ ] then
      fail "missing attribute '${head missing}' (is this the output of 'poison export nix'?)"
    else if unknown != [ ] then
      fail "unknown attribute '${head unknown}' (expected ${concatStringsSep ", " known}); a newer poison may have written it, update the poison flake input"
    else if p ? version && !(isInt p.version) then
      fail "'version' must be an integer, got ${a (typeOf p.version)}"
    else if (p.version or 1) != 1 then
      fail "version ${toString p.version} is not supported (this nix/lib.nix reads version 1); update the poison flake input"
    else if !isString p.env then
      fail "'env' must be a string, got ${a (typeOf p.env)}"
    else if match "[A-Za-z_][A-Za-z0-9_]*" p.env == null then
      fail "env \"${p.env}\" is not a valid attribute name"
    else if p ? storeDir && !(isString p.storeDir) then
      fail "'storeDir' must be a string, got ${a (typeOf p.storeDir)}"
    else
      serials "names" (k: k != "") "a derivation name" p.names
      && serials "derivations" (k: match "${hashRE}-.+\\.drv" k != null) "a .drv store path base name" (p.derivations or { })
      && serials "outputs" (k: match "${hashRE}-.+" k != null) "a store path base name" (p.outputs or { })
      && strings "registry" (p.registry or { }) [ "commit" "ref" "url" ];

  validateAs = label: p: seq (check label p) p;

  # The serial attribute added to attrs, or attrs unchanged for serial 0.
  withSerialValidated = p: serial: attrs:
    if !isInt serial || serial < 0 then
      throw "poison withSerial: the serial must be a non-negative integer, got ${if isInt serial then toString serial else a (typeOf serial)}"
    else if serial == 0 then attrs
    else attrs // { ${p.env} = toString serial; };
in
rec {
  # validate poison: poison itself when it has the shape of a poison.nix
  # set, else an evaluation error naming the problem.
  validate = validateAs "poison.nix";

  # load x: x if it is a poison.nix set, else import x (a path); validated,
  # with the path in error messages.
  load = x: if isAttrs x then validate x else validateAs (toString x) (import x);

  # serialFor poison name: the name-based serial of a derivation name, 0
  # when the name is not poisoned. Partially apply it once
  # (s = serialFor poison) to validate only once.
  serialFor = poison:
    let p = validate poison; in
    name: p.names.${name} or 0;

  # withSerial poison serial attrs: attrs (the arguments of derivation or
  # mkDerivation) with the serial attribute set to the decimal serial, or
  # attrs untouched when serial is 0. A plain derivation gets it as an
  # environment variable; with __structuredAttrs = true Nix puts the same
  # top-level attribute into __json, exactly where poison's rewrite puts it.
  withSerial = poison:
    let p = validate poison; in
    withSerialValidated p;

  # addSerial poison attrs: withSerial with the serial of attrs.name (or
  # "pname-version"), for attribute sets given to builtins.derivation or
  # to a mkDerivation that names derivations this way.
  addSerial = poison:
    let
      p = validate poison;
      s = serialFor p;
    in
    attrs:
    let
      name =
        if attrs ? name then attrs.name
        else if attrs ? pname && attrs ? version then "${attrs.pname}-${toString attrs.version}"
        else throw "poison addSerial: the attributes have neither name nor pname and version; use withSerial with serialFor";
    in
    withSerialValidated p (s name) attrs;

  # poisonDerivation poison drv: drv with its serial, found by drv.name;
  # a derivation with serial 0, or already carrying its serial, keeps its
  # paths. Derivations made by a nixpkgs-style mkDerivation get the
  # attribute with overrideAttrs, and their overrideAttrs is wrapped so
  # that an override looks the name up again: bumping version or renaming
  # a package with .overrideAttrs gives it the serial of its new name, as
  # 'poison build --by-name' would (the .overrideAttrs of an output such as
  # drv.dev is not wrapped). Derivations made by builtins.derivation are
  # re-made from drvAttrs, keeping the selected output.
  poisonDerivation = poison:
    let
      p = validate poison;
      s = serialFor p;
      set = drv: value:
        if drv ? overrideAttrs then drv.overrideAttrs (_: { ${p.env} = value; })
        else if drv ? drvAttrs then (derivation (drv.drvAttrs // { ${p.env} = value; })).${drv.outputName or "out"}
        else throw "poison: cannot add ${p.env} to ${drv.name}: it has neither overrideAttrs nor drvAttrs";
      go = drv:
        let
          serial = s drv.name;
          value = toString serial;
          poisoned = if serial == 0 || (drv.${p.env} or null) == value then drv else set drv value;
        in
        if drv ? overrideAttrs then poisoned // { overrideAttrs = f: go (drv.overrideAttrs f); }
        else poisoned;
    in
    go;

  # poisonStdenv poison defaultMkDerivationFromStdenv stdenv: stdenv whose
  # mkDerivation gives every derivation it makes its serial, as the stdenv
  # adapters of nixpkgs do (pkgs/stdenv/adapters.nix): through
  # stdenv.override of mkDerivationFromStdenv, so stdenvs derived from it
  # with .override (stdenvNoCC, overrideCC ...) keep the wrapper.
  # defaultMkDerivationFromStdenv is used when stdenv was made without one
  # (in nixpkgs: stdenv: (import (pkgs.path +
  # "/pkgs/stdenv/generic/make-derivation.nix") { inherit lib config; }
  # stdenv).mkDerivation). Wrapping twice is harmless.
  poisonStdenv = poison: defaultMkDerivationFromStdenv: stdenv:
    let pd = poisonDerivation poison; in
    if !(stdenv ? override) then
      throw "poison: cannot wrap stdenv ${stdenv.name or ""}: it has no override function"
    else
      stdenv.override (old: {
        mkDerivationFromStdenv = stdenvSelf:
          let super = (old.mkDerivationFromStdenv or defaultMkDerivationFromStdenv) stdenvSelf; in
          args: pd (super args);
      });
}
