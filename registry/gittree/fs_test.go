package gittree_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"

	git "github.com/go-git/go-git/v5"

	"github.com/poison-nix/poison/internal/hostile"
	"github.com/poison-nix/poison/registry/gittree"
)

func openRepo(t testing.TB, dir string) *git.Repository {
	t.Helper()
	r, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mustOf returns a function that fails t on error and returns the string.
func mustOf(t *testing.T) func(string, error) string {
	return func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// open builds the crafted registry kind and opens its main branch, with
// the packs read directly when packs is set.
func open(t *testing.T, kind string, size int64, lim gittree.Limits, packs bool) *gittree.FS {
	t.Helper()
	dir := filepath.Join(t.TempDir(), kind+".git")
	if err := hostile.Build(dir, kind, size); err != nil {
		t.Fatal(err)
	}
	o := gittree.Options{Limits: lim}
	if packs {
		o.GitDir = dir
	}
	f, _, err := gittree.Open(openRepo(t, dir), "main", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// walkAll reads every directory and file below the root, iteratively, and
// returns the first error.
func walkAll(fsys fs.FS) ([]string, error) {
	var files []string
	stack := []string{"."}
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		ents, err := fs.ReadDir(fsys, d)
		if err != nil {
			return files, err
		}
		for _, e := range ents {
			p := e.Name()
			if d != "." {
				p = d + "/" + p
			}
			switch {
			case e.IsDir():
				stack = append(stack, p)
			case e.Type().IsRegular():
				if _, err := fs.ReadFile(fsys, p); err != nil {
					return files, err
				}
				files = append(files, p)
			}
		}
	}
	return files, nil
}

// TestFS runs the standard fs.FS conformance checks on a git tree and
// checks that symlinks and submodules are reported, never followed.
func TestFS(t *testing.T) {
	must := mustOf(t)
	dir := filepath.Join(t.TempDir(), "r.git")
	r, err := hostile.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := must(r.Blob([]byte(hostile.Config)))
	a := must(r.Blob(hostile.Entry("a-1")))
	deep := must(r.Blob([]byte("deep")))
	run := must(r.Blob([]byte("#!/bin/sh\n")))
	month := must(r.Tree([]hostile.TreeEntry{{Mode: hostile.File, Name: "a.toml", ID: a}}))
	entries := must(r.Tree([]hostile.TreeEntry{{Mode: hostile.Dir, Name: "11", ID: month}, {Mode: hostile.File, Name: "a.b", ID: a}}))
	sub := must(r.Tree([]hostile.TreeEntry{{Mode: hostile.File, Name: "deep.txt", ID: deep}}))
	sub = must(r.Tree([]hostile.TreeEntry{{Mode: hostile.Dir, Name: "dir", ID: sub}}))
	plain := []hostile.TreeEntry{{Mode: hostile.File, Name: "registry.toml", ID: cfg}, {Mode: hostile.Dir, Name: "entries", ID: entries},
		{Mode: hostile.Dir, Name: "sub", ID: sub}, {Mode: hostile.Exec, Name: "run.sh", ID: run}}
	root := must(r.Tree(plain))
	commit := must(r.Commit(root, "plain"))
	link := must(r.Blob([]byte("registry.toml")))
	special := append(plain, hostile.TreeEntry{Mode: hostile.Symlink, Name: "link.toml", ID: link}, hostile.TreeEntry{Mode: hostile.Gitlink, Name: "vendored", ID: commit})
	must(r.Commit(must(r.Tree(special)), "special"))

	repo := openRepo(t, dir)
	for _, packs := range []bool{false, true} {
		o := gittree.Options{}
		if packs {
			must(hostile.Git(dir, nil, "repack", "-a", "-d", "-q"))
			o.GitDir = dir
		}
		f, id, err := gittree.Open(repo, commit, o)
		if err != nil || id != commit {
			t.Fatalf("Open = %s, %v", id, err)
		}
		// fstest.TestFS opens every file, so it runs on the tree without
		// the symlink and the submodule (which Open refuses).
		if err := fstest.TestFS(f, "registry.toml", "entries/11/a.toml", "entries/a.b", "sub/dir/deep.txt", "run.sh"); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	f, _, err := gittree.Open(repo, "main", gittree.Options{GitDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, err := fs.Stat(f, "link.toml"); err != nil || fi.Mode().Type() != fs.ModeSymlink {
		t.Errorf("stat symlink = %v, %v", fi, err)
	}
	if _, err := fs.ReadFile(f, "link.toml"); err == nil {
		t.Error("reading a symlink followed it")
	}
	if fi, err := fs.Stat(f, "vendored"); err != nil || fi.Mode().Type() != fs.ModeIrregular {
		t.Errorf("stat submodule = %v, %v", fi, err)
	}
	if fi, err := fs.Stat(f, "run.sh"); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("stat executable = %v, %v", fi, err)
	}
	for _, bad := range []string{"/registry.toml", "../x", "entries/", "nope", "registry.toml/x"} {
		if _, err := fs.ReadFile(f, bad); err == nil {
			t.Errorf("ReadFile(%q) succeeded", bad)
		}
	}
}

// TestCrafted walks trees that git fsck refuses, built with git plumbing:
// each fails with one *Error naming the tree, never a crash or a loop.
func TestCrafted(t *testing.T) {
	for _, c := range []struct {
		kind, path, msg string
	}{
		{"dot", "entries/2026", `entry ".": "." as a name (git fsck: hasDot)`},
		{"dotdot", "entries", `entry "..": ".." as a name (git fsck: hasDotdot)`},
		{"dotgit", "entries", "hasDotgit"},
		{"dotgitcase", "entries", "hasDotgit"},
		{"dotgitntfs", "entries", "hasDotgit"},
		{"dotgithfs", "entries", `entry ".g\u200cit": ".git", or an alias`},
		{"empty", "entries/2026/11", `entry "": empty name (git fsck: emptyName)`},
		{"slash", "entries/2026/11", `entry "x/y.toml": "/" in a name (git fsck: fullPathname)`},
		{"duplicate", "entries", `entry "2026": listed twice`},
		{"unsorted", "entries/2026/11", `entry "a.toml": comes after "b.toml"`},
		{"badmode", "entries/2026/11", "mode 100664"},
	} {
		t.Run(c.kind, func(t *testing.T) {
			for _, packs := range []bool{false, true} {
				f := open(t, c.kind, 0, gittree.Limits{}, packs)
				_, err := walkAll(f)
				var te *gittree.Error
				if !errors.As(err, &te) || !errors.Is(err, gittree.ErrInvalidTree) {
					t.Fatalf("walk = %v, want a *gittree.Error of an invalid tree", err)
				}
				msg := err.Error()
				if te.Path != c.path || te.Kind != "tree" || len(te.ID) != 40 || !strings.Contains(msg, c.msg) || strings.Contains(msg, "\n") {
					t.Errorf("error = %q (path %q), want tree %s and %q on one line", msg, te.Path, c.path, c.msg)
				}
				if !strings.HasPrefix(msg, c.path+" (tree "+te.ID+"): ") {
					t.Errorf("error %q does not start with the path and id", msg)
				}
			}
		})
	}
	// Symlinks, gitlinks and executables are valid trees: the registry
	// refuses them under entries/, not the FS.
	for _, kind := range []string{"valid", "symlink", "gitlink", "executable"} {
		f := open(t, kind, 0, gittree.Limits{}, true)
		if _, err := walkAll(f); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
	}
}

// TestLimits checks each limit with a crafted repository just over it;
// the error names the object and wraps ErrLimit.
func TestLimits(t *testing.T) {
	for _, c := range []struct {
		kind string
		size int64
		lim  gittree.Limits
		path string
		msg  string
		file bool
	}{
		{"zipbomb", 4 << 20, gittree.Limits{}, "entries/2026/11/bomb.toml", "is 4194304 bytes (4.0 MiB), more than the limit of 65536 bytes (64.0 KiB) for one file", true},
		{"deep", 80, gittree.Limits{}, "entries/" + strings.Repeat("d/", 63) + "d", "nested 65 directories deep, more than the limit of 64", false},
		{"treebomb", 1 << 20, gittree.Limits{TreeSize: 64 << 10}, "entries/2026/11", "is 1048576 bytes (1.0 MiB), more than the limit of 65536 bytes (64.0 KiB) for one tree", false},
		{"valid", 0, gittree.Limits{Entries: 4}, "entries/2026/11", "more than the limit of 4", false},
		{"valid", 0, gittree.Limits{TotalBytes: 400}, "", "more than the limit of 400 bytes", true},
	} {
		t.Run(c.kind, func(t *testing.T) {
			for _, packs := range []bool{false, true} {
				f := open(t, c.kind, c.size, c.lim, packs)
				_, err := walkAll(f)
				var te *gittree.Error
				if !errors.As(err, &te) || !errors.Is(err, gittree.ErrLimit) {
					t.Fatalf("walk = %v, want a *gittree.Error of a limit", err)
				}
				if (c.path != "" && te.Path != c.path) || !strings.Contains(err.Error(), c.msg) || (te.Kind == "blob") != c.file {
					t.Errorf("error = %q, want %s and %q", err, c.path, c.msg)
				}
				if c.kind == "zipbomb" && !errors.Is(err, gittree.ErrFileTooLarge) {
					t.Errorf("zip bomb error %v is not ErrFileTooLarge", err)
				}
			}
		})
	}
}

// TestReadFiles checks that the parallel pack reader returns exactly the
// blobs go-git reads, over two packs and loose objects.
func TestReadFiles(t *testing.T) {
	must := mustOf(t)
	dir := filepath.Join(t.TempDir(), "many.git")
	if err := hostile.Many(dir, 1100); err != nil {
		t.Fatal(err)
	}
	r := &hostile.Repo{Dir: dir}
	// A second commit: edited entries in a second pack, new ones loose.
	base := must(hostile.Git(dir, nil, "rev-parse", "main^{tree}"))
	month := must(hostile.Git(dir, nil, "rev-parse", "main:entries/2026/01"))
	var es []hostile.TreeEntry
	ls := must(hostile.Git(dir, nil, "ls-tree", month))
	for i, line := range strings.Split(ls, "\n") {
		f := strings.Fields(line)
		id := f[2]
		if i%10 == 0 {
			id = must(r.Blob(hostile.Entry(fmt.Sprintf("edited-%d", i))))
		}
		es = append(es, hostile.TreeEntry{Mode: hostile.File, Name: f[3], ID: id})
	}
	must(hostile.Git(dir, nil, "repack", "-d", "-q"))
	loose := must(r.Blob(hostile.Entry("loose")))
	es = append(es, hostile.TreeEntry{Mode: hostile.File, Name: "loose.toml", ID: loose})
	newMonth := must(r.Tree(es))
	_ = base
	year := must(hostile.Git(dir, nil, "rev-parse", "main:entries/2026"))
	var ys []hostile.TreeEntry
	for _, line := range strings.Split(must(hostile.Git(dir, nil, "ls-tree", year)), "\n") {
		f := strings.Fields(line)
		id := f[2]
		if f[3] == "01" {
			id = newMonth
		}
		ys = append(ys, hostile.TreeEntry{Mode: hostile.Dir, Name: f[3], ID: id})
	}
	y := must(r.Tree(ys))
	e := must(r.Tree([]hostile.TreeEntry{{Mode: hostile.Dir, Name: "2026", ID: y}}))
	cfg := must(r.Blob([]byte(hostile.Config)))
	must(r.Commit(must(r.Tree([]hostile.TreeEntry{{Mode: hostile.File, Name: "registry.toml", ID: cfg}, {Mode: hostile.Dir, Name: "entries", ID: e}})), "second"))

	repo := openRepo(t, dir)
	fast, _, err := gittree.Open(repo, "main", gittree.Options{GitDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	slow, _, err := gittree.Open(repo, "main", gittree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := walkAll(slow)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1102 {
		t.Fatalf("%d files, want 1102", len(files))
	}
	got := make([][]byte, len(files))
	err = fast.ReadFiles(files, 2, func(i int, data []byte, err error) error {
		if err != nil {
			return err
		}
		if got[i] != nil {
			return fmt.Errorf("%s read twice", files[i])
		}
		got[i] = bytes.Clone(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range files {
		want, err := fs.ReadFile(slow, p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[i], want) {
			t.Errorf("%s: ReadFiles differs from ReadFile", p)
		}
	}
	// A file over the limit is reported to fn, and reading goes on.
	small, _, _ := gittree.Open(repo, "main", gittree.Options{GitDir: dir, Limits: gittree.Limits{FileSize: 200}})
	defer small.Close()
	over, read := 0, 0
	err = small.ReadFiles(files, 2, func(i int, data []byte, err error) error {
		if errors.Is(err, gittree.ErrFileTooLarge) {
			over++
		} else if err == nil {
			read++
		}
		return nil
	})
	if err != nil || over != len(files)-1 || read != 1 { // registry.toml is small
		t.Errorf("with a 200-byte limit: %d over, %d read, %v", over, read, err)
	}
}

// TestAdded checks the listing of files added between two commits.
func TestAdded(t *testing.T) {
	must := mustOf(t)
	dir := filepath.Join(t.TempDir(), "r.git")
	r, err := hostile.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := must(r.Blob(hostile.Entry("a")))
	b := must(r.Blob(hostile.Entry("b")))
	c := must(r.Blob(hostile.Entry("c")))
	tree := func(files map[string]string) string {
		// files: "dir/name" -> blob, one level of directories.
		dirs := map[string][]hostile.TreeEntry{}
		for p, id := range files {
			d, n, _ := strings.Cut(p, "/")
			dirs[d] = append(dirs[d], hostile.TreeEntry{Mode: hostile.File, Name: n, ID: id})
		}
		var es []hostile.TreeEntry
		for d, fs := range dirs {
			es = append(es, hostile.TreeEntry{Mode: hostile.Dir, Name: d, ID: must(r.Tree(fs))})
		}
		ent := must(r.Tree(es))
		return must(r.Tree([]hostile.TreeEntry{{Mode: hostile.Dir, Name: "entries", ID: ent}}))
	}
	repo := openRepo(t, dir)
	fsOf := func(id string) *gittree.FS {
		f, _, err := gittree.Open(repo, must(r.Commit(id, "x")), gittree.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	old := fsOf(tree(map[string]string{"x/a.toml": a}))
	for _, c := range []struct {
		files map[string]string
		added string
		ok    bool
	}{
		{map[string]string{"x/a.toml": a}, "", true},
		{map[string]string{"x/a.toml": a, "x/b.toml": b, "y/c.toml": c}, "entries/x/b.toml entries/y/c.toml", true},
		{map[string]string{"x/a.toml": b}, "", false},                // modified
		{map[string]string{"y/a.toml": a}, "", false},                // moved
		{map[string]string{"x/b.toml": b, "x/c.toml": c}, "", false}, // deleted
	} {
		added, ok, err := gittree.Added(old, fsOf(tree(c.files)), "entries")
		if err != nil || ok != c.ok || (ok && strings.Join(added, " ") != c.added) {
			t.Errorf("Added(%v) = %q, %v, %v; want %q, %v", c.files, added, ok, err, c.added, c.ok)
		}
	}
}

// TestLies reads objects whose data holds far more than their header
// says (a loose object, a packed one, a delta's result): each is refused
// at the header's size, in one line naming it, without inflating the
// rest.
func TestLies(t *testing.T) {
	const big = 256 << 20
	for _, tc := range []struct {
		kind string
		size int64
		msg  string
	}{
		{"looselie", big, "inflates to more than the 16 bytes its header says"},
		{"packlie", big, "inflates to more than the 16 bytes its header says"},
		{"deltalie", 100000, "is a delta that inserts beyond its data or its declared size of 16 bytes"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			f := open(t, tc.kind, tc.size, gittree.Limits{}, true)
			const name = "entries/2026/11/lie.toml"
			check := func(err error) {
				t.Helper()
				if !errors.Is(err, gittree.ErrCorrupt) {
					t.Fatalf("err = %v, want ErrCorrupt", err)
				}
				msg := err.Error()
				if !strings.Contains(msg, tc.msg) || !strings.Contains(msg, name) || strings.Contains(msg, "\n") {
					t.Errorf("message %q: want one line naming %s and saying %q", msg, name, tc.msg)
				}
			}
			allocated := func(fn func()) uint64 {
				var a, b runtime.MemStats
				runtime.ReadMemStats(&a)
				fn()
				runtime.ReadMemStats(&b)
				return b.TotalAlloc - a.TotalAlloc
			}
			if n := allocated(func() { _, err := f.ReadFile(name); check(err) }); n > 16<<20 {
				t.Errorf("ReadFile allocated %d bytes for an object of 16", n)
			}
			if n := allocated(func() {
				check(f.ReadFiles([]string{name}, 1, func(_ int, _ []byte, err error) error { return err }))
			}); n > 16<<20 {
				t.Errorf("ReadFiles allocated %d bytes for an object of 16", n)
			}
		})
	}
}

// TestDeltaDataLimit reads a delta whose instructions are far larger than
// any delta of an object within the file limit: refused before they are
// inflated.
func TestDeltaDataLimit(t *testing.T) {
	f := open(t, "deltalie", 100000, gittree.Limits{FileSize: 1024}, true)
	_, err := f.ReadFile("entries/2026/11/lie.toml")
	if err == nil || !strings.Contains(err.Error(), "its delta data is") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v, want the delta data refused in one line", err)
	}
}
