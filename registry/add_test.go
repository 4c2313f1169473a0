package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/poison-nix/poison/registry"
)

func TestSlugify(t *testing.T) {
	tests := map[string]string{
		"board rev B FPU erratum HW-1234: test vectors silently wrong": "board-rev-b-fpu-erratum-hw-1234-test-vectors-sil",
		"  --Ünïcode only??  ": "n-code-only",
		"!!!":                  "entry",
		"a  b\tc":              "a-b-c",
	}
	for in, want := range tests {
		if got := registry.Slugify(in); got != want {
			t.Errorf("Slugify(%q) = %q, want %q", in, got, want)
		}
	}
}

// storeInspector is an in-memory store: drv -> outputs.
type storeInspector map[string][]string

func (s storeInspector) inspect(ctx context.Context, p string) (string, []string, error) {
	if outs, ok := s[p]; ok {
		return p, outs, nil
	}
	for d, outs := range s {
		for _, o := range outs {
			if o == p {
				return d, outs, nil
			}
		}
	}
	return "", nil, fmt.Errorf("not in the local Nix store: %w", fs.ErrNotExist)
}

func TestAdd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := registry.Init(ctx, dir, registry.InitOptions{Committer: "T <t@example.com>", Now: testNow}); err != nil {
		t.Fatal(err)
	}
	store := storeInspector{drvA: {outA}, drvB: {outB, outBd}}
	base := registry.AddOptions{Reason: "bad FPU", Author: "T <t@example.com>", Now: testNow, Inspect: store.inspect}

	// A .drv and an output of another derivation, plus the output of the
	// first again: two derivations, each with all outputs.
	o := base
	o.Paths = []string{drvA, outBd, outA}
	o.Group, o.Ticket, o.Names = "release-1", "HW-1", []string{"openssl-3.0.13"}
	file, err := registry.Add(ctx, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if file != "entries/2026/11/2026-11-25-bad-fpu.toml" {
		t.Errorf("file = %s", file)
	}
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	want := `reason = "bad FPU"
author = "T <t@example.com>"
date   = 2026-11-25
group  = "release-1"
ticket = "HW-1"
names  = ["openssl-3.0.13"]

[[derivation]]
path    = "` + drvA + `"
outputs = ["` + outA + `"]

[[derivation]]
path    = "` + drvB + `"
outputs = ["` + outB + `", "` + outBd + `"]
`
	if string(data) != want {
		t.Errorf("entry:\n%s\nwant:\n%s", data, want)
	}

	// Never overwrite: the same slug gets a suffix; the first is intact.
	o = base
	o.Paths = []string{drvA}
	file2, err := registry.Add(ctx, dir, o)
	if err != nil || file2 != "entries/2026/11/2026-11-25-bad-fpu-2.toml" {
		t.Fatalf("second add: %s, %v", file2, err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, file)); string(again) != want {
		t.Error("first entry changed")
	}

	// Failures write nothing.
	failures := []struct {
		name string
		opts func(*registry.AddOptions)
		want string
	}{
		{"not in store", func(o *registry.AddOptions) { o.Paths = []string{"/nix/store/00000000000000000000000000000000-x.drv"} }, "not in the local Nix store"},
		{"empty reason", func(o *registry.AddOptions) { o.Reason = " "; o.Paths = []string{drvA} }, "reason: is empty"},
		{"bad name", func(o *registry.AddOptions) { o.Names = []string{"x y"} }, "names[0]: name \"x y\" has the character ' '"},
		{"future", func(o *registry.AddOptions) { o.Paths = []string{drvA}; o.Date = testNow.AddDate(0, 0, 3) }, "more than a day in the future"},
		{"nothing", func(o *registry.AddOptions) {}, "nothing to poison"},
		{"no-verify output", func(o *registry.AddOptions) { o.NoVerify = true; o.Paths = []string{outA} }, "is not a .drv path"},
		{"bad slug", func(o *registry.AddOptions) { o.Slug = "../x"; o.Paths = []string{drvA} }, "slug \"../x\""},
		{"cancelled", func(o *registry.AddOptions) { o.Paths = []string{drvA} }, "context canceled"},
	}
	for _, f := range failures {
		o := base
		f.opts(&o)
		c := ctx
		if f.name == "cancelled" {
			cc, cancel := context.WithCancel(ctx)
			cancel()
			c = cc
		}
		if _, err := registry.Add(c, dir, o); err == nil || !strings.Contains(err.Error(), f.want) {
			t.Errorf("%s: err = %v, want %q", f.name, err, f.want)
		}
	}
	r, err := registry.Load(os.DirFS(dir), registry.LoadOptions{Now: testNow})
	if err != nil || len(r.Entries) != 2 {
		t.Fatalf("registry after failures: %v entries, %v", r, err)
	}

	// A symlinked directory on the way is refused, nothing written outside.
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "entries/2027")); err != nil {
		t.Fatal(err)
	}
	o = base
	o.Paths, o.Date, o.Now = []string{drvA}, time.Date(2027, 1, 5, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 5, 0, 0, 0, 0, time.UTC)
	if _, err := registry.Add(ctx, dir, o); err == nil || !strings.Contains(err.Error(), "entries/2027 is a symlink") {
		t.Errorf("add through a symlink: %v", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("add wrote outside the registry: %v", ents)
	}

	// Not a registry.
	if _, err := registry.Add(ctx, t.TempDir(), base); !errors.Is(err, registry.ErrNotRegistry) {
		t.Errorf("add outside a registry: %v", err)
	}
}

func TestInitAndCommitEntry(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "reg")
	if err := registry.Init(ctx, dir, registry.InitOptions{Env: "MY_SERIAL", Committer: "Reg Istry <r@example.com>", Now: testNow}); err != nil {
		t.Fatal(err)
	}
	r, err := registry.Load(os.DirFS(dir), registry.LoadOptions{Now: testNow})
	if err != nil || r.Config.Env != "MY_SERIAL" || len(r.Entries) != 0 {
		t.Fatalf("fresh registry: %+v, %v", r, err)
	}
	repo, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	head, err := repo.Head()
	if err != nil || head.Name().Short() != "main" {
		t.Fatalf("HEAD = %v, %v", head, err)
	}
	c, err := repo.CommitObject(head.Hash())
	if err != nil || c.Author.Email != "r@example.com" || c.NumParents() != 0 {
		t.Fatalf("first commit %+v, %v", c, err)
	}
	tree, _ := c.Tree()
	for _, f := range []string{"registry.toml", "entries/.gitkeep", "CODEOWNERS", "README.md"} {
		if _, err := tree.File(f); err != nil {
			t.Errorf("first commit lacks %s", f)
		}
	}
	if err := registry.Init(ctx, dir, registry.InitOptions{}); err == nil {
		t.Error("Init over an existing registry succeeded")
	}
	if err := registry.Init(ctx, t.TempDir()+"/x", registry.InitOptions{Env: "__bad"}); err == nil {
		t.Error("Init with env __bad succeeded")
	}

	file, err := registry.Add(ctx, dir, registry.AddOptions{Reason: "r", Author: "A <a@example.com>", Names: []string{"zlib"}, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	// Something else is staged: it must stay staged, not be committed.
	wt, _ := repo.Worktree()
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add("README.md"); err != nil {
		t.Fatal(err)
	}
	branch, hash, err := registry.CommitEntry(ctx, dir, file, "r", "A <a@example.com>", "poison: r", testNow.Add(time.Hour))
	if err != nil || branch != "poison/r" {
		t.Fatalf("CommitEntry = %s, %s, %v", branch, hash, err)
	}
	c2, err := repo.CommitObject(c.Hash)
	if err != nil {
		t.Fatal(err)
	}
	head, _ = repo.Head()
	if head.Name().Short() != "poison/r" {
		t.Errorf("HEAD is %s, want poison/r", head.Name())
	}
	nc, _ := repo.CommitObject(head.Hash())
	if nc.ParentHashes[0] != c2.Hash || nc.Author.Name != "A" {
		t.Errorf("entry commit %+v", nc)
	}
	stats, _ := nc.Stats()
	if len(stats) != 1 || stats[0].Name != file {
		t.Errorf("entry commit touches %v, want only %s", stats, file)
	}
	st, err := wt.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st.File("README.md").Staging != git.Modified {
		t.Errorf("status after commit:\n%v\nwant only README.md staged", st)
	}
}
