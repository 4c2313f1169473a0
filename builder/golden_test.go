package builder_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/registry/lock"
)

var update = flag.Bool("update", false, "regenerate testdata/drv with nix-instantiate")

const goldenDir = "../testdata/drv"

// goldenCases is testdata/drv/cases.json: roots instantiated by Nix from
// closure.nix clean and with the serial, and the lock that maps one to the
// other.
type goldenCases struct {
	Features string            `json:"features"`
	Serial   int               `json:"serial"`
	Targets  map[string]string `json:"targets"` // attr → canonical .drv path
	Roots    []goldenRoot      `json:"roots"`
}

type goldenRoot struct {
	Attr     string `json:"attr"`
	Clean    string `json:"clean"`
	Poisoned string `json:"poisoned"`
}

func (g *goldenCases) lock() *lock.File {
	lk := lock.New(lock.Source{URL: "file:///golden", Ref: "main"}, lock.DefaultEnv)
	for _, p := range g.Targets {
		lk.Derivations[filepath.Base(p)] = g.Serial
	}
	return lk
}

// TestGolden rewrites closures of real .drv files kept in testdata/drv/store
// (no Nix needed) and compares with the files Nix wrote for the poisoned
// expression; then canonicalises the poisoned closures back.
func TestGolden(t *testing.T) {
	if *update {
		updateGolden(t)
	}
	data, err := os.ReadFile(filepath.Join(goldenDir, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g goldenCases
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(goldenDir, "store")
	ctx := context.Background()
	load := func(roots []string) *builder.Closure {
		c, err := builder.LoadClosure(ctx, builder.LoadOptions{RealStoreDir: store}, roots)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var clean, poisoned []string
	for _, r := range g.Roots {
		clean = append(clean, r.Clean)
		poisoned = append(poisoned, r.Poisoned)
	}
	check := func(name string, from, want []string, lk *lock.File) {
		t.Run(name, func(t *testing.T) {
			var warns []builder.Warning
			res, err := builder.Rewrite(ctx, load(from), builder.Options{Lock: lk, Warn: func(w builder.Warning) { warns = append(warns, w) }})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Roots, want) {
				t.Errorf("roots:\n got %v\nwant %v", res.Roots, want)
			}
			for _, d := range res.Changed {
				nix, err := os.ReadFile(filepath.Join(store, filepath.Base(d.Path)))
				if err != nil {
					t.Errorf("%s → %s: Nix wrote no such file", d.OldPath, d.Path)
					continue
				}
				if string(nix) != string(d.ATerm) {
					t.Errorf("%s differs from Nix's file:\n got %s\nwant %s", d.Path, d.ATerm, nix)
				}
			}
			for old, nw := range res.DrvPaths {
				if _, err := os.Stat(filepath.Join(store, filepath.Base(nw))); err != nil {
					t.Errorf("%s → %s: not in Nix's closure", old, nw)
				}
			}
			if n := len(lk.Derivations); n > 0 {
				if len(res.Poisoned) != n {
					t.Errorf("%d poisoned, want %d", len(res.Poisoned), n)
				}
				if len(warns) != 1 || !strings.Contains(warns[0].Message, "fod-poisoned") {
					t.Errorf("warnings %v, want one for the fixed-output derivation", warns)
				}
			}
		})
	}
	check("poison", clean, poisoned, g.lock())
	check("canonicalise", poisoned, clean, lock.New(lock.Source{}, lock.DefaultEnv))
	check("idempotent", poisoned, poisoned, g.lock())
}

func updateGolden(t *testing.T) {
	nixtest.Need(t)
	const features = "ca-derivations"
	g := goldenCases{Features: features, Serial: 5, Targets: map[string]string{}}
	expr, err := filepath.Abs(filepath.Join(goldenDir, "closure.nix"))
	if err != nil {
		t.Fatal(err)
	}
	inst := func(serial, attr string) string {
		out := nixtest.Output(t, "nix-instantiate", "--extra-experimental-features", features, expr, "--arg", "serial", serial, "-A", attr)
		out, _, _ = strings.Cut(out, "!")
		return out
	}
	for _, a := range []string{"lib", "fodPoisoned", "caLib"} {
		g.Targets[a] = inst("0", "targets."+a)
	}
	store := filepath.Join(goldenDir, "store")
	if err := os.RemoveAll(store); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"top", "afterFod", "caTop"} {
		r := goldenRoot{Attr: a, Clean: inst("0", a), Poisoned: inst("5", a)}
		g.Roots = append(g.Roots, r)
		for _, root := range []string{r.Clean, r.Poisoned} {
			for _, p := range strings.Fields(nixtest.Output(t, "nix-store", "-qR", root)) {
				if !strings.HasSuffix(p, ".drv") {
					continue
				}
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(store, filepath.Base(p)), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	data, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(goldenDir, "cases.json"), append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentRewrite: one loaded closure serves parallel rewrites with
// different locks (the hash-modulo memo is shared).
func TestConcurrentRewrite(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(goldenDir, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g goldenCases
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	var roots, want []string
	for _, r := range g.Roots {
		roots = append(roots, r.Clean)
		want = append(want, r.Poisoned)
	}
	ctx := context.Background()
	c, err := builder.LoadClosure(ctx, builder.LoadOptions{RealStoreDir: filepath.Join(goldenDir, "store")}, roots)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			lk, exp := g.lock(), want
			if i%2 == 1 {
				lk, exp = lock.New(lock.Source{}, lock.DefaultEnv), roots
			}
			res, err := builder.Rewrite(ctx, c, builder.Options{Lock: lk})
			if err == nil && !slices.Equal(res.Roots, exp) {
				err = fmt.Errorf("rewrite %d: roots %v, want %v", i, res.Roots, exp)
			}
			errs <- err
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
