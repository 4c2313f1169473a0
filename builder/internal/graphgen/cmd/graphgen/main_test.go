package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder/internal/graphgen"
)

func TestGen(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"gen", "-seed", "5", "-nodes", "50"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("gen: exit %d: %s", code, errOut.String())
	}
	g, err := graphgen.Generate(graphgen.Default(5, 50))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), g.Expr()) {
		t.Error("gen output differs from graphgen.Generate")
	}
	out.Reset()
	if code := run([]string{"deep", "-bench", "-nodes", "400"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("deep: exit %d: %s", code, errOut.String())
	}
	var attr string
	var down int
	if _, err := fmt.Sscan(out.String(), &attr, &down); err != nil || !strings.HasPrefix(attr, "n") || down < 1 {
		t.Errorf("deep printed %q", out.String())
	}
}

func TestFloor(t *testing.T) {
	dir := t.TempDir()
	var list strings.Builder
	for i, s := range []string{"abc", "", strings.Repeat("x", 5000)} {
		p := filepath.Join(dir, fmt.Sprintf("f%d.drv", i))
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&list, "%s!out\n\n", p) // "!output" suffixes and blank lines are ignored
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"floor", "-rounds", "1"}, strings.NewReader(list.String()), &out, &errOut); code != 0 {
		t.Fatalf("floor: exit %d: %s", code, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "files 3 bytes 5003 ") {
		t.Errorf("floor printed %q", out.String())
	}
	if code := run([]string{"floor"}, strings.NewReader(filepath.Join(dir, "missing.drv")), &out, &errOut); code != 1 {
		t.Errorf("floor of a missing file: exit %d, want 1", code)
	}
	if code := run([]string{"nope"}, nil, &out, &errOut); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}
