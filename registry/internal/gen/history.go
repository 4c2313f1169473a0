package gen

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Signature is the author of generated commits.
func Signature(i int) *object.Signature {
	return &object.Signature{Name: "Gen Erator", Email: "gen@example.com", When: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)}
}

// dir is an in-memory tree whose hash is recomputed only when a file
// below it changed.
type dir struct {
	files map[string]plumbing.Hash
	dirs  map[string]*dir
	hash  plumbing.Hash // zero when stale
}

func newDir() *dir { return &dir{files: map[string]plumbing.Hash{}, dirs: map[string]*dir{}} }

func (d *dir) put(path string, h plumbing.Hash) {
	d.hash = plumbing.ZeroHash
	name, rest, nested := strings.Cut(path, "/")
	if !nested {
		d.files[name] = h
		return
	}
	sub, ok := d.dirs[name]
	if !ok {
		sub = newDir()
		d.dirs[name] = sub
	}
	sub.put(rest, h)
}

func (d *dir) write(s storer.EncodedObjectStorer) (plumbing.Hash, error) {
	if !d.hash.IsZero() {
		return d.hash, nil
	}
	var t object.Tree
	for name, h := range d.files {
		t.Entries = append(t.Entries, object.TreeEntry{Name: name, Mode: filemode.Regular, Hash: h})
	}
	for name, sub := range d.dirs {
		h, err := sub.write(s)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		t.Entries = append(t.Entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
	}
	// Git orders tree entries as if directory names ended in '/'.
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.Slice(t.Entries, func(i, j int) bool { return key(t.Entries[i]) < key(t.Entries[j]) })
	h, err := store(s, &t)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	d.hash = h
	return h, nil
}

type encoder interface {
	Encode(plumbing.EncodedObject) error
}

func store(s storer.EncodedObjectStorer, o encoder) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	if err := o.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}

func storeBlob(s storer.EncodedObjectStorer, data []byte) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(data); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}

// WriteHistory creates a git repository in dir on branch main whose first
// commit holds registry.toml and each following commit adds one entry:
// n+1 commits. Objects are written directly (no index), then the work
// tree is checked out.
func WriteHistory(ctx context.Context, dirPath string, seed uint64, n int) error {
	repo, err := git.PlainInitWithOptions(dirPath, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.Main}})
	if err != nil {
		return err
	}
	s := repo.Storer
	root := newDir()
	commit := func(i int, msg string, parent plumbing.Hash) (plumbing.Hash, error) {
		th, err := root.write(s)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		c := &object.Commit{Author: *Signature(i), Committer: *Signature(i), Message: msg, TreeHash: th}
		if !parent.IsZero() {
			c.ParentHashes = []plumbing.Hash{parent}
		}
		return store(s, c)
	}
	h, err := storeBlob(s, []byte(Config))
	if err != nil {
		return err
	}
	root.put("registry.toml", h)
	head, err := commit(0, "init\n", plumbing.ZeroHash)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		file, data := Entry(seed, i)
		bh, err := storeBlob(s, data)
		if err != nil {
			return err
		}
		root.put(file, bh)
		if head, err = commit(i+1, fmt.Sprintf("add entry %d\n", i), head); err != nil {
			return err
		}
	}
	if err := s.SetReference(plumbing.NewHashReference(plumbing.Main, head)); err != nil {
		return err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	if err := wt.Reset(&git.ResetOptions{Commit: head, Mode: git.HardReset}); err != nil {
		return fmt.Errorf("check out %s: %w", head, err)
	}
	if _, err := os.Stat(filepath.Join(dirPath, "registry.toml")); err != nil {
		return fmt.Errorf("check out %s: %w", head, err)
	}
	return nil
}
