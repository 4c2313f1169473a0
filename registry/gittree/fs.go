// Package gittree is a read-only file system over one git tree that
// validates every tree as git fsck does before anything can walk it, and
// bounds every read (Limits): the one way poison reads a registry commit,
// in resolve, lint --rev and the pre-receive hook alike.
//
// Trees are decoded lazily, on first use, and remembered; decoding a tree
// checks its size from the object header first, then every entry (names
// ".", "..", ".git" and its aliases, "/" in a name, duplicates, git's
// order, modes), the depth and the running count of entries. A file's size
// is read from its object header before any of it is inflated. Errors name
// the object by path and id (*Error).
//
// Symbolic links are reported with fs.ModeSymlink and submodules
// (gitlinks) with fs.ModeIrregular, and neither can be opened. The FS is
// safe for concurrent use: go-git, which is not, is used under a mutex.
package gittree

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
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// FS is a read-only fs.FS over a git tree. It implements fs.ReadDirFS,
// fs.ReadFileFS and fs.StatFS.
type FS struct {
	mu      sync.Mutex
	s       storer.EncodedObjectStorer
	lim     Limits
	root    node
	when    time.Time
	objs    *Objects // when set, objects are read from the git directory directly
	ownObjs bool     // objs is closed by Close
	entries int64    // tree entries decoded so far
	bytes   int64    // bytes of trees and files read so far
}

// New returns the file system of tree in s, bounded by lim (zero fields
// take their defaults). Nothing is read until it is used.
func New(s storer.EncodedObjectStorer, tree plumbing.Hash, lim Limits) *FS {
	return &FS{s: s, lim: lim.WithDefaults(), root: node{name: ".", mode: filemode.Dir, hash: tree}}
}

// Options configures Open.
type Options struct {
	Limits Limits
	// GitDir is the repository's git directory. When set, objects are
	// read from its packs and loose objects directly (Objects), and
	// ReadFiles reads in parallel and in pack order.
	GitDir string
}

// Open resolves rev (a commit, branch or tag) in repo and returns the file
// system of its tree and the full commit id. File times are the commit's
// committer time.
func Open(repo *git.Repository, rev string, o Options) (*FS, string, error) {
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, "", fmt.Errorf("resolve %q: %w", rev, err)
	}
	c, err := repo.CommitObject(*h)
	if err != nil {
		return nil, "", fmt.Errorf("resolve %q: %w", rev, err)
	}
	f := New(repo.Storer, c.TreeHash, o.Limits)
	f.when = c.Committer.When
	if o.GitDir != "" {
		f.SetGitDir(o.GitDir)
	}
	return f, c.Hash.String(), nil
}

// SetGitDir makes the FS read objects from the pack files and loose
// objects of gitDir directly (in parallel and in pack order for
// ReadFiles). Call it before any use.
func (f *FS) SetGitDir(gitDir string) { f.objs, f.ownObjs = OpenObjects(gitDir), true }

// SetObjects is SetGitDir with an object reader shared with other users,
// which Close leaves open.
func (f *FS) SetObjects(o *Objects) { f.objs, f.ownObjs = o, false }

// Close releases the pack files the FS opened and the trees it decoded.
// The FS must not be used afterwards.
func (f *FS) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.objs != nil && f.ownObjs {
		f.objs.Close()
	}
	f.objs, f.root.dir = nil, nil
	return nil
}

// ErrCorrupt is wrapped by every *Error about an object whose content does
// not match its header.
var ErrCorrupt = errors.New("corrupt git object")

// objectError turns a failure of Objects on object h at path p into an
// *Error for a limit or a lie, and wraps any other.
func (f *FS) objectError(p, kind string, h plumbing.Hash, limit int64, what string, err error) error {
	var big *tooLarge
	var bad *corrupt
	switch {
	case errors.As(err, &big):
		e := &Error{Path: p, Kind: kind, ID: h.String(), Err: ErrLimit, Limit: "TreeSize"}
		if kind == "blob" {
			e.Err, e.Limit = ErrFileTooLarge, "FileSize"
		}
		if big.base {
			e.Msg = fmt.Sprintf("is stored as a delta of an object of %s, more than the limit of %s for %s", size(big.size), size(limit), what)
		} else {
			e.Msg = fmt.Sprintf("is %s, more than the limit of %s for %s", size(big.size), size(limit), what)
		}
		return e
	case errors.As(err, &bad):
		return &Error{Path: p, Kind: kind, ID: h.String(), Err: ErrCorrupt, Msg: bad.Error()}
	}
	var oe *ObjectError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return fmt.Errorf("read git %s %s at %s: %w", kind, h, QuotePath(p), err)
}

// object reads object h of the given kind ("tree" or "blob") at path p,
// refusing it before inflating anything when it (or a delta base it needs)
// is larger than limit, and counting it in the bytes read. The bytes may
// be shared with the object cache unless clone is set. Caller holds mu.
func (f *FS) object(p, kind string, h plumbing.Hash, limit int64, what string, clone bool) ([]byte, error) {
	if f.objs != nil {
		b, err := f.objs.read(h, kind, limit, clone)
		if err == nil {
			if err := f.count(p, kind, h, int64(len(b))); err != nil {
				return nil, err
			}
			return b, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, f.objectError(p, kind, h, limit, what, err)
		}
		// Not in the packs nor loose (an alternate object store, say):
		// through go-git, which is bounded by the header size below.
	}
	sz, err := f.s.EncodedObjectSize(h)
	if err != nil {
		return nil, fmt.Errorf("read git %s %s at %s: %w", kind, h, QuotePath(p), err)
	}
	if sz > limit {
		return nil, f.objectError(p, kind, h, limit, what, &tooLarge{size: sz})
	}
	if err := f.count(p, kind, h, sz); err != nil {
		return nil, err
	}
	typ := plumbing.BlobObject
	if kind == "tree" {
		typ = plumbing.TreeObject
	}
	o, err := f.s.EncodedObject(typ, h)
	if err != nil {
		return nil, fmt.Errorf("read git %s %s at %s: %w", kind, h, QuotePath(p), err)
	}
	b, err := readBounded(o, sz)
	if err != nil {
		return nil, fmt.Errorf("read git %s %s at %s: %w", kind, h, QuotePath(p), err)
	}
	return b, nil
}

// objectSize returns the size of object h. Caller holds mu.
func (f *FS) objectSize(h plumbing.Hash) (int64, error) {
	if f.objs != nil {
		if sz, err := f.objs.Size(h); !errors.Is(err, ErrNotFound) {
			return sz, err
		}
	}
	return f.s.EncodedObjectSize(h)
}

// count adds sz to the bytes read, refusing to pass TotalBytes. Caller
// holds mu.
func (f *FS) count(p, kind string, h plumbing.Hash, sz int64) error {
	if f.bytes+sz > f.lim.TotalBytes {
		return &Error{Path: p, Kind: kind, ID: h.String(), Err: ErrLimit, Limit: "TotalBytes",
			Msg: fmt.Sprintf("reading it would bring the bytes read to more than the limit of %s", size(f.lim.TotalBytes))}
	}
	f.bytes += sz
	return nil
}

// Limits returns the limits in force.
func (f *FS) Limits() Limits { return f.lim }

// load decodes and validates the tree of directory n at path p. Caller
// holds mu.
func (f *FS) load(n *node, p string, depth int) (*dir, error) {
	if n.dir != nil {
		return n.dir, nil
	}
	bad := badf(p, n.hash)
	limit := func(field, format string, a ...any) error {
		return &Error{Path: p, Kind: "tree", ID: n.hash.String(), Msg: fmt.Sprintf(format, a...), Err: ErrLimit, Limit: field}
	}
	if depth > f.lim.Depth {
		return nil, limit("Depth", "is nested %d directories deep, more than the limit of %d", depth, f.lim.Depth)
	}
	raw, err := f.object(p, "tree", n.hash, f.lim.TreeSize, "one tree", false)
	if err != nil {
		return nil, err
	}
	children, err := parseTree(raw, bad, func() error {
		f.entries++
		if f.entries > f.lim.Entries {
			return limit("Entries", "brings the tree entries read to more than the limit of %d", f.lim.Entries)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	n.dir = &dir{children: children, depth: depth}
	return n.dir, nil
}

// readBounded reads an object's content, which must be exactly size bytes.
func readBounded(o plumbing.EncodedObject, size int64) ([]byte, error) {
	r, err := o.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b := make([]byte, 0, size)
	b, err = readAtMost(r, b, size)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != size {
		return nil, fmt.Errorf("object %s holds %d bytes, not the %d its header says", o.Hash(), len(b), size)
	}
	return b, nil
}

// readAtMost appends r's content to b, failing when it exceeds max bytes.
func readAtMost(r io.Reader, b []byte, max int64) ([]byte, error) {
	lr := io.LimitReader(r, max+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > max {
			return nil, fmt.Errorf("object is larger than its header says (%d bytes)", max)
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// lookup finds the node of a valid fs path without following symlinks,
// decoding (and so validating) every tree on the way. Caller holds mu.
func (f *FS) lookup(op, name string) (*node, error) {
	if !fs.ValidPath(name) {
		return nil, pathError(op, name, fs.ErrInvalid)
	}
	n := &f.root
	if name == "." {
		return n, nil
	}
	depth := 0
	p := "."
	for _, part := range strings.Split(name, "/") {
		if !n.isDir() {
			return nil, pathError(op, name, fs.ErrNotExist)
		}
		d, err := f.load(n, p, depth)
		if err != nil {
			return nil, err
		}
		if n = d.child(part); n == nil {
			return nil, pathError(op, name, fs.ErrNotExist)
		}
		p = path.Join(p, part)
		depth++
	}
	return n, nil
}

// loadDir is lookup of a directory and its decoded tree. Caller holds mu.
func (f *FS) loadDir(op, name string) (*dir, error) {
	n, err := f.lookup(op, name)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, pathError(op, name, errors.New("not a directory"))
	}
	return f.load(n, name, strings.Count(name, "/")+boolInt(name != "."))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

var (
	errSymlink   = errors.New("is a symbolic link (not followed)")
	errSubmodule = errors.New("is a git submodule (gitlink)")
	errIsDir     = errors.New("is a directory")
)

// fileNode is lookup of a regular file. Caller holds mu.
func (f *FS) fileNode(op, name string) (*node, error) {
	n, err := f.lookup(op, name)
	if err != nil {
		return nil, err
	}
	switch {
	case n.isDir():
		return nil, pathError(op, name, errIsDir)
	case n.mode == filemode.Symlink:
		return nil, pathError(op, name, errSymlink)
	case n.mode == filemode.Submodule:
		return nil, pathError(op, name, errSubmodule)
	}
	return n, nil
}

const fileWhat = "one file"

// content reads a file. Caller holds mu.
func (f *FS) content(name string, n *node) ([]byte, error) {
	return f.object(name, "blob", n.hash, f.lim.FileSize, fileWhat, true)
}

// ReadFile implements fs.ReadFileFS.
func (f *FS) ReadFile(name string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.fileNode("read", name)
	if err != nil {
		return nil, err
	}
	return f.content(name, n)
}

// Open implements fs.FS. Files are read whole on Open (they are at most
// Limits.FileSize); directories are opened for ReadDir.
func (f *FS) Open(name string) (fs.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.lookup("open", name)
	if err != nil {
		return nil, err
	}
	if n.isDir() {
		d, err := f.load(n, name, strings.Count(name, "/")+boolInt(name != "."))
		if err != nil {
			return nil, err
		}
		return &openDir{f: f, n: n, d: d, name: name}, nil
	}
	if _, err := f.fileNode("open", name); err != nil {
		return nil, err
	}
	b, err := f.content(name, n)
	if err != nil {
		return nil, err
	}
	return &openFile{Reader: strings.NewReader(string(b)), info: info{f: f, n: n, size: int64(len(b))}}, nil
}

// ReadDir implements fs.ReadDirFS: entries sorted by name.
func (f *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.loadDir("readdir", name)
	if err != nil {
		return nil, err
	}
	out := make([]fs.DirEntry, len(d.children))
	for i := range d.children {
		out[i] = dirEntry{f: f, n: &d.children[i]}
	}
	return out, nil
}

// Stat implements fs.StatFS. Like lstat, it does not follow symlinks.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	i := info{f: f, n: n}
	if n.isDir() {
		if _, err := f.load(n, name, strings.Count(name, "/")+boolInt(name != ".")); err != nil {
			return nil, err
		}
	} else if n.mode != filemode.Submodule {
		sz, err := f.objectSize(n.hash)
		if err != nil {
			return nil, pathError("stat", name, err)
		}
		i.size = sz
	}
	if name == "." {
		i.name = "."
	}
	return i, nil
}

func fsMode(m filemode.FileMode) fs.FileMode {
	switch m {
	case filemode.Dir:
		return fs.ModeDir | 0o555
	case filemode.Symlink:
		return fs.ModeSymlink | 0o777
	case filemode.Executable:
		return 0o555
	case filemode.Submodule:
		return fs.ModeIrregular
	}
	return 0o444
}

type info struct {
	f    *FS
	n    *node
	name string // when not n.name (the root)
	size int64
}

func (i info) Name() string {
	if i.name != "" {
		return i.name
	}
	return i.n.name
}
func (i info) Size() int64        { return i.size }
func (i info) Mode() fs.FileMode  { return fsMode(i.n.mode) }
func (i info) ModTime() time.Time { return i.f.when }
func (i info) IsDir() bool        { return i.n.isDir() }
func (i info) Sys() any           { return nil }

type dirEntry struct {
	f *FS
	n *node
}

func (d dirEntry) Name() string      { return d.n.name }
func (d dirEntry) IsDir() bool       { return d.n.isDir() }
func (d dirEntry) Type() fs.FileMode { return fsMode(d.n.mode).Type() }

// IsExecutable reports a file committed with mode 100755 (Type cannot say
// so).
func (d dirEntry) IsExecutable() bool { return d.n.mode == filemode.Executable }

// ID returns the object id of the entry.
func (d dirEntry) ID() string { return d.n.hash.String() }

func (d dirEntry) Info() (fs.FileInfo, error) {
	i := info{f: d.f, n: d.n}
	if d.n.isFile() {
		d.f.mu.Lock()
		sz, err := d.f.objectSize(d.n.hash)
		d.f.mu.Unlock()
		if err != nil {
			return nil, err
		}
		i.size = sz
	}
	return i, nil
}
func (d dirEntry) String() string { return fs.FormatDirEntry(d) }

type openFile struct {
	*strings.Reader
	info info
}

func (o *openFile) Stat() (fs.FileInfo, error) { return o.info, nil }
func (o *openFile) Close() error               { return nil }

type openDir struct {
	f    *FS
	n    *node
	d    *dir
	name string
	off  int
}

func (o *openDir) Stat() (fs.FileInfo, error) {
	i := info{f: o.f, n: o.n}
	if o.name == "." {
		i.name = "."
	}
	return i, nil
}
func (o *openDir) Close() error { return nil }
func (o *openDir) Read([]byte) (int, error) {
	return 0, pathError("read", o.name, errIsDir)
}

// ReadDir implements fs.ReadDirFile.
func (o *openDir) ReadDir(count int) ([]fs.DirEntry, error) {
	rest := o.d.children[o.off:]
	if count > 0 && len(rest) == 0 {
		return nil, io.EOF
	}
	if count <= 0 || count > len(rest) {
		count = len(rest)
	}
	out := make([]fs.DirEntry, count)
	for i := range out {
		out[i] = dirEntry{f: o.f, n: &rest[i]}
	}
	o.off += count
	return out, nil
}

// pathError is an *fs.PathError whose path is quoted when it holds a
// newline, a control character or invalid UTF-8 (QuotePath): git allows
// any byte but NUL and "/" in a name, and the message must stay one line.
func pathError(op, name string, err error) *fs.PathError {
	return &fs.PathError{Op: op, Path: QuotePath(name), Err: err}
}
