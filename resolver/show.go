package resolver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/registry/gittree"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/storepath"
)

// Shown is what `poison show` prints about one key.
type Shown struct {
	// Key is the base name or derivation name looked up.
	Key string
	// Kind is "derivation", "output" or "name".
	Kind string
	// Serial is the serial the lock gives the key: for a derivation the
	// larger of its own and those of the outputs its entries record.
	Serial  int
	Entries []ShownEntry
}

// ShownEntry is one entry behind a serial.
type ShownEntry struct {
	File, Reason, Author, Group, Ticket string
	Date                                time.Time
	// Commit is the registry commit that added the entry file ("" when
	// the history is not available or too long to search).
	Commit string
}

// maxHistory bounds the history walk that finds the commit adding an entry.
const maxHistory = 10000

// ShowOptions are the options of Show.
type ShowOptions struct {
	// Now dates the entries' checks (time.Now when zero).
	Now time.Time
	// Limits bound reading the registry commit, as for resolve; zero
	// fields take registry.DefaultLimits.
	Limits registry.Limits
}

// Show looks up a .drv path, output path (full or base name) or derivation
// name in a lock and in the registry commit it pins, read from the cache
// (or the local registry) without any network access.
func Show(ctx context.Context, c Cache, l *lock.File, key string, o ShowOptions) (*Shown, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	base := key
	if strings.HasPrefix(key, "/") {
		if dir := path.Dir(key); dir != l.Store() {
			return nil, fmt.Errorf("show %s: not a path in the lock's store %s", key, l.Store())
		}
		base = path.Base(key)
	}
	s := &Shown{Key: base}
	switch {
	case storepath.CheckBase(base) == nil && strings.HasSuffix(base, ".drv"):
		s.Kind, s.Serial = "derivation", l.Derivations[base]
	case storepath.CheckBase(base) == nil:
		s.Kind, s.Serial = "output", l.Outputs[base]
	default:
		s.Kind, s.Serial = "name", l.Names[base]
	}
	reg, r, err := openAtLock(ctx, c, l, o)
	if err != nil {
		return s, err
	}
	if r != nil {
		defer r.Close()
	}
	var ents []*registry.Entry
	if s.Kind == "name" {
		ents = reg.EntriesForName(base)
	} else {
		ents = reg.EntriesFor(base)
	}
	var start *object.Commit
	if r != nil && l.Registry.Commit != "" {
		start, _ = r.CommitObject(plumbing.NewHash(l.Registry.Commit))
	}
	for _, e := range ents {
		se := ShownEntry{File: e.File, Reason: e.Reason, Author: e.Author, Group: e.Group, Ticket: e.Ticket, Date: e.Date}
		if start != nil {
			se.Commit = introducedIn(ctx, start, e.File)
		}
		if s.Kind == "derivation" {
			for _, d := range e.Derivations {
				if path.Base(d.Path) != base {
					continue
				}
				for _, o := range d.Outputs {
					s.Serial = max(s.Serial, l.Outputs[path.Base(o)])
				}
			}
		}
		s.Entries = append(s.Entries, se)
	}
	return s, nil
}

// openAtLock loads the registry at the lock's commit from the cache or the
// local source. Entries with lint errors are left out, as in the lock.
func openAtLock(ctx context.Context, c Cache, l *lock.File, o ShowOptions) (*registry.Registry, *repo, error) {
	commit := l.Registry.Commit
	src, err := ParseSource(l.Registry.URL, "/")
	if err != nil {
		return nil, nil, fmt.Errorf("registry %s of the lock: %w", RedactURL(l.Registry.URL), err)
	}
	// The cache is keyed by the URL without credentials (a lock of an
	// earlier version may hold them).
	url := src.URL
	if src.Kind == LocalDir {
		reg, err := loadValid(os.DirFS(url), o)
		return reg, nil, err
	}
	var r *repo
	if src.Kind == LocalRepo {
		r, err = openRepo(url)
	} else {
		unlock, ferr := flock(ctx, c.flockPath(url))
		if ferr != nil {
			return nil, nil, ferr
		}
		defer unlock()
		r, err = c.openCache(url, false)
		if errors.Is(err, errNoCache) {
			return nil, nil, fmt.Errorf("registry %s is not in the cache: run 'poison resolve' to fetch it", url)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open registry %s: %w", url, err)
	}
	fail := func(err error) (*registry.Registry, *repo, error) {
		r.Close()
		return nil, nil, err
	}
	cm, err := r.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return fail(fmt.Errorf("registry commit %s is not in the cache: run 'poison resolve' to fetch it", commit))
	}
	t, err := cm.Tree()
	if err != nil {
		return fail(fmt.Errorf("read registry commit %s: %w", commit, err))
	}
	tfs := gittree.New(r.Storer, t.Hash, o.Limits)
	tfs.SetObjects(r.objs)
	defer tfs.Close()
	reg, err := loadValid(tfs, o)
	if err != nil {
		return fail(err)
	}
	return reg, r, nil
}

// loadValid loads a registry, keeping the valid entries when some are not.
func loadValid(fsys fs.FS, o ShowOptions) (*registry.Registry, error) {
	reg, err := registry.Load(fsys, registry.LoadOptions{Now: o.Now, Limits: o.Limits})
	var ps registry.Problems
	if err != nil && !(errors.As(err, &ps) && reg != nil) {
		return nil, err
	}
	return reg, nil
}

// introducedIn returns the oldest commit on the first-parent line from start
// that has file with the content it has at start, i.e. the commit that
// added it.
func introducedIn(ctx context.Context, start *object.Commit, file string) string {
	want, err := start.File(file)
	if err != nil {
		return ""
	}
	found := start
	c := start
	for i := 0; i < maxHistory && ctx.Err() == nil; i++ {
		if c.NumParents() == 0 {
			return found.Hash.String()
		}
		p, err := c.Parent(0)
		if err != nil {
			return ""
		}
		f, err := p.File(file)
		if err != nil || f.Hash != want.Hash {
			return found.Hash.String()
		}
		found, c = p, p
	}
	return ""
}
