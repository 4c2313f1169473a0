package gittree_test

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/poison-nix/poison/internal/hostile"
	"github.com/poison-nix/poison/registry/gittree"
)

// TestIndexPack indexes packs git wrote (blobs delta'd against each other,
// trees, commits; and a thin pack whose deltas have their bases in the
// repository) and checks the index byte for byte against git index-pack's.
func TestIndexPack(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src.git")
	if err := hostile.Many(src, 3000); err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(src, "objects", "pack", "*.pack"))
	if len(packs) != 1 {
		t.Fatalf("%d packs", len(packs))
	}
	want, err := os.ReadFile(packs[0][:len(packs[0])-5] + ".idx")
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "dst.git")
	if _, err := hostile.Init(dst); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dst, "incoming")
	data, _ := os.ReadFile(packs[0])
	os.WriteFile(tmp, data, 0o644)
	name, err := gittree.IndexPack(dst, tmp, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dst, "objects", "pack", name+".idx"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("index differs from git's (%d bytes, git's %d)", len(got), len(want))
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("the incoming pack was not moved into place")
	}

	// A thin pack: one new entry delta'd against objects dst already has.
	work := filepath.Join(t.TempDir(), "work")
	if _, err := hostile.Git("", nil, "clone", "-q", src, work); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(work, hostile.ManyPath(0))
	old, _ := os.ReadFile(p)
	os.WriteFile(p, append(old, "# one more line\n"...), 0o644)
	for _, args := range [][]string{{"commit", "-qam", "more"}} {
		if _, err := hostile.Git(work, nil, args...); err != nil {
			t.Fatal(err)
		}
	}
	var thin bytes.Buffer
	revs := bytes.NewBufferString("HEAD\n^HEAD~1\n")
	out, err := hostile.GitBytes(work, revs, "pack-objects", "--thin", "--stdout", "--revs", "-q")
	if err != nil {
		t.Fatal(err)
	}
	thin.Write(out)
	os.WriteFile(tmp, thin.Bytes(), 0o644)
	if _, err := gittree.IndexPack(dst, tmp, 64<<10); err != nil {
		t.Fatalf("thin pack: %v", err)
	}
	head, _ := hostile.Git(work, nil, "rev-parse", "HEAD")
	if _, err := hostile.Git(dst, nil, "cat-file", "-e", head); err != nil {
		t.Errorf("git cannot read the commit of the indexed thin pack: %v", err)
	}

	// A pack that claims four billion objects in a few bytes: refused
	// before anything is allocated for them.
	claim := append([]byte("PACK\x00\x00\x00\x02\xff\xff\xff\xff"), make([]byte, 64)...)
	cs := sha1.Sum(claim)
	os.WriteFile(tmp, append(claim, cs[:]...), 0o644)
	if _, err := gittree.IndexPack(dst, tmp, 64<<10); !errors.Is(err, gittree.ErrCorrupt) {
		t.Errorf("pack claiming 2^32-1 objects: %v, want ErrCorrupt", err)
	}

	// A pack whose object inflates past its header: refused.
	lie := filepath.Join(t.TempDir(), "lie.git")
	if err := hostile.Build(lie, "packlie", 1<<20); err != nil {
		t.Fatal(err)
	}
	lp, _ := filepath.Glob(filepath.Join(lie, "objects", "pack", "*.pack"))
	data, _ = os.ReadFile(lp[0])
	os.WriteFile(tmp, data, 0o644)
	_, err = gittree.IndexPack(dst, tmp, 64<<10)
	if !errors.Is(err, gittree.ErrCorrupt) {
		t.Errorf("lying pack: %v, want ErrCorrupt", err)
	}
}
