package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLintExitCodes checks docs/exit-codes.md for lint: 0 clean (warnings
// included), 1 findings or an unreadable registry, 2 usage.
func TestLintExitCodes(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := runPoison(t, dir, "init", "reg"); code != 0 {
		t.Fatal(stderr)
	}
	write := func(name, content string) {
		p := filepath.Join(dir, "reg", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		setup func()
		args  []string
		want  int
	}{
		{"clean", func() {}, []string{"lint", "--registry", "reg"}, 0},
		{"warning only", func() {
			write("entries/a.toml", "reason = \"r\"\nauthor = \"a\"\ndate = 2026-11-01\n[[derivation]]\npath = \"/nix/store/6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv\"\n")
		}, []string{"lint", "--registry", "reg"}, 0},
		{"error", func() { write("entries/b.toml", "reason = 1\n") }, []string{"lint", "--registry", "reg"}, 1},
		{"json error", func() {}, []string{"lint", "--registry", "reg", "--format", "json"}, 1},
		{"not a registry", func() {}, []string{"lint", "--registry", "."}, 1},
		{"bad format", func() {}, []string{"lint", "--format", "yaml"}, 2},
		{"extra argument", func() {}, []string{"lint", "reg"}, 2},
		{"unknown flag", func() {}, []string{"lint", "--frobnicate"}, 2},
		{"help", func() {}, []string{"lint", "--help"}, 0},
		{"bad base", func() {}, []string{"lint", "--registry", "reg", "--base", "nope"}, 1},
	}
	for _, tc := range tests {
		tc.setup()
		if code, _, stderr := runPoison(t, dir, tc.args...); code != tc.want {
			t.Errorf("%s: exit %d, want %d\n%s", tc.name, code, tc.want, stderr)
		}
	}
}
