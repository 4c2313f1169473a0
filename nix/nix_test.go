package nix_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/registry/lock"
)

// hostileName is in every test lock: importing poison.nix must not run it.
// A lock read from disk refuses it (lock.Validate: names are derivation
// names), so the test locks are built in memory and writePoison writes
// their poison.nix without validating, to keep the escaping of every
// string that reaches poison.nix under test.
const hostileName = `${builtins.abort "poison.nix ran code"}`

// fixture returns the absolute path of testdata/nix.
func fixture(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "testdata", "nix"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// instantiate runs nix-instantiate on testdata/nix/roots.nix, with the
// overlay when poisonFile is not empty, and returns the root .drv paths.
func instantiate(t *testing.T, poisonFile string, extra ...string) []string {
	t.Helper()
	args := []string{"--add-root", filepath.Join(t.TempDir(), "gcroot"), "--indirect", filepath.Join(fixture(t), "roots.nix")}
	if poisonFile != "" {
		args = append(args, "--argstr", "poison", poisonFile, "--arg", "attrs", `[ "tool" ]`)
	}
	args = append(args, extra...)
	out := nixtest.Output(t, "nix-instantiate", args...)
	roots := strings.Fields(out)
	for i, r := range roots {
		// With --add-root, nix-instantiate prints the root link; resolve it.
		if p, err := filepath.EvalSymlinks(r); err == nil {
			roots[i] = p
		}
	}
	return roots
}

// drvClosure returns the sorted .drv paths in the closure of roots.
func drvClosure(t *testing.T, roots []string) []string {
	t.Helper()
	out := nixtest.Output(t, "nix-store", append([]string{"--query", "--requisites"}, roots...)...)
	var drvs []string
	for _, p := range strings.Fields(out) {
		if strings.HasSuffix(p, ".drv") {
			drvs = append(drvs, p)
		}
	}
	sort.Strings(drvs)
	return drvs
}

// attrDrvPath instantiates one attribute of the fixture without overlay.
func attrDrvPath(t *testing.T, attr string) string {
	t.Helper()
	p := nixtest.Output(t, "nix-instantiate", "--add-root", filepath.Join(t.TempDir(), "gcroot"), "--indirect", filepath.Join(fixture(t), "pkgs.nix"), "-A", attr)
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// testLock poisons, by name: a multi-output package with serial 2 (which
// also names one of its derivations, so the name serial exceeds the .drv
// serial, as docs/formats.md counts them; a renamed override of it, libressl,
// must lose the serial), a __structuredAttrs package, a fixed-output source
// built by stdenvNoCC, a builtins.derivation reached only through the
// overlay's attrs argument, the new name of a package whose version an
// overrideAttrs bumps, a name not in the closure and a hostile name.
func testLock(t *testing.T) *lock.File {
	t.Helper()
	l := lock.New(lock.Source{URL: "file:///srv/registry", Ref: "main", Commit: strings.Repeat("0", 40)}, lock.DefaultEnv)
	l.Derivations[filepath.Base(attrDrvPath(t, "openssl"))] = 1
	l.Names["openssl-3.0.13"] = 2
	l.Names["python-3.12"] = 1
	l.Names["hello-2.12.tar.gz"] = 1
	l.Names["tool-1.0"] = 3
	l.Names["curl-8.6.0"] = 1
	l.Names["absent-9.9"] = 5
	l.Names[hostileName] = 1
	return l
}

// writePoison writes l.Nix(), the poison.nix of l as exported, without
// the validation that WriteNixFile applies first (see hostileName).
func writePoison(t *testing.T, l *lock.File) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "poison.nix")
	if err := os.WriteFile(path, l.Nix(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOverlayMatchesRewrite is the promise of docs/formats.md: the overlay
// applied to the fixture yields exactly the .drv paths that the rewrite
// with name fallback yields on the closure instantiated without it.
func TestOverlayMatchesRewrite(t *testing.T) {
	nixtest.Need(t)
	l := testLock(t)
	poisonFile := writePoison(t, l)
	base := instantiate(t, "")
	with := instantiate(t, poisonFile)
	if len(base) != 6 || len(with) != 6 {
		t.Fatalf("roots: %v and %v, want 6 each", base, with)
	}
	// Sanity, independent of the rewrite: app is downstream of poisoned
	// packages, leaf and cacert are not.
	if base[0] == with[0] {
		t.Errorf("app: the overlay left %s unchanged", base[0])
	}
	if base[1] != with[1] || base[3] != with[3] || base[5] != with[5] {
		t.Errorf("leaf, cacert, libressl: the overlay changed %v into %v", base, with)
	}

	ctx := context.Background()
	c, err := builder.LoadClosure(ctx, builder.LoadOptions{}, base)
	if err != nil {
		t.Fatalf("LoadClosure: %v", err)
	}
	res, err := builder.Rewrite(ctx, c, builder.Options{Lock: l, ByName: true})
	if err != nil {
		t.Fatalf("Rewrite: %v", err)
	}
	if !reflect.DeepEqual(res.Roots, with) {
		t.Errorf("rewrite roots\n%v\noverlay roots\n%v", res.Roots, with)
	}
	var rewritten []string
	for _, p := range res.DrvPaths {
		rewritten = append(rewritten, p)
	}
	sort.Strings(rewritten)
	if want := drvClosure(t, with); !reflect.DeepEqual(rewritten, want) {
		t.Errorf("rewritten closure\n%s\noverlay closure\n%s", strings.Join(rewritten, "\n"), strings.Join(want, "\n"))
	}
	got := map[string][]int{}
	for _, p := range res.Poisoned {
		got[p.Name] = append(got[p.Name], p.Serial)
	}
	want := map[string][]int{
		"openssl-3.0.13":    {2, 2}, // openssl and openssl-nofips
		"python-3.12":       {1},
		"hello-2.12.tar.gz": {1},
		"tool-1.0":          {3},
		"curl-8.6.0":        {1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("poisoned %v, want %v", got, want)
	}

	// The overlay only added the attribute: rewriting its closure again is
	// the identity, and removing every serial (an empty lock) gives back
	// the closure instantiated without the overlay.
	cw, err := builder.LoadClosure(ctx, builder.LoadOptions{}, with)
	if err != nil {
		t.Fatalf("LoadClosure of the overlay's roots: %v", err)
	}
	again, err := builder.Rewrite(ctx, cw, builder.Options{Lock: l, ByName: true})
	if err != nil {
		t.Fatalf("Rewrite again: %v", err)
	}
	if !reflect.DeepEqual(again.Roots, with) {
		t.Errorf("rewriting the overlay's closure again gave\n%v\nwant\n%v", again.Roots, with)
	}
	canon, err := builder.Rewrite(ctx, cw, builder.Options{Lock: lock.New(lock.Source{}, lock.DefaultEnv)})
	if err != nil {
		t.Fatalf("Rewrite with an empty lock: %v", err)
	}
	if !reflect.DeepEqual(canon.Roots, base) {
		t.Errorf("canonicalising the overlay's closure gave\n%v\nwant the closure without overlay\n%v", canon.Roots, base)
	}
}

// summary is evaluated with the overlay (pkgs) and without (base).
const summary = `{ fixture, poison }:
let
  pkgs = import (/. + fixture + "/pkgs.nix") { inherit poison; attrs = [ "tool" ]; };
  base = import (/. + fixture + "/pkgs.nix") { };
  plib = import (/. + fixture + "/../../nix/lib.nix");
  serial = n: pkgs.${n}.POISON_SERIAL or null;
  same = n: pkgs.${n}.drvPath == base.${n}.drvPath;
  sameOut = n: pkgs.${n}.outPath == base.${n}.outPath;
  p = { env = "E"; names = { a = 2; "pn-1" = 4; }; };
  attrs = { name = "b"; x = 1; };
in {
  serials = builtins.listToAttrs (map (n: { name = n; value = serial n; })
    [ "zlib" "openssl" "openssl-nofips" "curl" "hello-src" "hello" "python" "tool" "app" "leaf" "cacert" "curl-bumped" "libressl" ]);
  sameDrv = builtins.listToAttrs (map (n: { name = n; value = same n; })
    [ "zlib" "openssl" "curl" "hello-src" "hello" "python" "tool" "app" "leaf" "cacert" ]);
  sameOut = builtins.listToAttrs (map (n: { name = n; value = sameOut n; }) [ "hello-src" "leaf" "openssl" ]);
  opensslDev = pkgs.openssl.dev.outPath != base.openssl.dev.outPath;
  structured = pkgs.python.__structuredAttrs;
  curlPassthru = pkgs.curl.isCurl;
  # An override by a user after the overlay keeps the serial.
  overridden = (pkgs.openssl.overrideAttrs (_: { patched = "yes"; })).POISON_SERIAL;
  renamedTwice = (pkgs.libressl.overrideAttrs (_: { pname = "openssl"; })).POISON_SERIAL;
  lib = {
    serialA = plib.serialFor p "a";
    serialNone = plib.serialFor p "zz";
    untouched = plib.withSerial p 0 attrs == attrs;
    added = plib.withSerial p 7 attrs;
    byPname = (plib.addSerial p { pname = "pn"; version = "1"; }).E;
    loaded = (plib.load (/. + poison)).names."openssl-3.0.13";
  };
}
`

// TestOverlayAttributes checks what the overlay sets, with Nix alone.
func TestOverlayAttributes(t *testing.T) {
	nixtest.Need(t)
	poisonFile := writePoison(t, testLock(t))
	expr := filepath.Join(t.TempDir(), "summary.nix")
	if err := os.WriteFile(expr, []byte(summary), 0o644); err != nil {
		t.Fatal(err)
	}
	out := nixtest.Output(t, "nix-instantiate", "--eval", "--strict", "--json", "--argstr", "fixture", fixture(t), "--argstr", "poison", poisonFile, expr)
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	want := map[string]any{
		"serials": map[string]any{
			"zlib": nil, "openssl": "2", "openssl-nofips": "2", "curl": nil, "hello-src": "1",
			"hello": nil, "python": "1", "tool": "3", "app": nil, "leaf": nil, "cacert": nil,
			"curl-bumped": "1", "libressl": nil,
		},
		"sameDrv": map[string]any{
			"zlib": true, "openssl": false, "curl": false, "hello-src": false, "hello": false,
			"python": false, "tool": false, "app": false, "leaf": true, "cacert": true,
		},
		// A fixed-output derivation's serial changes its .drv, not its output.
		"sameOut":      map[string]any{"hello-src": true, "leaf": true, "openssl": false},
		"opensslDev":   true,
		"structured":   true,
		"curlPassthru": true,
		"overridden":   "2",
		"renamedTwice": "2",
		"lib": map[string]any{
			"serialA": 2.0, "serialNone": 0.0, "untouched": true,
			"added":   map[string]any{"name": "b", "x": 1.0, "E": "7"},
			"byPname": "4", "loaded": 2.0,
		},
	}
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}
}

// TestMalformedPoison: a poison.nix of the wrong shape is an evaluation
// error that names the file and the problem, never a silent no-op.
func TestMalformedPoison(t *testing.T) {
	nixtest.Need(t)
	tests := []struct {
		name, src, want string
	}{
		{"list", `[ ]`, "expected the attribute set written by 'poison export nix', got a list"},
		{"no env", `{ names = { }; }`, "missing attribute 'env'"},
		{"no names", `{ env = "POISON_SERIAL"; }`, "missing attribute 'names'"},
		{"typo", `{ env = "POISON_SERIAL"; names = { }; nmes = { }; }`, "unknown attribute 'nmes'"},
		{"string serial", `{ env = "POISON_SERIAL"; names = { b = "1"; }; }`, `names."b" must be an integer serial, got a string`},
		{"zero serial", `{ env = "POISON_SERIAL"; names = { b = 0; }; }`, `names."b" = 0: serials must be at least 1`},
		{"negative serial", `{ env = "POISON_SERIAL"; names = { b = -3; }; }`, `names."b" = -3: serials must be at least 1`},
		{"names list", `{ env = "POISON_SERIAL"; names = [ "b" ]; }`, "'names' must be an attribute set of serials, got a list"},
		{"empty name", `{ env = "POISON_SERIAL"; names = { "" = 1; }; }`, `names key "" is not a derivation name`},
		{"env int", `{ env = 1; names = { }; }`, "'env' must be a string, got an int"},
		{"env syntax", `{ env = "POISON-SERIAL"; names = { }; }`, `env "POISON-SERIAL" is not a valid attribute name`},
		{"version", `{ env = "POISON_SERIAL"; names = { }; version = 2; }`, "version 2 is not supported"},
		{"drv key", `{ env = "POISON_SERIAL"; names = { }; derivations = { "foo.drv" = 1; }; }`, `derivations key "foo.drv" is not a .drv store path base name`},
		{"output serial", `{ env = "POISON_SERIAL"; names = { }; outputs = { "6jqi0n92z10kb50fggvwqzi15jj32g5b-b" = 1.0; }; }`, `outputs."6jqi0n92z10kb50fggvwqzi15jj32g5b-b" must be an integer serial, got a float`},
		{"registry", `{ env = "POISON_SERIAL"; names = { }; registry = { url = 1; }; }`, "'registry.url' must be a string, got an int"},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, "poison"+string(rune('a'+i))+".nix")
			if err := os.WriteFile(file, []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := nixtest.Command("nix-instantiate", "--readonly-mode", filepath.Join(fixture(t), "roots.nix"), "--argstr", "poison", file)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("nix-instantiate accepted %s:\n%s", tt.src, out)
			}
			if !strings.Contains(string(out), file+": "+tt.want) {
				t.Errorf("error for %s:\n%s\nwant it to contain %q", tt.src, out, file+": "+tt.want)
			}
		})
	}
	t.Run("missing attr", func(t *testing.T) {
		file := writePoison(t, lock.New(lock.Source{}, lock.DefaultEnv))
		cmd := nixtest.Command("nix-instantiate", "--readonly-mode", filepath.Join(fixture(t), "roots.nix"), "--argstr", "poison", file, "--arg", "attrs", `[ "nope" ]`)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("an unused missing attribute failed: %v\n%s", err, out)
		}
		cmd = nixtest.Command("nix-instantiate", "--readonly-mode", filepath.Join(fixture(t), "pkgs.nix"), "--argstr", "poison", file, "--arg", "attrs", `[ "nope" ]`, "-A", "nope")
		out, err = cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "there is no attribute 'nope' to poison") {
			t.Errorf("poisoning a missing attribute: %v\n%s", err, out)
		}
	})
}

// TestEmptyPoisonIsIdentity: a valid poison.nix that names nothing present
// leaves every path as it is.
func TestEmptyPoisonIsIdentity(t *testing.T) {
	nixtest.Need(t)
	l := lock.New(lock.Source{}, lock.DefaultEnv)
	l.Names["absent-1.0"] = 4
	if base, with := instantiate(t, ""), instantiate(t, writePoison(t, l)); !reflect.DeepEqual(base, with) {
		t.Errorf("an unrelated poison.nix changed the roots: %v -> %v", base, with)
	}
}

// flakeCheck evaluates the outputs of flake.nix with a stand-in for
// nixpkgs (nixpkgs is not available offline) whose buildGoModule returns
// its arguments, so the plumbing is checked, not the Go build.
const flakeCheck = `{ root }:
let
  flake = import (/. + root + "/flake.nix");
  lib = {
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    cleanSource = src: { hasGoMod = builtins.pathExists (src + "/go.mod"); };
  };
  pkgsFor = system: rec {
    inherit system;
    buildGoModule = args: args // { built = true; };
    callPackage = path: args: import path ({ inherit lib buildGoModule; } // args);
  };
  nixpkgs = { inherit lib; legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ] pkgsFor; };
  out = flake.outputs { self = out; inherit nixpkgs; };
  pkg = out.packages.x86_64-linux.default;
  viaOverlay = (out.overlays.default (pkgsFor "x86_64-linux") { }).poison;
in {
  inputs = flake.inputs.nixpkgs.url;
  systems = builtins.attrNames out.packages;
  pkg = { inherit (pkg) pname subPackages doCheck built; vendorHash = builtins.substring 0 7 pkg.vendorHash; inherit (pkg) src; };
  overlayPname = viaOverlay.pname;
  serial = out.lib.serialFor { env = "E"; names.b = 3; } "b";
  overlayIsFunction = builtins.isFunction (out.lib.overlay { poison = { env = "E"; names = { }; }; });
}
`

// TestFlakeOutputs checks the shape of flake.nix's outputs.
func TestFlakeOutputs(t *testing.T) {
	nixtest.Need(t)
	expr := filepath.Join(t.TempDir(), "flake-check.nix")
	if err := os.WriteFile(expr, []byte(flakeCheck), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out := nixtest.Output(t, "nix-instantiate", "--eval", "--strict", "--json", "--argstr", "root", root, expr)
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	want := map[string]any{
		"inputs":  "github:NixOS/nixpkgs/nixos-unstable",
		"systems": []any{"aarch64-darwin", "aarch64-linux", "x86_64-darwin", "x86_64-linux"},
		"pkg": map[string]any{
			"pname": "poison", "subPackages": []any{"cmd/poison", "cmd/poison-journal-hook"}, "doCheck": false, "built": true,
			"vendorHash": "sha256-", "src": map[string]any{"hasGoMod": true},
		},
		"overlayPname":      "poison",
		"serial":            3.0,
		"overlayIsFunction": true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flake outputs\n%v\nwant\n%v", got, want)
	}
}

// fakeNixpkgs is a flake standing in for nixpkgs in TestFlakeCheck: lib
// and a buildGoModule whose result is a real (unbuilt) derivation.
const fakeNixpkgs = `{
  outputs = { self }: let
    systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
    lib = {
      genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
      cleanSource = src: src;
    };
    pkgsFor = system: rec {
      buildGoModule = args: derivation {
        inherit system;
        inherit (args) vendorHash;
        name = "${args.pname}-${args.version}";
        builder = "/bin/sh";
        args = [ "-c" "echo > $out" ];
      };
      callPackage = path: args: import path ({ inherit lib buildGoModule; } // args);
    };
  in { inherit lib; legacyPackages = lib.genAttrs systems pkgsFor; };
}
`

// TestFlakeCheck runs 'nix flake check' on flake.nix (with nix/ and
// go.mod beside it) against the stand-in nixpkgs, so Nix's own checks of
// the output schema (overlays.default a final: prev: function, packages
// derivations) apply.
func TestFlakeCheck(t *testing.T) {
	nixtest.Need(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src, fake := filepath.Join(dir, "src"), filepath.Join(dir, "nixpkgs")
	for _, d := range []string{filepath.Join(src, "nix"), fake} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"flake.nix", "go.mod", "nix/lib.nix", "nix/overlay.nix", "nix/package.nix"} {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(fake, "flake.nix"), []byte(fakeNixpkgs), 0o644); err != nil {
		t.Fatal(err)
	}
	// An empty flake registry: the global one is on the network.
	registry := filepath.Join(dir, "registry.json")
	if err := os.WriteFile(registry, []byte(`{"flakes":[],"version":2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := nixtest.Command("nix", "--extra-experimental-features", "nix-command flakes", "--flake-registry", registry,
		"flake", "check", "--no-build", "--no-write-lock-file", "path:"+src, "--override-input", "nixpkgs", "path:"+fake)
	out, err := cmd.CombinedOutput()
	// The exit status is the verdict: Nix also prints "error (ignored)"
	// notices, e.g. when its cache database is busy.
	if err != nil {
		t.Fatalf("nix flake check: %v\n%s", err, out)
	}
}
