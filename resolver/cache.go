package resolver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/poison-nix/poison/registry/gittree"
	"github.com/poison-nix/poison/registry/lock"
)

// Cache is the on-disk cache of registries, by default
// $XDG_CACHE_HOME/poison. It holds, per registry URL:
//
//	repos/KEY.git        a bare clone, fetched incrementally
//	repos/KEY.flock      the file lock that serialises online resolves of KEY
//	repos/KEY.json       the state: when the last fetch succeeded, and the
//	                     references it left (what --offline reads)
//	locks/KEY/COMMIT     locks computed for a commit (clean loads only)
//
// KEY is a readable form of the URL plus a hash of it. The URL is always
// the redacted one (RedactURL, Source.URL): no name or file of the cache
// holds a credential, the same registry reached with another token shares
// the clone, and a lock (which records the redacted URL) finds its state.
type Cache struct {
	Dir string
}

var keyUnsafe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^A-Za-z0-9._-]+`) })

// key names the cache entries of one URL.
func (c Cache) key(url string) string {
	sum := sha256.Sum256([]byte(url))
	s := url
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if j := strings.LastIndex(s, "@"); j >= 0 {
		s = s[j+1:] // drop credentials and ssh user names
	}
	s = strings.Trim(keyUnsafe().ReplaceAllString(s, "_"), "_.")
	if len(s) > 60 {
		s = s[len(s)-60:]
	}
	return s + "-" + hex.EncodeToString(sum[:6])
}

func (c Cache) repoDir(url string) string {
	return filepath.Join(c.Dir, "repos", c.key(url)+".git")
}
func (c Cache) flockPath(url string) string {
	return filepath.Join(c.Dir, "repos", c.key(url)+".flock")
}
func (c Cache) statePath(url string) string {
	return filepath.Join(c.Dir, "repos", c.key(url)+".json")
}
func (c Cache) lockCachePath(url, commit string) string {
	return filepath.Join(c.Dir, "locks", c.key(url), commit)
}

// state is what the cache remembers about a URL besides its objects.
type state struct {
	URL string `json:"url"`
	// LastFetch is when a fetch (or a read of a local source) last
	// succeeded.
	LastFetch time.Time `json:"lastFetch"`
	// Head is the branch the remote HEAD pointed to at that fetch.
	Head string `json:"head,omitempty"`
	// Refs are the references of the cached clone as that fetch left
	// them (local name -> commit or tag id). Written atomically after the
	// objects are stored, they are what an offline resolve reads, so it
	// never needs the fetch lock nor sees a fetch half done.
	Refs map[string]string `json:"refs,omitempty"`
}

// cachedCommit is the commit an offline resolve of ref would pin, or "".
func (s state) cachedCommit(r *repo, ref string) string {
	c, _, err := resolveRef(r, ref, true, s.Head, s.refMap())
	if err != nil {
		return ""
	}
	return c.Hash.String()
}

// refMap returns the published references, or nil when the state
// predates them (the clone's own references are read then).
func (s state) refMap() map[plumbing.ReferenceName]plumbing.Hash {
	if s.Refs == nil {
		return nil
	}
	m := make(map[plumbing.ReferenceName]plumbing.Hash, len(s.Refs))
	for n, h := range s.Refs {
		if fullHash().MatchString(h) {
			m[plumbing.ReferenceName(n)] = plumbing.NewHash(h)
		}
	}
	return m
}

func (c Cache) readState(url string) (state, bool) {
	b, err := os.ReadFile(c.statePath(url))
	if err != nil {
		return state{}, false
	}
	var s state
	if json.Unmarshal(b, &s) != nil || s.URL != url {
		return state{}, false
	}
	return s, true
}

func (c Cache) writeState(s state) error {
	if c.Dir == "" {
		return nil
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.statePath(s.URL)), 0o755); err != nil {
		return fmt.Errorf("write cache state: %w", err)
	}
	return lock.WriteAtomic(c.statePath(s.URL), append(b, '\n'), 0o644)
}

// flock takes an exclusive lock on path, waiting until it is free or ctx
// is done. The returned function releases it.
func flock(ctx context.Context, path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	delay := 5 * time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(delay):
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// repo is an open git repository with its storage, closed after use.
// Commits, tags and trees are read through objs, which reads packs
// directly and bounds every read; go-git's storage would index a whole
// pack (a map of every object) to read one commit.
type repo struct {
	*git.Repository
	st   *filesystem.Storage
	dir  string // the git directory
	objs *gittree.Objects
}

func newRepo(r *git.Repository, st *filesystem.Storage, dir string) *repo {
	return &repo{Repository: r, st: st, dir: dir, objs: gittree.OpenObjects(dir)}
}

func (r *repo) Close() {
	if r.objs != nil {
		r.objs.Close()
	}
	if r.st != nil {
		r.st.Close()
	}
}

// maxCommitSize bounds the commit and tag objects read.
const maxCommitSize = 16 << 20

// CommitObject reads commit h.
func (r *repo) CommitObject(h plumbing.Hash) (*object.Commit, error) {
	mo, err := r.memoryObject(h, plumbing.CommitObject)
	if errors.Is(err, gittree.ErrNotFound) {
		return r.Repository.CommitObject(h)
	}
	if err != nil {
		return nil, err
	}
	return object.DecodeCommit(r.Storer, mo)
}

// TagObject reads annotated tag h.
func (r *repo) TagObject(h plumbing.Hash) (*object.Tag, error) {
	mo, err := r.memoryObject(h, plumbing.TagObject)
	if errors.Is(err, gittree.ErrNotFound) {
		return r.Repository.TagObject(h)
	}
	if err != nil {
		return nil, err
	}
	return object.DecodeTag(r.Storer, mo)
}

func (r *repo) memoryObject(h plumbing.Hash, t plumbing.ObjectType) (*plumbing.MemoryObject, error) {
	b, err := r.objs.Read(h, t.String(), maxCommitSize)
	if err != nil {
		return nil, err
	}
	mo := &plumbing.MemoryObject{}
	mo.SetType(t)
	mo.Write(b)
	if mo.Hash() != h {
		return nil, fmt.Errorf("git %s %s: its content has the id %s; the repository is corrupt", t, h, mo.Hash())
	}
	return mo, nil
}

// openRepo opens the git repository at dir (bare, or a work tree's .git).
func openRepo(dir string) (*repo, error) {
	if st, err := os.Stat(filepath.Join(dir, ".git")); err == nil && st.IsDir() {
		dir = filepath.Join(dir, ".git")
	}
	if !isGitDir(dir) {
		return nil, git.ErrRepositoryNotExists
	}
	st := filesystem.NewStorageWithOptions(osfs.New(dir, osfs.WithBoundOS()),
		cache.NewObjectLRU(64*cache.MiByte), filesystem.Options{KeepDescriptors: true})
	r, err := git.Open(st, nil)
	if err != nil {
		st.Close()
		return nil, err
	}
	return newRepo(r, st, dir), nil
}

// openCache opens (creating if needed and create is set) the bare clone of
// url. A cache that cannot be opened is moved aside and recreated when
// create is set.
func (c Cache) openCache(url string, create bool) (*repo, error) {
	return openClone(c.repoDir(url), url, create)
}

// openClone opens (creating if needed and create is set) a bare clone of
// url in dir.
func openClone(dir, url string, create bool) (*repo, error) {
	r, err := openRepo(dir)
	if err == nil {
		if _, err = r.Remote("origin"); err == nil {
			return r, nil
		}
		r.Close()
	}
	if !create {
		if errors.Is(err, git.ErrRepositoryNotExists) {
			return nil, errNoCache
		}
		return nil, fmt.Errorf("open cached clone %s: %w", dir, err)
	}
	if _, statErr := os.Stat(dir); statErr == nil {
		// Half-created or not a repository at all: start afresh.
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("remove broken cached clone %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cached clone %s: %w", dir, err)
	}
	st := filesystem.NewStorageWithOptions(osfs.New(dir, osfs.WithBoundOS()),
		cache.NewObjectLRU(64*cache.MiByte), filesystem.Options{KeepDescriptors: true})
	gr, err := git.Init(st, nil)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("create cached clone %s: %w", dir, err)
	}
	if _, err := gr.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}}); err != nil {
		st.Close()
		return nil, fmt.Errorf("create cached clone %s: %w", dir, err)
	}
	return newRepo(gr, st, dir), nil
}

var errNoCache = errors.New("no cached copy")

// removeLegacy removes the cache entries an earlier version kept under the
// key of a URL with its credentials (full), which held them in the clone's
// config and the state file. Failures are ignored: the entries are unused.
func (c Cache) removeLegacy(full, redacted string) {
	if c.Dir == "" || full == redacted {
		return
	}
	os.RemoveAll(c.repoDir(full))
	os.Remove(c.statePath(full))
	os.Remove(c.flockPath(full))
	os.RemoveAll(filepath.Dir(c.lockCachePath(full, "x")))
}

// oneLine flattens a multi-line error message (servers send some) so every
// error stays one line.
func oneLine(err error) string {
	s := strings.TrimSpace(err.Error())
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
