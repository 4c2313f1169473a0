package registry

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// OpenGitRepo opens the git repository at dir (a work tree or a bare
// repository).
func OpenGitRepo(dir string) (*git.Repository, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
	if err != nil {
		return nil, fmt.Errorf("open git repository %s: %w", dir, err)
	}
	return repo, nil
}

// resolveCommit resolves a revision to a commit.
func resolveCommit(repo *git.Repository, rev string) (*object.Commit, error) {
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", rev, err)
	}
	c, err := repo.CommitObject(*h)
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", rev, err)
	}
	return c, nil
}

// TreeFS returns a read-only file system over the tree of commit rev, for
// Load. ReadDir reports symlinks as fs.ModeSymlink and submodules as
// fs.ModeIrregular. It is safe for concurrent use: go-git access is
// serialised.
func TreeFS(repo *git.Repository, rev string) (fs.FS, string, error) {
	c, err := resolveCommit(repo, rev)
	if err != nil {
		return nil, "", err
	}
	t, err := c.Tree()
	if err != nil {
		return nil, "", fmt.Errorf("read tree of %s: %w", c.Hash, err)
	}
	return &treeFS{repo: repo, root: t, when: c.Committer.When}, c.Hash.String(), nil
}

type treeFS struct {
	mu   sync.Mutex
	repo *git.Repository
	root *object.Tree
	when time.Time
}

func modeOf(m filemode.FileMode) fs.FileMode {
	switch m {
	case filemode.Dir:
		return fs.ModeDir | 0o755
	case filemode.Symlink:
		return fs.ModeSymlink | 0o777
	case filemode.Submodule:
		return fs.ModeIrregular
	case filemode.Executable:
		return 0o755
	}
	return 0o644
}

type treeEntryInfo struct {
	name string
	mode fs.FileMode
	size int64
	when time.Time
}

func (i treeEntryInfo) Name() string               { return i.name }
func (i treeEntryInfo) Size() int64                { return i.size }
func (i treeEntryInfo) Mode() fs.FileMode          { return i.mode }
func (i treeEntryInfo) ModTime() time.Time         { return i.when }
func (i treeEntryInfo) IsDir() bool                { return i.mode.IsDir() }
func (i treeEntryInfo) Sys() any                   { return nil }
func (i treeEntryInfo) Type() fs.FileMode          { return i.mode.Type() }
func (i treeEntryInfo) Info() (fs.FileInfo, error) { return i, nil }

// entry finds name (a valid fs path) in the tree; "." is the root.
func (f *treeFS) entry(op, name string) (*object.TreeEntry, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return &object.TreeEntry{Name: ".", Mode: filemode.Dir, Hash: f.root.Hash}, nil
	}
	e, err := f.root.FindEntry(name)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return e, nil
}

func (f *treeFS) size(e *object.TreeEntry) int64 {
	if e.Mode == filemode.Dir || e.Mode == filemode.Submodule {
		return 0
	}
	if s, err := f.repo.Storer.EncodedObjectSize(e.Hash); err == nil {
		return s
	}
	return 0
}

// ReadDir implements fs.ReadDirFS.
func (f *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.entry("readdir", name)
	if err != nil {
		return nil, err
	}
	if e.Mode != filemode.Dir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	t, err := f.repo.TreeObject(e.Hash)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, 0, len(t.Entries))
	for i := range t.Entries {
		te := &t.Entries[i]
		out = append(out, treeEntryInfo{name: te.Name, mode: modeOf(te.Mode), when: f.when})
	}
	return out, nil // git trees are sorted by name, as fs.ReadDir requires
}

// ReadFile implements fs.ReadFileFS.
func (f *treeFS) ReadFile(name string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.entry("read", name)
	if err != nil {
		return nil, err
	}
	if !e.Mode.IsFile() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("not a regular file")}
	}
	b, err := f.repo.BlobObject(e.Hash)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	r, err := b.Reader()
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, MaxEntrySize+1<<20))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return data, nil
}

// Stat implements fs.StatFS.
func (f *treeFS) Stat(name string) (fs.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.entry("stat", name)
	if err != nil {
		return nil, err
	}
	return treeEntryInfo{name: path.Base(name), mode: modeOf(e.Mode), size: f.size(e), when: f.when}, nil
}

// Open implements fs.FS. Directories are opened for Stat and ReadDir only.
func (f *treeFS) Open(name string) (fs.File, error) {
	info, err := f.Stat(name)
	if err != nil {
		return nil, err
	}
	if info.IsDir() {
		ents, err := f.ReadDir(name)
		if err != nil {
			return nil, err
		}
		return &treeDir{info: info, ents: ents}, nil
	}
	data, err := f.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return &treeFile{info: info, r: strings.NewReader(string(data))}, nil
}

type treeFile struct {
	info fs.FileInfo
	r    *strings.Reader
}

func (t *treeFile) Stat() (fs.FileInfo, error) { return t.info, nil }
func (t *treeFile) Read(b []byte) (int, error) { return t.r.Read(b) }
func (t *treeFile) Close() error               { return nil }

type treeDir struct {
	info fs.FileInfo
	ents []fs.DirEntry
}

func (t *treeDir) Stat() (fs.FileInfo, error) { return t.info, nil }
func (t *treeDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: t.info.Name(), Err: errors.New("is a directory")}
}
func (t *treeDir) Close() error { return nil }
func (t *treeDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if n <= 0 {
		e := t.ents
		t.ents = nil
		return e, nil
	}
	if len(t.ents) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(t.ents))
	e := t.ents[:n]
	t.ents = t.ents[n:]
	return e, nil
}
