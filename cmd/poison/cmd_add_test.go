package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/registry"
)

// runPoison runs the CLI in-process in dir and returns exit code, stdout
// and stderr.
func runPoison(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: os.Getenv, dir: dir,
		now: func() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }}
	code := run(args, e)
	return code, out.String(), errb.String()
}

// TestAddFromStore runs poison add against the real Nix store: .drv paths,
// output paths, paths not in the store, and rewritten derivations, whose
// canonical original must be recorded.
func TestAddFromStore(t *testing.T) {
	nixtest.Need(t)
	for _, kv := range nixtest.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	expr, err := filepath.Abs("../../testdata/registry/nix/graph.nix")
	if err != nil {
		t.Fatal(err)
	}
	tag := "--argstr"
	unique := "t" + time.Now().Format("150405.000000000") // fresh paths: outputs not built yet
	inst := func(attr string, extra ...string) string {
		args := append([]string{expr, "-A", attr, tag, "tag", unique}, extra...)
		return nixtest.Output(t, "nix-instantiate", args...)
	}
	outputsOf := func(drv string) []string {
		outs := strings.Fields(nixtest.Output(t, "nix-store", "-q", "--outputs", drv))
		sort.Strings(outs)
		return outs
	}
	dir := t.TempDir()
	reg := filepath.Join(dir, "reg")
	if code, _, stderr := runPoison(t, dir, "init", "reg"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	add := func(t *testing.T, args ...string) *registry.Entry {
		t.Helper()
		args = append([]string{"add", "--registry", reg, "--author", "T <t@example.com>", "--reason", "test " + t.Name()}, args...)
		code, stdout, stderr := runPoison(t, dir, args...)
		if code != 0 {
			t.Fatalf("poison %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
		file := strings.TrimSpace(stdout)
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("printed path %q: %v", file, err)
		}
		rel, _ := filepath.Rel(reg, file)
		e, ps := registry.DecodeEntry(filepath.ToSlash(rel), data, registry.Config{}, time.Now())
		if e == nil {
			t.Fatalf("written entry fails lint: %v\n%s", ps, data)
		}
		return e
	}
	drvA, drvB := inst("a"), inst("b")

	t.Run("drv", func(t *testing.T) {
		e := add(t, drvA)
		if len(e.Derivations) != 1 || e.Derivations[0].Path != drvA {
			t.Fatalf("derivations = %+v, want %s", e.Derivations, drvA)
		}
		if got, want := e.Derivations[0].Outputs, outputsOf(drvA); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("outputs = %v, nix-store -q --outputs says %v", got, want)
		}
	})
	t.Run("output path", func(t *testing.T) {
		nixtest.Output(t, "nix-store", "--realise", drvA)
		dev := outputsOf(drvA)[0]
		if !strings.HasSuffix(dev, "-a-dev") {
			dev = outputsOf(drvA)[1]
		}
		e := add(t, "--slug", "by-output", dev)
		if len(e.Derivations) != 1 || e.Derivations[0].Path != drvA {
			t.Fatalf("derivations = %+v, want deriver %s", e.Derivations, drvA)
		}
		if got, want := e.Derivations[0].Outputs, outputsOf(drvA); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("outputs = %v, want %v", got, want)
		}
	})
	t.Run("output not built", func(t *testing.T) {
		out := outputsOf(drvB)[0]
		code, _, stderr := runPoison(t, dir, "add", "--registry", reg, "--author", "T <t@example.com>", "--reason", "x", out)
		if code != 1 || !strings.Contains(stderr, "add "+out+": not in the local Nix store") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("drv not in store", func(t *testing.T) {
		missing := "/nix/store/00000000000000000000000000000000-missing.drv"
		code, _, stderr := runPoison(t, dir, "add", "--registry", reg, "--author", "T <t@example.com>", "--reason", "x", missing)
		if code != 1 || !strings.Contains(stderr, "not in the local Nix store; instantiate it first, or pass --no-verify") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		e := add(t, "--no-verify", missing)
		if len(e.Derivations) != 1 || e.Derivations[0].Path != missing || len(e.Derivations[0].Outputs) != 0 {
			t.Fatalf("--no-verify entry = %+v", e.Derivations)
		}
	})
	t.Run("rewritten derivation is recorded canonically", func(t *testing.T) {
		// a carries a serial, so a and b here are what a poisoned closure
		// looks like; their canonical originals are drvA and drvB.
		rwA, rwB := inst("a", "--arg", "serial", "1"), inst("b", "--arg", "serial", "1")
		if rwA == drvA || rwB == drvB {
			t.Fatal("the serial attribute did not change the paths")
		}
		e := add(t, "--slug", "rewritten", rwB, rwA)
		if len(e.Derivations) != 2 {
			t.Fatalf("derivations = %+v", e.Derivations)
		}
		got := map[string][]string{}
		for _, d := range e.Derivations {
			got[d.Path] = d.Outputs
		}
		for _, d := range []string{drvA, drvB} {
			outs, ok := got[d]
			if !ok {
				t.Fatalf("canonical %s not recorded; got %+v", d, e.Derivations)
			}
			if strings.Join(outs, " ") != strings.Join(outputsOf(d), " ") {
				t.Errorf("outputs of %s = %v, want %v", d, outs, outputsOf(d))
			}
		}
		// An output of the rewritten a, once built, leads to canonical a.
		nixtest.Output(t, "nix-store", "--realise", rwA)
		e = add(t, "--slug", "rewritten-output", outputsOf(rwA)[0])
		if len(e.Derivations) != 1 || e.Derivations[0].Path != drvA ||
			strings.Join(e.Derivations[0].Outputs, " ") != strings.Join(outputsOf(drvA), " ") {
			t.Errorf("from a rewritten output: %+v, want %s with %v", e.Derivations, drvA, outputsOf(drvA))
		}
	})
}
