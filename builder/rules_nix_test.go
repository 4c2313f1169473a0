package builder_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/registry/lock"
)

// prelude is shared by the rule cases: p marks the derivation to poison;
// the expression is instantiated with serial = 0 (canonical) and serial = N
// by real Nix, and poison must turn the first closure into the second.
const prelude = `{ serial ? 0 }:
let
  serialAttr = if serial == 0 then {} else { POISON_SERIAL = toString serial; };
  mk = attrs: derivation ({ system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; } // attrs);
  p = attrs: mk (attrs // serialAttr);
  fod = name: extra: mk ({ inherit name; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "0000000000000000000000000000000000000000000000000000000000000000"; } // extra);
  ca = attrs: mk ({ __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; } // attrs);
in
`

type ruleCase struct {
	name string
	// body evaluates to { root = <drv>; target = <drv>; }
	body string
	// base is the serial the starting closure already carries (0: none).
	base int
	// key selects the lock entry: "drv" (default), "out" or "name".
	key string
	// fixed expects a fixed-output warning.
	fixed bool
	// features are extra experimental features Nix needs.
	features string
}

var ruleCases = []ruleCase{
	{name: "R2-plain-env", body: `let a = p { name = "a"; }; b = mk { name = "b"; dep = a; }; in { root = b; target = a; }`},
	{name: "R2-existing-attribute-replaced", base: 2, body: `let a = p { name = "a"; }; b = mk { name = "b"; dep = a; }; in { root = b; target = a; }`},
	{name: "R2-lookup-by-output", key: "out", body: `let a = p { name = "a"; outputs = [ "out" "dev" ]; }; b = mk { name = "b"; dep = a.dev; }; in { root = b; target = a; }`},
	{name: "R2-lookup-by-name", key: "name", body: `let a = p { name = "a"; }; b = mk { name = "b"; dep = a; }; in { root = b; target = a; }`},
	{name: "R3-structured-attrs", body: `let
	    a = p { name = "a"; __structuredAttrs = true; PATH = "x"; POISON_A = 1; POISON_SERIAL_X = "y"; _x = 1.5; builder2 = [ 1 2.25 "s\t\"q\u0001" ]; nested = { z = 1; POISON_SERIAL = "inner"; }; latin = "caf\xe9"; };
	    b = mk { name = "b"; __structuredAttrs = true; dep = a; f = 0.1; };
	  in { root = b; target = a; }`},
	{name: "R3-structured-downstream", body: `let a = p { name = "a"; }; b = mk { name = "b"; __structuredAttrs = true; dep = a; deps = [ a "${a}/bin" ]; }; c = mk { name = "c"; dep = b; }; in { root = c; target = a; }`},
	{name: "R4-builder-args-env", body: `let
	    a = p { name = "a"; outputs = [ "out" "lib" ]; };
	    b = mk { name = "b"; builder = "${a}/bin/sh"; args = [ "-c" "${a.lib}/x" "${a}" ]; env1 = "pre${a}post"; };
	  in { root = b; target = a; }`},
	{name: "R4-discarded-context-and-basename", body: `let
	    a = p { name = "a"; };
	    b = mk { name = "b"; dep = a; };
	    c = mk { name = "c"; txt = builtins.unsafeDiscardStringContext "${b}"; base = baseNameOf (builtins.unsafeDiscardStringContext (toString a)); hp = builtins.substring 11 32 (builtins.unsafeDiscardStringContext b.drvPath); };
	    # the mentioned derivations must be closure members: another root path
	    d = mk { name = "d"; x = c; y = b; };
	  in { root = d; target = a; }`},
	{name: "R1-drv-in-inputSrcs-only", body: `let
	    a = p { name = "a"; };
	    b = mk { name = "b"; d = builtins.unsafeDiscardOutputDependency a.drvPath; };
	  in { root = b; target = a; }`},
	{name: "R5-R8-drv-in-both-sections", body: `let
	    a = p { name = "a"; };
	    b = mk { name = "b"; d = a.drvPath; o = a; };
	  in { root = b; target = a; }`},
	{name: "R6-multi-output-partial-use", body: `let
	    a = p { name = "a"; outputs = [ "bin" "dev" "out" ]; };
	    b = mk { name = "b"; x = a.dev; y = a.bin; };
	    c = mk { name = "c"; x = b; y = a.out; };
	  in { root = c; target = a; }`},
	{name: "R6-merged-equal-input-hashes", body: `let
	    f1 = fod "same" { extra = "1"; };
	    f2 = fod "same" { extra = "2"; };
	    a = p { name = "a"; };
	    b = mk { name = "b"; x = f1; y = f2; z = a; };
	    c = mk { name = "c"; x = b; };
	  in { root = c; target = a; }`},
	{name: "R6-diamond-deep", body: `let
	    a = p { name = "a"; };
	    l = mk { name = "l"; x = a; };
	    r = mk { name = "r"; x = a; outputs = [ "out" "doc" ]; };
	    j = mk { name = "j"; x = l; y = r.doc; z = r; };
	    k = mk { name = "k"; x = j; y = l; };
	  in { root = k; target = a; }`},
	{name: "R7-R9-fixed-output-poisoned", fixed: true, body: `let
	    a = fod "src" serialAttr;
	    b = mk { name = "b"; src = a; };
	    c = mk { name = "c"; x = b; };
	  in { root = c; target = a; }`},
	{name: "R7-fixed-output-below-poison", body: `let
	    f = fod "src" {};
	    a = p { name = "a"; src = f; };
	    b = mk { name = "b"; x = a; y = f; };
	  in { root = b; target = a; }`},
	{name: "R4-R7-floating-ca", features: "ca-derivations", body: `let
	    a = p { name = "a"; };
	    c1 = ca { name = "c1"; dep = a; outputs = [ "out" "dev" ]; };
	    b = mk { name = "b"; x = c1; y = "${c1.dev}/include"; };
	    d = mk { name = "d"; x = b; };
	  in { root = d; target = a; }`},
	{name: "R4-R7-floating-ca-poisoned", features: "ca-derivations", body: `let
	    c1 = ca ({ name = "c1"; } // serialAttr);
	    b = mk { name = "b"; x = c1; };
	  in { root = b; target = c1; }`},
	{name: "R4-R7-impure", features: "impure-derivations ca-derivations", body: `let
	    i = mk ({ name = "i"; __impure = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; } // serialAttr);
	    b = mk { name = "b"; x = i; };
	  in { root = b; target = i; }`},
}

func instantiate(t *testing.T, dir, features string, serial int, attr string) string {
	t.Helper()
	args := []string{filepath.Join(dir, "default.nix"), "-A", attr, "--arg", "serial", strconv.Itoa(serial)}
	if features != "" {
		args = append(args, "--extra-experimental-features", features)
	}
	out := nixtest.Output(t, "nix-instantiate", args...)
	// A multi-output target prints as path!output.
	out, _, _ = strings.Cut(strings.TrimSpace(out), "!")
	return out
}

func drvClosure(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	for _, p := range strings.Fields(nixtest.Output(t, "nix-store", "-qR", root)) {
		if strings.HasSuffix(p, ".drv") {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

func base(p string) string { return filepath.Base(p) }

func TestRulesAgainstNix(t *testing.T) {
	nixtest.Need(t)
	ctx := context.Background()
	const serial = 3
	for _, tc := range ruleCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte(prelude+tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			root0 := instantiate(t, dir, tc.features, 0, "root")
			target0 := instantiate(t, dir, tc.features, 0, "target")
			rootB := instantiate(t, dir, tc.features, tc.base, "root")
			rootN := instantiate(t, dir, tc.features, serial, "root")

			lk := lock.New(lock.Source{}, lock.DefaultEnv)
			opts := builder.Options{Lock: lk}
			switch tc.key {
			case "", "drv":
				lk.Derivations[base(target0)] = serial
			case "out":
				outs := strings.Fields(nixtest.Output(t, "nix-store", "-q", "--outputs", target0))
				lk.Outputs[base(outs[len(outs)-1])] = serial
			case "name":
				name := strings.TrimSuffix(base(target0)[33:], ".drv")
				lk.Names[name] = serial
				opts.ByName = true
			}
			var warnings []builder.Warning
			opts.Warn = func(w builder.Warning) { warnings = append(warnings, w) }

			c, err := builder.LoadClosure(ctx, builder.LoadOptions{}, []string{rootB})
			if err != nil {
				t.Fatal(err)
			}
			res, err := builder.Rewrite(ctx, c, opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Roots[0] != rootN {
				t.Fatalf("rewritten root = %s, nix-instantiate gives %s", res.Roots[0], rootN)
			}
			checkAgainstStore(t, res, rootN)
			if len(res.Poisoned) != 1 || res.Poisoned[0].CanonicalDrvPath != target0 || res.Poisoned[0].Serial != serial {
				t.Errorf("Poisoned = %+v, want one entry for %s", res.Poisoned, target0)
			}
			if got := len(warnings) > 0; got != tc.fixed {
				t.Errorf("warnings = %v, want fixed-output warning: %v", warnings, tc.fixed)
			}

			// Canonicalisation: an empty lock yields the closure without any
			// attribute.
			canon, err := builder.Rewrite(ctx, c, builder.Options{Lock: lock.New(lock.Source{}, lock.DefaultEnv)})
			if err != nil {
				t.Fatal(err)
			}
			if canon.Roots[0] != root0 {
				t.Errorf("canonical root = %s, want %s", canon.Roots[0], root0)
			}
			checkAgainstStore(t, canon, root0)

			// Idempotence: rewriting the rewritten closure changes nothing.
			cN, err := builder.LoadClosure(ctx, builder.LoadOptions{}, []string{rootN})
			if err != nil {
				t.Fatal(err)
			}
			again, err := builder.Rewrite(ctx, cN, opts)
			if err != nil {
				t.Fatal(err)
			}
			if again.Roots[0] != rootN || len(again.Changed) != 0 {
				t.Errorf("second rewrite: root %s (want %s), %d changed (want 0)", again.Roots[0], rootN, len(again.Changed))
			}
		})
	}
}

// checkAgainstStore checks that every rewritten derivation is byte for byte
// the file Nix wrote at that path, and that the new closure is exactly the
// one Nix instantiated.
func checkAgainstStore(t *testing.T, res *builder.Result, root string) {
	t.Helper()
	for _, d := range res.Changed {
		want, err := os.ReadFile(d.Path)
		if err != nil {
			t.Errorf("rewritten %s → %s: Nix has no such derivation: %v\n%s", d.OldPath, d.Path, err, d.ATerm)
			continue
		}
		if string(want) != string(d.ATerm) {
			t.Errorf("rewritten %s differs from Nix's:\n got %s\nwant %s", d.Path, d.ATerm, want)
		}
	}
	want := drvClosure(t, root)
	var got []string
	for _, p := range res.DrvPaths {
		got = append(got, p)
	}
	slices.Sort(got)
	got = slices.Compact(got)
	if !slices.Equal(got, want) {
		t.Errorf("closure after rewrite:\n got %v\nwant %v", got, want)
	}
}
