// Package registry reads, validates and writes a poison registry: a git
// repository of TOML entries, each naming derivations whose build results
// are bad (DESIGN §3).
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
	"crypto/sha256"
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

	"github.com/poison-nix/poison/registry/lock"
	"github.com/sourcegraph/conc/pool"
)

// LoadOptions configures Load.
type LoadOptions struct {
	// Now is the reference time of the rule that a date is at most one day
	// in the future. The zero time disables the rule.
	Now time.Time
	// Parallelism bounds the number of files decoded at once; GOMAXPROCS
	// when 0.
	Parallelism int
}

// Registry is a loaded registry.
type Registry struct {
	Config   Config
	Entries  []*Entry // valid entries, sorted by File
	Warnings Problems // problems that do not invalidate an entry

	indexOnce sync.Once
	byBase    map[string][]*Entry
	byName    map[string][]*Entry
}

// Load reads registry.toml and every entries/**/*.toml from fsys (os.DirFS
// for a work tree, or a view of a git tree whose ReadDir reports symlinks
// as fs.ModeSymlink).
//
// When files have errors, Load returns a Registry of every valid entry
// together with an error of type Problems listing the errors (warnings are
// in Registry.Warnings), so a caller may go on with the valid entries. Any
// other failure (no registry.toml, an unreadable file system) returns a nil
// Registry; a missing registry.toml wraps ErrNotRegistry. When
// registry.toml itself is invalid no entry can be interpreted (the store
// directory and attribute are unknown): Load then returns a nil Registry
// and the Problems.
//
// fsys must be safe for concurrent use: files are read in parallel.
func Load(fsys fs.FS, opts LoadOptions) (*Registry, error) {
	return load(fsys, func(name string) ([]byte, error) { return readLimited(fsys, name) }, opts)
}

// LoadDir is Load of the work tree dir (like os.DirFS(dir)), reading files
// with fewer system calls.
func LoadDir(dir string, opts LoadOptions) (*Registry, error) {
	return load(os.DirFS(dir), func(name string) ([]byte, error) {
		return readFileFast(filepath.Join(dir, filepath.FromSlash(name)))
	}, opts)
}

// errTooLarge is returned by the readers for files over MaxEntrySize.
type errTooLarge struct{ size int64 }

func (e errTooLarge) Error() string { return fmt.Sprintf("file is over %d bytes", e.size) }

// readLimited reads name from fsys, refusing more than MaxEntrySize bytes.
func readLimited(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxEntrySize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxEntrySize {
		return nil, errTooLarge{MaxEntrySize}
	}
	return data, nil
}

func load(fsys fs.FS, read func(string) ([]byte, error), opts LoadOptions) (*Registry, error) {
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
	if !cfgEnt.Type().IsRegular() {
		problems = append(problems, Problem{Path: ConfigFile, Severity: Error, Message: "is not a regular file (a symlink or directory); commit registry.toml as a plain file"})
	} else {
		data, err := readLimited(fsys, ConfigFile)
		var big errTooLarge
		if errors.As(err, &big) {
			data = nil
			problems = append(problems, Problem{Path: ConfigFile, Severity: Error, Message: fmt.Sprintf("file is more than the limit of %d bytes; registry.toml holds two settings", MaxEntrySize)})
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
		} else {
			err := fs.WalkDir(fsys, EntriesDir, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if ps, ok := checkTreeEntry(p, d); !ok {
					problems = append(problems, ps...)
					return nil
				}
				if d.Type().IsRegular() && strings.HasSuffix(p, ".toml") {
					files = append(files, p)
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("load registry: %w", err)
			}
		}
	}

	entries, ps, err := decodeFiles(read, files, cfg, opts)
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
	r := &Registry{Config: cfg, Entries: entries, Warnings: problems.Warnings()}
	if errs := problems.Errors(); len(errs) > 0 {
		return r, errs
	}
	return r, nil
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
		return bad("is not a regular file; remove it")
	case d.Name() == ".gitkeep":
		return nil, true
	case !strings.HasSuffix(p, ".toml") || path.Base(p) == ".toml":
		return bad("is not a *.toml file; entries/ holds only entries (rename it to NAME.toml or move it out of entries/)")
	}
	return nil, true
}

// decodeFiles reads and decodes files in parallel.
func decodeFiles(read func(string) ([]byte, error), files []string, cfg Config, opts LoadOptions) ([]*Entry, Problems, error) {
	type result struct {
		e    *Entry
		ps   Problems
		hash [sha256.Size]byte
	}
	results := make([]result, len(files))
	workers := opts.Parallelism
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	const chunk = 128
	p := pool.New().WithErrors().WithMaxGoroutines(workers)
	for lo := 0; lo < len(files); lo += chunk {
		hi := min(lo+chunk, len(files))
		p.Go(func() error {
			for i := lo; i < hi; i++ {
				name := files[i]
				data, err := read(name)
				var big errTooLarge
				if errors.As(err, &big) {
					results[i].ps = Problems{{Path: name, Severity: Error, Message: fmt.Sprintf("file is more than the limit of %d bytes; split the incident into several entries", MaxEntrySize)}}
					continue
				}
				if err != nil {
					return fmt.Errorf("load registry: read %s: %w", name, err)
				}
				results[i].e, results[i].ps = DecodeEntry(name, data, cfg, opts.Now)
				results[i].hash = sha256.Sum256(data)
			}
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		return nil, nil, err
	}
	var entries []*Entry
	var problems Problems
	first := map[[sha256.Size]byte]string{}
	for i, r := range results {
		if r.e != nil {
			entries = append(entries, r.e)
			// An incident filed twice by copying a file counts twice.
			if f, dup := first[r.hash]; dup {
				problems = append(problems, Problem{Path: files[i], Severity: Warning,
					Message: "has the same content as " + f + "; an incident counts once: if this is a copy, remove it before it is merged"})
			} else {
				first[r.hash] = files[i]
			}
		}
		problems = append(problems, r.ps...)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].File < entries[j].File })
	return entries, problems, nil
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

// Lock returns the serial map of the registry's valid entries (DESIGN §3,
// §4): for every .drv base name, output base name and derivation name, the
// number of entries naming it.
func (r *Registry) Lock(src lock.Source) *lock.File {
	cfg := r.Config.withDefaults()
	f := lock.New(src, cfg.Env)
	if cfg.StoreDir != lock.DefaultStoreDir {
		f.StoreDir = cfg.StoreDir
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
