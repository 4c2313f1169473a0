// Package registry reads, validates and writes a poison registry: a git
// repository of TOML entries, each naming derivations whose build results
// are bad.
//
// Load validates a whole registry and reports every problem with its file,
// line and column; Registry.Lock turns the valid entries into the serial map
// of poison.lock. Add and Init write entries and new registries, and
// CheckHistory enforces that entries are append-only.
//
// Serials count incidents: the serial of a .drv path, an output path or a
// derivation name is the number of entry files that name it, each entry
// counted once however often it names it.
package registry

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/poison-nix/poison/registry/gittree"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/sourcegraph/conc/pool"
)

// Limits bound the work loading a registry may cause: entries, depth,
// bytes of one file (an entry or registry.toml) and of all files. A zero
// field takes its default (DefaultLimits).
type Limits = gittree.Limits

// DefaultLimits are the limits of a zero Limits: they fit a registry of a
// few million entries.
var DefaultLimits = gittree.DefaultLimits

// LoadOptions configures Load.
type LoadOptions struct {
	// Now is the reference time of the rule that a date is at most one day
	// in the future. The zero time disables the rule.
	Now time.Time
	// Parallelism bounds the number of files decoded at once; GOMAXPROCS
	// when 0.
	Parallelism int
	// Limits bound the walk of a work tree (LoadDir, or any fs.FS). A
	// *gittree.FS applies the limits it was made with.
	Limits Limits
	// OnlyLock counts every valid entry into the serial map as it is
	// decoded instead of keeping it: Registry.Entries stays empty,
	// Registry.Count and Registry.Lock work as usual. A registry of a
	// million entries then loads in a fraction of the memory.
	OnlyLock bool
	// Only, when set, lists the only entry files to read (paths under
	// entries/, as the walk would find them); the rest of entries/ is not
	// walked. Used to read just the entries added since an earlier commit.
	Only []string
}

// Registry is a loaded registry.
type Registry struct {
	Config   Config
	Entries  []*Entry // valid entries, sorted by File (empty with OnlyLock)
	Count    int      // number of valid entries
	Warnings Problems // problems that do not invalidate an entry

	counts *serials // with OnlyLock: the serial map of the valid entries

	indexOnce sync.Once
	byBase    map[string][]*Entry
	byName    map[string][]*Entry
}

// serials counts the serial map of a set of entries compactly: every
// key occurrence is appended to a tally, and the tallies are sorted and
// counted once, at the end. A map of strings costs about three times the
// bytes of its keys; a registry of a million entries has three million.
type serials struct {
	drv, out, names tally
}

func newSerials() *serials { return &serials{} }

// add counts e. Keys are copied: the entry's strings point into its file.
func (s *serials) add(e *Entry) {
	for _, k := range e.drvBases() {
		s.drv.add(k)
	}
	for _, k := range e.outputBases() {
		s.out.add(k)
	}
	for _, k := range e.allNames() {
		s.names.add(k)
	}
}

// tally is a multiset of strings: their bytes in chunks of chunkSize
// bytes (a longer string has a chunk of its own), and one reference per
// occurrence: chunk<<40 | offset<<20 | length (length refLong for a string
// that fills its own chunk).
type tally struct {
	chunks [][]byte
	refs   []uint64
	sorted bool
}

const (
	chunkSize = 1 << 20
	refLong   = 1<<20 - 1
)

func (t *tally) add(k string) {
	if len(k) >= refLong {
		t.chunks = append(t.chunks, []byte(k))
		t.refs = append(t.refs, uint64(len(t.chunks)-1)<<40|refLong)
		t.sorted = false
		return
	}
	if len(t.chunks) == 0 || len(t.chunks[len(t.chunks)-1])+len(k) >= chunkSize ||
		cap(t.chunks[len(t.chunks)-1]) != chunkSize {
		t.chunks = append(t.chunks, make([]byte, 0, chunkSize))
	}
	c := &t.chunks[len(t.chunks)-1]
	t.refs = append(t.refs, uint64(len(t.chunks)-1)<<40|uint64(len(*c))<<20|uint64(len(k)))
	*c = append(*c, k...)
	t.sorted = false
}

func (t *tally) key(ref uint64) []byte {
	c := t.chunks[ref>>40]
	if n := ref & refLong; n != refLong {
		off := ref >> 20 & refLong
		return c[off : off+n]
	}
	return c
}

// each calls fn for every distinct key in byte order with the number of
// times it was added, until fn returns false. key is valid only during
// the call.
func (t *tally) each(fn func(key []byte, n int) bool) {
	if !t.sorted {
		slices.SortFunc(t.refs, func(a, b uint64) int { return bytes.Compare(t.key(a), t.key(b)) })
		t.sorted = true
	}
	for i := 0; i < len(t.refs); {
		k := t.key(t.refs[i])
		j := i + 1
		for j < len(t.refs) && bytes.Equal(t.key(t.refs[j]), k) {
			j++
		}
		if !fn(k, j-i) {
			return
		}
		i = j
	}
}

// toMap returns the tally as a map of counts.
func (t *tally) toMap() map[string]int {
	m := map[string]int{}
	t.each(func(k []byte, n int) bool {
		m[string(k)] = n
		return true
	})
	return m
}

// Serial map kinds, for EachSerial: the keys of lock.File's Derivations,
// Outputs and Names.
const (
	Derivations = iota
	Outputs
	Names
)

// EachSerial calls fn, in byte order of the keys, for every key of kind
// (Derivations, Outputs or Names) of the serial map counted by a load
// with OnlyLock, with its serial, until fn returns false. key is valid
// only during the call. It reports false when the registry was not loaded
// with OnlyLock (or Lock handed the serial map over already).
func (r *Registry) EachSerial(kind int, fn func(key []byte, serial int) bool) bool {
	if r.counts == nil {
		return false
	}
	[]*tally{&r.counts.drv, &r.counts.out, &r.counts.names}[kind].each(fn)
	return true
}

// LockHeader returns the lock of the registry without its serial maps
// (empty): the source, attribute and store directory.
func (r *Registry) LockHeader(src lock.Source) *lock.File {
	cfg := r.Config.withDefaults()
	f := lock.New(src, cfg.Env)
	if cfg.StoreDir != lock.DefaultStoreDir {
		f.StoreDir = cfg.StoreDir
	}
	return f
}

// Load reads registry.toml and every entries/**/*.toml from fsys (os.DirFS
// for a work tree, or a *gittree.FS of a commit, whose trees are validated
// as git fsck does and whose reads are bounded).
//
// When files have errors, Load returns a Registry of every valid entry
// together with an error of type Problems listing the errors (warnings are
// in Registry.Warnings), so a caller may go on with the valid entries. Any
// other failure (no registry.toml, an unreadable file system, a tree git
// fsck would refuse, a limit) returns a nil Registry; a missing
// registry.toml wraps ErrNotRegistry. When registry.toml itself is invalid
// no entry can be interpreted (the store directory and attribute are
// unknown): Load then returns a nil Registry and the Problems.
//
// fsys must be safe for concurrent use: files are read in parallel.
func Load(fsys fs.FS, opts LoadOptions) (*Registry, error) {
	lim := opts.Limits.WithDefaults()
	if t, ok := fsys.(*gittree.FS); ok {
		r, err := load(fsys, t.ReadFiles, opts)
		return r, limitError(err)
	}
	r, err := load(fsys, parallelReader(opts.Parallelism, func(name string) ([]byte, error) { return readLimited(fsys, name, lim.FileSize) }), opts)
	return r, limitError(err)
}

// LoadDir is Load of the work tree dir (like os.DirFS(dir)), reading files
// with fewer system calls.
func LoadDir(dir string, opts LoadOptions) (*Registry, error) {
	lim := opts.Limits.WithDefaults()
	r, err := load(os.DirFS(dir), parallelReader(opts.Parallelism, func(name string) ([]byte, error) {
		return readFileFast(filepath.Join(dir, filepath.FromSlash(name)), lim.FileSize)
	}), opts)
	return r, limitError(err)
}

// readAll reads files[i] for every i and calls fn with its content or a
// per-file error (errTooLarge, or a *gittree.Error of a file over the
// limit); fn may run concurrently. It stops at the first error of fn or of
// the file system.
type readAll func(files []string, workers int, fn func(i int, data []byte, err error) error) error

// parallelReader makes a readAll of a function reading one file.
func parallelReader(_ int, read func(string) ([]byte, error)) readAll {
	return func(files []string, workers int, fn func(int, []byte, error) error) error {
		if workers <= 0 {
			workers = runtime.GOMAXPROCS(0)
		}
		const chunk = 128
		p := pool.New().WithErrors().WithMaxGoroutines(workers)
		for lo := 0; lo < len(files); lo += chunk {
			hi := min(lo+chunk, len(files))
			p.Go(func() error {
				for i := lo; i < hi; i++ {
					data, err := read(files[i])
					var big errTooLarge
					if errors.As(err, &big) {
						if err := fn(i, nil, err); err != nil {
							return err
						}
						continue
					}
					if err != nil {
						return fmt.Errorf("read %s: %w", gittree.QuotePath(files[i]), err)
					}
					if err := fn(i, data, nil); err != nil {
						return err
					}
				}
				return nil
			})
		}
		return p.Wait()
	}
}

// errTooLarge is returned by the readers for files over the size limit.
type errTooLarge struct{ limit int64 }

func (e errTooLarge) Error() string { return fmt.Sprintf("file is over %d bytes", e.limit) }

// readLimited reads name from fsys, refusing more than limit bytes.
func readLimited(fsys fs.FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, errTooLarge{limit}
	}
	return data, nil
}

// tooLargeMessage is the problem of a file over the size limit.
func tooLargeMessage(err error, limit int64, what string) string {
	var te *gittree.Error
	if errors.As(err, &te) {
		return fmt.Sprintf("blob %s %s; %s%s", te.ID, te.Msg, what, LimitHint("FileSize"))
	}
	return fmt.Sprintf("file is more than the limit of %d bytes; %s%s", limit, what, LimitHint("FileSize"))
}

func isTooLarge(err error) bool {
	var big errTooLarge
	return errors.As(err, &big) || errors.Is(err, gittree.ErrFileTooLarge)
}

func load(fsys fs.FS, read readAll, opts LoadOptions) (*Registry, error) {
	lim := opts.Limits.WithDefaults()
	if t, ok := fsys.(*gittree.FS); ok {
		lim = t.Limits()
	}
	var problems Problems
	top, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("load registry: %w", err)
	}
	var cfgEnt, entEnt fs.DirEntry
	for _, d := range top {
		switch d.Name() {
		case ConfigFile:
			cfgEnt = d
		case EntriesDir:
			entEnt = d
		}
	}
	if cfgEnt == nil {
		return nil, fmt.Errorf("load registry: %w; run 'poison init DIR' to create one or pass --registry DIR", ErrNotRegistry)
	}
	cfg := Config{}.withDefaults()
	if !cfgEnt.Type().IsRegular() || isExecutable(cfgEnt) {
		problems = append(problems, Problem{Path: ConfigFile, Severity: Error, Message: "is not a regular file (a symlink, directory, submodule or executable); commit registry.toml as a plain file"})
	} else {
		var data []byte
		err := read([]string{ConfigFile}, 1, func(_ int, b []byte, err error) error {
			if err != nil {
				return err
			}
			data = bytes.Clone(b)
			return nil
		})
		if isTooLarge(err) {
			data = nil
			problems = append(problems, Problem{Path: ConfigFile, Severity: Error, Message: tooLargeMessage(err, lim.FileSize, "registry.toml holds two settings")})
		} else if err != nil {
			return nil, fmt.Errorf("load registry: %w", err)
		}
		var ps Problems
		cfg, ps = DecodeConfig(data)
		problems = append(problems, ps...)
	}

	var files []string
	if entEnt != nil {
		if !entEnt.IsDir() || entEnt.Type()&fs.ModeSymlink != 0 {
			problems = append(problems, Problem{Path: EntriesDir, Severity: Error, Message: "is not a directory; entries/ must be a plain directory of *.toml files"})
		} else if opts.Only != nil {
			files = opts.Only
		} else {
			err := walk(fsys, EntriesDir, lim, func(p string, d fs.DirEntry) {
				if ps, ok := checkTreeEntry(p, d); !ok {
					problems = append(problems, ps...)
					return
				}
				if d.Type().IsRegular() && strings.HasSuffix(p, ".toml") {
					files = append(files, p)
				}
			})
			if err != nil {
				return nil, fmt.Errorf("load registry: %w", err)
			}
		}
	}

	r := &Registry{Config: cfg}
	ps, err := r.decodeFiles(read, files, opts, lim)
	if err != nil {
		return nil, err
	}
	problems = append(problems, ps...)
	problems.Sort()
	for _, p := range problems {
		if p.Path == ConfigFile && p.Severity == Error {
			return nil, problems.Errors()
		}
	}
	r.Warnings = problems.Warnings()
	if errs := problems.Errors(); len(errs) > 0 {
		return r, errs
	}
	return r, nil
}

// walk calls fn for every entry below root (root excluded), depth first
// in name order like fs.WalkDir, without recursion: the stack holds one
// frame per directory level, at most lim.Depth. It refuses more than
// lim.Entries entries.
func walk(fsys fs.FS, root string, lim Limits, fn func(p string, d fs.DirEntry)) error {
	type frame struct {
		dir  string
		ents []fs.DirEntry
	}
	ents, err := fs.ReadDir(fsys, root)
	if err != nil {
		return err
	}
	stack := []frame{{root, ents}}
	var seen int64
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if len(top.ents) == 0 {
			stack = stack[:len(stack)-1]
			continue
		}
		d := top.ents[0]
		top.ents = top.ents[1:]
		p := top.dir + "/" + d.Name()
		if seen++; seen > lim.Entries {
			return fmt.Errorf("%s: more than the limit of %d files and directories%s", gittree.QuotePath(p), lim.Entries, LimitHint("Entries"))
		}
		fn(p, d)
		if !d.IsDir() || d.Type()&fs.ModeSymlink != 0 {
			continue
		}
		if depth := strings.Count(p, "/") + 1; depth > lim.Depth {
			return fmt.Errorf("%s: nested %d directories deep, more than the limit of %d%s", gittree.QuotePath(p), depth, lim.Depth, LimitHint("Depth"))
		}
		ents, err := fs.ReadDir(fsys, p)
		if err != nil {
			return err
		}
		stack = append(stack, frame{p, ents})
	}
	return nil
}

// isExecutable reports a git tree entry of mode 100755.
func isExecutable(d fs.DirEntry) bool {
	x, ok := d.(interface{ IsExecutable() bool })
	return ok && x.IsExecutable()
}

// checkTreeEntry applies the layout rules to one path under entries/.
func checkTreeEntry(p string, d fs.DirEntry) (Problems, bool) {
	bad := func(msg string) (Problems, bool) {
		return Problems{{Path: p, Severity: Error, Message: msg}}, false
	}
	t := d.Type()
	switch {
	case t&fs.ModeSymlink != 0:
		return bad("is a symlink; entries must be plain files inside entries/ (replace the link with the file itself)")
	case d.IsDir():
		return nil, true
	case !t.IsRegular():
		return bad("is not a regular file (a submodule or special file); remove it")
	case isExecutable(d):
		return bad("is executable (mode 100755); entries are plain files: run git update-index --chmod=-x on it")
	case d.Name() == ".gitkeep":
		return nil, true
	case !strings.HasSuffix(p, ".toml") || path.Base(p) == ".toml":
		return bad("is not a *.toml file; entries/ holds only entries (rename it to NAME.toml or move it out of entries/)")
	}
	return nil, true
}

// decodeFiles reads and decodes files in parallel into r (Entries, or the
// serial map with OnlyLock, and Count) and returns their problems.
func (r *Registry) decodeFiles(read readAll, files []string, opts LoadOptions, lim Limits) (Problems, error) {
	var (
		mu       sync.Mutex
		problems Problems
		keep     = !opts.OnlyLock
		counts   = newSerials()
		hashes   = make([][16]byte, len(files)) // content hashes of valid entries
		valid    = make([]bool, len(files))
	)
	if !keep {
		r.counts = counts
	}
	err := read(files, opts.Parallelism, func(i int, data []byte, err error) error {
		name := files[i]
		if err != nil {
			if !isTooLarge(err) {
				return err
			}
			mu.Lock()
			problems = append(problems, Problem{Path: name, Severity: Error, Message: tooLargeMessage(err, lim.FileSize, "split the incident into several entries")})
			mu.Unlock()
			return nil
		}
		e, ps := DecodeEntry(name, data, r.Config, opts.Now)
		if e != nil {
			sum := sha256.Sum256(data)
			copy(hashes[i][:], sum[:16])
			valid[i] = true
		}
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, ps...)
		if e == nil {
			return nil
		}
		r.Count++
		if keep {
			r.Entries = append(r.Entries, e)
		} else {
			counts.add(e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load registry: %w", err)
	}
	// An incident filed twice by copying a file counts twice: warn, in
	// file order, naming the first file of the same content. Sorting the
	// valid files by content hash (then file order) needs no map.
	order := make([]int32, 0, len(files))
	for i := range files {
		if valid[i] {
			order = append(order, int32(i))
		}
	}
	slices.SortFunc(order, func(a, b int32) int {
		if c := bytes.Compare(hashes[a][:], hashes[b][:]); c != 0 {
			return c
		}
		return int(a - b)
	})
	var dups []Problem
	first := 0 // where the run of equal hashes starts
	for k := 1; k < len(order); k++ {
		if hashes[order[k]] != hashes[order[k-1]] {
			first = k
			continue
		}
		dups = append(dups, Problem{Path: files[order[k]], Severity: Warning,
			Message: "has the same content as " + gittree.QuotePath(files[order[first]]) + "; an incident counts once: if this is a copy, remove it before it is merged"})
	}
	sort.SliceStable(dups, func(i, j int) bool { return dups[i].Path < dups[j].Path })
	problems = append(problems, dups...)
	sort.Slice(r.Entries, func(i, j int) bool { return r.Entries[i].File < r.Entries[j].File })
	return problems, nil
}

// Sort orders problems by path, line and column.
func (ps Problems) Sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// Lock returns the serial map of the registry's valid entries: for every
// .drv base name, output base name and derivation name, the number of
// entries naming it. After a load with OnlyLock, Lock hands over the
// serial map it counted: call it once.
func (r *Registry) Lock(src lock.Source) *lock.File {
	f := r.LockHeader(src)
	if r.counts != nil {
		// The counts are handed over: the lock is built once per load.
		f.Derivations, f.Outputs, f.Names = r.counts.drv.toMap(), r.counts.out.toMap(), r.counts.names.toMap()
		r.counts = nil
		return f
	}
	for _, e := range r.Entries {
		for _, k := range e.drvBases() {
			f.Derivations[k]++
		}
		for _, k := range e.outputBases() {
			f.Outputs[k]++
		}
		for _, k := range e.allNames() {
			f.Names[k]++
		}
	}
	return f
}

// EntriesFor returns the entries that name a .drv or output path by its
// base name ("HASH-NAME"), in File order.
func (r *Registry) EntriesFor(base string) []*Entry {
	r.index()
	return r.byBase[base]
}

// EntriesForName returns the entries that list name in names or list a
// derivation of that name, in File order.
func (r *Registry) EntriesForName(name string) []*Entry {
	r.index()
	return r.byName[name]
}

func (r *Registry) index() {
	r.indexOnce.Do(func() {
		r.byBase = map[string][]*Entry{}
		r.byName = map[string][]*Entry{}
		for _, e := range r.Entries {
			for _, k := range e.drvBases() {
				r.byBase[k] = append(r.byBase[k], e)
			}
			for _, k := range e.outputBases() {
				r.byBase[k] = append(r.byBase[k], e)
			}
			for _, k := range e.allNames() {
				r.byName[k] = append(r.byName[k], e)
			}
		}
	})
}

// drvBases returns the distinct .drv base names of e.
func (e *Entry) drvBases() []string {
	var out []string
	for _, d := range e.Derivations {
		out = appendUnique(out, baseName(d.Path))
	}
	return out
}

// outputBases returns the distinct output base names of e.
func (e *Entry) outputBases() []string {
	var out []string
	for _, d := range e.Derivations {
		for _, o := range d.Outputs {
			out = appendUnique(out, baseName(o))
		}
	}
	return out
}

// allNames returns the distinct names e poisons: its names and the names of
// its derivations.
func (e *Entry) allNames() []string {
	var out []string
	for _, n := range e.Names {
		out = appendUnique(out, n)
	}
	for _, d := range e.Derivations {
		if n := d.Name(); n != "" {
			out = appendUnique(out, n)
		}
	}
	return out
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func baseName(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }
