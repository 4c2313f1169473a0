package resolver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// treeFS is a read-only fs.FS over one git tree. Directories are decoded
// lazily, on first use, and remembered; file contents come from a blob
// cache filled by preload or read one by one. go-git is not safe for
// concurrent use, so every access to the object store holds mu: the FS
// itself is safe for concurrent use.
//
// Symbolic links are reported with fs.ModeSymlink by ReadDir and Stat and
// are never followed: opening one fails. Submodule entries are reported as
// fs.ModeIrregular.
type treeFS struct {
	mu     sync.Mutex
	s      storer.EncodedObjectStorer
	gitDir string // when set, preload reads its packs in parallel
	packed int    // blobs preloaded from packs (for tests)
	root   *tnode
	blobs  map[plumbing.Hash][]byte
}

// tnode is one entry of the tree.
type tnode struct {
	name     string
	mode     filemode.FileMode
	hash     plumbing.Hash
	size     int64 // -1 until known
	loaded   bool  // children decoded (directories only)
	children []*tnode
}

func newTreeFS(s storer.EncodedObjectStorer, tree plumbing.Hash) *treeFS {
	return &treeFS{
		s:     s,
		root:  &tnode{name: ".", mode: filemode.Dir, hash: tree, size: -1},
		blobs: map[plumbing.Hash][]byte{},
	}
}

func (n *tnode) isDir() bool { return n.mode == filemode.Dir }

func (n *tnode) fsMode() fs.FileMode {
	switch n.mode {
	case filemode.Dir:
		return fs.ModeDir | 0o555
	case filemode.Symlink:
		return fs.ModeSymlink | 0o777
	case filemode.Executable:
		return 0o555
	case filemode.Submodule:
		return fs.ModeIrregular
	default:
		return 0o444
	}
}

// load decodes the tree of a directory node. Caller holds mu.
func (f *treeFS) load(n *tnode) error {
	if n.loaded {
		return nil
	}
	t, err := object.GetTree(f.s, n.hash)
	if err != nil {
		return fmt.Errorf("read git tree %s: %w", n.hash, err)
	}
	n.children = make([]*tnode, len(t.Entries))
	for i, e := range t.Entries {
		n.children[i] = &tnode{name: e.Name, mode: e.Mode, hash: e.Hash, size: -1}
	}
	// git sorts directories as if their name ended in "/"; fs wants plain
	// name order.
	sort.Slice(n.children, func(i, j int) bool { return n.children[i].name < n.children[j].name })
	n.loaded = true
	return nil
}

func (n *tnode) child(name string) *tnode {
	i := sort.Search(len(n.children), func(i int) bool { return n.children[i].name >= name })
	if i < len(n.children) && n.children[i].name == name {
		return n.children[i]
	}
	return nil
}

// lookup finds the node for a valid fs path without following symlinks.
// Caller holds mu.
func (f *treeFS) lookup(op, name string) (*tnode, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	n := f.root
	if name == "." {
		return n, nil
	}
	for _, part := range strings.Split(name, "/") {
		if !n.isDir() {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if err := f.load(n); err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		if n = n.child(part); n == nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
	}
	return n, nil
}

// content returns a blob's bytes. Caller holds mu.
func (f *treeFS) content(n *tnode) ([]byte, error) {
	if b, ok := f.blobs[n.hash]; ok {
		return b, nil
	}
	o, err := f.s.EncodedObject(plumbing.BlobObject, n.hash)
	if err != nil {
		return nil, fmt.Errorf("read git blob %s: %w", n.hash, err)
	}
	b, err := readObject(o)
	if err != nil {
		return nil, err
	}
	f.blobs[n.hash] = b
	return b, nil
}

func readObject(o plumbing.EncodedObject) ([]byte, error) {
	r, err := o.Reader()
	if err != nil {
		return nil, fmt.Errorf("read git object %s: %w", o.Hash(), err)
	}
	defer r.Close()
	b := make([]byte, 0, o.Size())
	buf := bytes.NewBuffer(b)
	if _, err := io.Copy(buf, r); err != nil {
		return nil, fmt.Errorf("read git object %s: %w", o.Hash(), err)
	}
	return buf.Bytes(), nil
}

// walk calls fn for every regular file below n (all directories decoded).
// Caller holds mu.
func (f *treeFS) walk(n *tnode, dir string, fn func(p string, n *tnode)) error {
	if err := f.load(n); err != nil {
		return err
	}
	for _, c := range n.children {
		p := path.Join(dir, c.name)
		switch {
		case c.isDir():
			if err := f.walk(c, p, fn); err != nil {
				return err
			}
		case c.mode == filemode.Regular || c.mode == filemode.Executable || c.mode == filemode.Deprecated:
			fn(p, c)
		}
	}
	return nil
}

// preload reads every file of the tree into memory in pack order, which is
// several times faster than reading blobs one by one in path order (the
// cold resolve of a 100,000-entry registry depends on it). It returns the
// number of files.
func (f *treeFS) preload() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	need := map[plumbing.Hash]bool{}
	files := 0
	if err := f.walk(f.root, ".", func(_ string, n *tnode) {
		files++
		if _, ok := f.blobs[n.hash]; !ok {
			need[n.hash] = true
		}
	}); err != nil {
		return 0, err
	}
	if len(need) < 64 {
		return files, nil // not worth a scan
	}
	if f.gitDir != "" {
		// Errors only mean the sequential scan below does the rest.
		f.preloadPacks(need)
		if len(need) == 0 {
			return files, nil
		}
	}
	it, err := f.s.IterEncodedObjects(plumbing.BlobObject)
	if err != nil {
		return 0, fmt.Errorf("scan git blobs: %w", err)
	}
	err = it.ForEach(func(o plumbing.EncodedObject) error {
		h := o.Hash()
		if !need[h] {
			return nil
		}
		b, err := readObject(o)
		if err != nil {
			return err
		}
		f.blobs[h] = b
		delete(need, h)
		if len(need) == 0 {
			return storer.ErrStop
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("scan git blobs: %w", err)
	}
	// Anything not found by the scan is read on demand (and fails there
	// with the blob's path if it is really missing).
	return files, nil
}

// Open implements fs.FS.
func (f *treeFS) Open(name string) (fs.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.lookup("open", name)
	if err != nil {
		return nil, err
	}
	switch {
	case n.isDir():
		if err := f.load(n); err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return &treeDir{fs: f, n: n, name: name}, nil
	case n.mode == filemode.Symlink:
		return nil, &fs.PathError{Op: "open", Path: name, Err: errSymlink}
	case n.mode == filemode.Submodule:
		return nil, &fs.PathError{Op: "open", Path: name, Err: errSubmodule}
	}
	b, err := f.content(n)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	n.size = int64(len(b))
	return &treeFile{Reader: bytes.NewReader(b), info: fileInfo{n: n}}, nil
}

var (
	errSymlink   = errors.New("is a symbolic link (not followed)")
	errSubmodule = errors.New("is a git submodule")
)

// ReadFile implements fs.ReadFileFS.
func (f *treeFS) ReadFile(name string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.lookup("read", name)
	if err != nil {
		return nil, err
	}
	switch {
	case n.isDir():
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("is a directory")}
	case n.mode == filemode.Symlink:
		return nil, &fs.PathError{Op: "read", Path: name, Err: errSymlink}
	case n.mode == filemode.Submodule:
		return nil, &fs.PathError{Op: "read", Path: name, Err: errSubmodule}
	}
	b, err := f.content(n)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	n.size = int64(len(b))
	return bytes.Clone(b), nil
}

// ReadDir implements fs.ReadDirFS.
func (f *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	if err := f.load(n); err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, len(n.children))
	for i, c := range n.children {
		out[i] = dirEntry{f: f, n: c}
	}
	return out, nil
}

// Stat implements fs.StatFS. Like lstat, it does not follow symlinks.
func (f *treeFS) Stat(name string) (fs.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	if err := f.size(n); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	return fileInfo{n: n}, nil
}

// size fills n.size for files. Caller holds mu.
func (f *treeFS) size(n *tnode) error {
	if n.size >= 0 || n.isDir() || n.mode == filemode.Submodule {
		return nil
	}
	if b, ok := f.blobs[n.hash]; ok {
		n.size = int64(len(b))
		return nil
	}
	sz, err := f.s.EncodedObjectSize(n.hash)
	if err != nil {
		return fmt.Errorf("read git blob %s: %w", n.hash, err)
	}
	n.size = sz
	return nil
}

type fileInfo struct{ n *tnode }

func (i fileInfo) Name() string       { return i.n.name }
func (i fileInfo) Size() int64        { return max(i.n.size, 0) }
func (i fileInfo) Mode() fs.FileMode  { return i.n.fsMode() }
func (i fileInfo) ModTime() time.Time { return time.Time{} }
func (i fileInfo) IsDir() bool        { return i.n.isDir() }
func (i fileInfo) Sys() any           { return nil }

type dirEntry struct {
	f *treeFS
	n *tnode
}

func (d dirEntry) Name() string      { return d.n.name }
func (d dirEntry) IsDir() bool       { return d.n.isDir() }
func (d dirEntry) Type() fs.FileMode { return d.n.fsMode().Type() }
func (d dirEntry) Info() (fs.FileInfo, error) {
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	if err := d.f.size(d.n); err != nil {
		return nil, err
	}
	return fileInfo{n: d.n}, nil
}
func (d dirEntry) String() string { return fs.FormatDirEntry(d) }

type treeFile struct {
	*bytes.Reader
	info fileInfo
}

func (t *treeFile) Stat() (fs.FileInfo, error) { return t.info, nil }
func (t *treeFile) Close() error               { return nil }

type treeDir struct {
	fs   *treeFS
	n    *tnode
	name string
	off  int
}

func (d *treeDir) Stat() (fs.FileInfo, error) { return fileInfo{n: d.n}, nil }
func (d *treeDir) Close() error               { return nil }
func (d *treeDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.name, Err: errors.New("is a directory")}
}

// ReadDir implements fs.ReadDirFile.
func (d *treeDir) ReadDir(count int) ([]fs.DirEntry, error) {
	d.fs.mu.Lock()
	defer d.fs.mu.Unlock()
	rest := d.n.children[d.off:]
	if count <= 0 {
		d.off = len(d.n.children)
		out := make([]fs.DirEntry, len(rest))
		for i, c := range rest {
			out[i] = dirEntry{f: d.fs, n: c}
		}
		return out, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	if count > len(rest) {
		count = len(rest)
	}
	out := make([]fs.DirEntry, count)
	for i, c := range rest[:count] {
		out[i] = dirEntry{f: d.fs, n: c}
	}
	d.off += count
	return out, nil
}

// preloadPacks reads the needed blobs straight from the pack files of
// gitDir, in pack order, split over GOMAXPROCS goroutines that each open
// their own pack and index (go-git's objects are not safe for concurrent
// use). Found blobs are removed from need. Caller holds mu.
func (f *treeFS) preloadPacks(need map[plumbing.Hash]bool) error {
	idxs, err := filepath.Glob(filepath.Join(f.gitDir, "objects", "pack", "pack-*.idx"))
	if err != nil || len(idxs) == 0 {
		return err
	}
	type item struct {
		pack int
		off  int64
		h    plumbing.Hash
	}
	var items []item
	for i, p := range idxs {
		idx, err := readIdx(p)
		if err != nil {
			return err
		}
		for h := range need {
			if off, err := idx.FindOffset(h); err == nil {
				items = append(items, item{i, off, h})
			}
		}
	}
	sort.Slice(items, func(i, j int) bool {
		if items[i].pack != items[j].pack {
			return items[i].pack < items[j].pack
		}
		return items[i].off < items[j].off
	})
	// The packs are read into memory once: the pack reader seeks before
	// every object, and a syscall per seek and read cost more than the
	// inflating on a 100,000-object pack.
	packData := make([][]byte, len(idxs))
	for i, p := range idxs {
		b, err := os.ReadFile(strings.TrimSuffix(p, ".idx") + ".pack")
		if err != nil {
			return err
		}
		packData[i] = b
	}
	workers := min(runtime.GOMAXPROCS(0), 8)
	if len(items) < 1024 {
		workers = 1
	}
	results := make([][]byte, len(items))
	chunk := (len(items) + workers - 1) / workers
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, len(items))
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			packs := map[int]*packfile.Packfile{}
			defer func() {
				for _, p := range packs {
					p.Close()
				}
			}()
			for i := lo; i < hi; i++ {
				it := items[i]
				pf := packs[it.pack]
				if pf == nil {
					idx, err := readIdx(idxs[it.pack])
					if err != nil {
						errs[w] = err
						return
					}
					dir := filepath.Dir(idxs[it.pack])
					file := &memFile{Reader: bytes.NewReader(packData[it.pack]), name: idxs[it.pack]}
					pf = packfile.NewPackfile(idx, osfs.New(dir, osfs.WithBoundOS()), file, 0)
					packs[it.pack] = pf
				}
				o, err := pf.GetByOffset(it.off)
				if err != nil {
					errs[w] = err
					return
				}
				if o.Type() != plumbing.BlobObject || o.Hash() != it.h {
					errs[w] = fmt.Errorf("pack object at %d is not blob %s", it.off, it.h)
					return
				}
				b, err := readObject(o)
				if err != nil {
					errs[w] = err
					return
				}
				results[i] = b
			}
		}()
	}
	wg.Wait()
	for i, it := range items {
		if results[i] != nil {
			f.blobs[it.h] = results[i]
			delete(need, it.h)
			f.packed++
		}
	}
	return errors.Join(errs...)
}

func readIdx(path string) (*idxfile.MemoryIndex, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	idx := idxfile.NewMemoryIndex()
	if err := idxfile.NewDecoder(bufio.NewReader(fh)).Decode(idx); err != nil {
		return nil, fmt.Errorf("read pack index %s: %w", path, err)
	}
	return idx, nil
}

// memFile is a read-only billy.File over bytes, for packfile.NewPackfile.
type memFile struct {
	*bytes.Reader
	name string
}

func (m *memFile) Name() string              { return m.name }
func (m *memFile) Write([]byte) (int, error) { return 0, errors.New("read-only") }
func (m *memFile) Close() error              { return nil }
func (m *memFile) Lock() error               { return nil }
func (m *memFile) Unlock() error             { return nil }
func (m *memFile) Truncate(int64) error      { return errors.New("read-only") }
