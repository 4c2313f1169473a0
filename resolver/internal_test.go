package resolver

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"testing/fstest"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/resolver/internal/regtest"
)

// TestTreeFS runs the standard fs.FS conformance checks on a git tree and
// checks that symlinks and submodules are reported, never followed.
func TestTreeFS(t *testing.T) {
	dir := t.TempDir()
	repo := regtest.NewRepo(t, dir, map[string][]byte{"a": regtest.Entry("a-1", "a"), "b": regtest.Entry("b-1", "b")})
	repo.Write("sub/dir/deep.txt", []byte("deep"))
	repo.Write("run.sh", []byte("#!/bin/sh\n"))
	os.Chmod(filepath.Join(dir, "run.sh"), 0o755)
	plain := repo.Commit("more")
	os.Symlink("registry.toml", filepath.Join(dir, "entries", "link.toml"))
	repo.Commit("symlink")
	// A submodule entry (gitlink) without a .gitmodules.
	regtest.Git(t, dir, "update-index", "--add", "--cacheinfo", "160000,"+repo.Head()+",vendored")
	regtest.Git(t, dir, "commit", "-q", "-m", "gitlink")

	r, err := openRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	treeOf := func(commit string) plumbing.Hash {
		c, err := r.CommitObject(plumbing.NewHash(commit))
		if err != nil {
			t.Fatal(err)
		}
		tree, _ := c.Tree()
		return tree.Hash
	}
	// fstest.TestFS opens every file, so it runs on the tree without the
	// symlink and the submodule (which Open refuses).
	newFS := func() *treeFS { return newTreeFS(r.Storer, treeOf(plain)) }

	if err := fstest.TestFS(newFS(), "registry.toml", "entries/2026/11/a.toml", "sub/dir/deep.txt", "run.sh"); err != nil {
		t.Fatal(err)
	}
	preloaded := newFS()
	if _, err := preloaded.preload(); err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(preloaded, "registry.toml", "entries/2026/11/b.toml"); err != nil {
		t.Fatal(err)
	}

	f := newTreeFS(r.Storer, treeOf(repo.Head()))
	ents, err := fs.ReadDir(f, "entries")
	if err != nil {
		t.Fatal(err)
	}
	var link fs.DirEntry
	for _, e := range ents {
		if e.Name() == "link.toml" {
			link = e
		}
	}
	if link == nil || link.Type() != fs.ModeSymlink {
		t.Fatalf("symlink entry = %v, want type ModeSymlink", link)
	}
	if _, err := fs.ReadFile(f, "entries/link.toml"); err == nil {
		t.Error("reading a symlink followed it")
	}
	if fi, err := fs.Stat(f, "entries/link.toml"); err != nil || fi.Mode().Type() != fs.ModeSymlink {
		t.Errorf("stat symlink = %v, %v", fi, err)
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

// TestSubsetFS checks the view of added files used by incremental loads.
func TestSubsetFS(t *testing.T) {
	dir := t.TempDir()
	repo := regtest.NewRepo(t, dir, map[string][]byte{"a": regtest.Entry("a-1", "a"), "b": regtest.Entry("b-1", "b")})
	r, err := openRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, _ := r.CommitObject(plumbing.NewHash(repo.Head()))
	tree, _ := c.Tree()
	s := newSubsetFS(newTreeFS(r.Storer, tree.Hash), []string{"registry.toml", "entries/2026/11/b.toml"})
	if err := fstest.TestFS(s, "registry.toml", "entries/2026/11/b.toml"); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.ReadFile(s, "entries/2026/11/a.toml"); err == nil {
		t.Error("hidden file readable")
	}
}

// randomLock makes a lock with awkward names too.
func randomLock(rng *rand.Rand, n int, weird bool) *lock.File {
	l := lock.New(lock.Source{URL: "git://h/r", Ref: "main", Commit: fmt.Sprintf("%040x", rng.Uint64())}, "POISON_SERIAL")
	names := []string{"plain-1.0", "quo\"te", "back\\slash", "${inject}", "new\nline", "ünïcode", "tab\there", "<html>&amp;", "\u2028sep"}
	for i := 0; i < n; i++ {
		h := regtest.Hash(fmt.Sprint(rng.Uint64()))
		l.Derivations[h+"-p.drv"] = 1 + rng.IntN(3)
		l.Outputs[h+"-p"] = 1 + rng.IntN(3)
		l.Names[fmt.Sprintf("p%d", i)] = 1 + rng.IntN(3)
	}
	if weird {
		for i, nm := range names {
			l.Names[nm] = i + 1
		}
	}
	return l
}

// TestFastLock checks the fast encoder and decoder against the lock
// package.
func TestFastLock(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []*lock.File{
		lock.New(lock.Source{}, "POISON_SERIAL"),
		randomLock(rng, 1, false),
		randomLock(rng, 500, false),
		randomLock(rng, 50, true),
	}
	store := randomLock(rng, 3, false)
	store.StoreDir = "/gnu/store"
	cases = append(cases, store)
	weirdSrc := randomLock(rng, 3, false)
	weirdSrc.Registry.URL = "file:///a \"quoted\" path/ü"
	cases = append(cases, weirdSrc)
	for i, l := range cases {
		want, err := l.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeLock(l)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("case %d: encodeLock differs from Marshal:\n%s\nwant:\n%s", i, got, want)
		}
		back, err := decodeLock(want)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		ref, err := lock.Unmarshal(want)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !reflect.DeepEqual(back, ref) {
			t.Errorf("case %d: decodeLock differs from Unmarshal", i)
		}
		if src, ok := decodeSource(want); !ok || src != l.Registry {
			t.Errorf("case %d: decodeSource = %v, %v", i, src, ok)
		}
	}
	for _, bad := range []string{"", "{", "{\n  \"version\": 1,\n}\n", "[]"} {
		if _, err := decodeLock([]byte(bad)); err == nil {
			t.Errorf("decodeLock(%q) succeeded", bad)
		}
	}
}

func FuzzDecodeLock(f *testing.F) {
	l := randomLock(rand.New(rand.NewPCG(3, 4)), 3, true)
	b, _ := l.Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeLock(data)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to a lock that decodes the same.
		enc, err := encodeLock(got)
		if err != nil {
			return
		}
		again, err := decodeLock(enc)
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// TestPreloadPacks checks that the parallel pack reader returns exactly
// the blobs the object store holds.
func TestPreloadPacks(t *testing.T) {
	dir := t.TempDir()
	if err := regtest.WriteMany(dir, 1100); err != nil {
		t.Fatal(err)
	}
	repo := regtest.InitRepo(t, dir)
	// Two packs: the first commit packed, then a second packed with deltas.
	regtest.Git(t, dir, "gc", "-q")
	for i := 0; i < 90; i++ {
		repo.Write(fmt.Sprintf("entries/2026/01/incident-%06d.toml", i*12), regtest.Entry(fmt.Sprint(i), "edited"))
	}
	repo.Write("entries/2027/01/new.toml", regtest.Entry("new", "new"))
	repo.Commit("more")
	regtest.Git(t, dir, "repack", "-q", "-d")
	r, err := openRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, _ := r.CommitObject(plumbing.NewHash(repo.Head()))
	tree, _ := c.Tree()
	fast := newTreeFS(r.Storer, tree.Hash)
	fast.gitDir = r.dir
	n, err := fast.preload()
	if err != nil || n != 1102 {
		t.Fatalf("preload: %d files, %v", n, err)
	}
	slow := newTreeFS(r.Storer, tree.Hash)
	count := 0
	err = fs.WalkDir(slow, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		want, err := fs.ReadFile(slow, p)
		if err != nil {
			return err
		}
		got, err := fs.ReadFile(fast, p)
		if err != nil {
			return err
		}
		if string(got) != string(want) {
			t.Errorf("%s differs", p)
		}
		count++
		return nil
	})
	if err != nil || count != 1102 {
		t.Fatalf("walk: %d files, %v", count, err)
	}
	if fast.packed != 1102 {
		t.Errorf("%d blobs read from packs, want 1102", fast.packed)
	}
}

// TestExtendEncoded checks the byte-level merge against encoding the
// summed lock.
func TestExtendEncoded(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	empty := lock.New(lock.Source{URL: "u", Ref: "r", Commit: fmt.Sprintf("%040x", 1)}, "POISON_SERIAL")
	for i, c := range []struct{ base, add *lock.File }{
		{randomLock(rng, 200, false), randomLock(rng, 3, false)},
		{empty, randomLock(rng, 3, false)},
		{randomLock(rng, 50, false), lock.New(lock.Source{}, "POISON_SERIAL")},
		{randomLock(rng, 1, false), randomLock(rng, 40, false)},
	} {
		// Overlapping keys too.
		for k, v := range c.base.Outputs {
			c.add.Outputs[k] = v
			break
		}
		baseBytes, _ := encodeLock(c.base)
		src := lock.Source{URL: "git://new", Ref: "main", Commit: fmt.Sprintf("%040x", i+7)}
		got, ok := extendEncoded(baseBytes, src, c.add)
		if !ok {
			t.Fatalf("case %d: not extended", i)
		}
		sum := lock.New(src, "POISON_SERIAL")
		for _, l := range []*lock.File{c.base, c.add} {
			for k, v := range l.Derivations {
				sum.Derivations[k] += v
			}
			for k, v := range l.Outputs {
				sum.Outputs[k] += v
			}
			for k, v := range l.Names {
				sum.Names[k] += v
			}
		}
		want, _ := sum.Marshal()
		if string(got) != string(want) {
			t.Errorf("case %d:\n%s\nwant:\n%s", i, got, want)
		}
	}
	weird := randomLock(rng, 3, true)
	if _, ok := extendEncoded([]byte("{}"), lock.Source{}, weird); ok {
		t.Error("extended with non-plain keys")
	}
	other := randomLock(rng, 3, false)
	other.Env = "OTHER"
	b, _ := encodeLock(randomLock(rng, 3, false))
	if _, ok := extendEncoded(b, lock.Source{}, other); ok {
		t.Error("extended across env attributes")
	}
}
