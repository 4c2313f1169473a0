package resolver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/registry/gittree"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/resolver/internal/gitnet"
)

// Options configures Resolve.
type Options struct {
	// Registry is a URL (file://, git://, http(s)://, ssh://, user@host:path)
	// or a directory, relative to BaseDir.
	Registry string
	// Ref is a branch, tag, full ref name or 40-digit commit. Empty means the
	// remote's default branch (HEAD of a local repository).
	Ref string
	// BaseDir resolves a relative Registry directory.
	BaseDir string
	// Cache holds the clones of remote registries.
	Cache Cache
	// Offline resolves from the cache without any network access.
	Offline bool
	// Limits bound the work the registry's tree may cause (entries,
	// depth, bytes); zero fields take registry.DefaultLimits.
	Limits registry.Limits
	// SkipInvalid resolves the valid entries when some are invalid; the
	// invalid ones are reported in Result.Skipped. Without it an invalid
	// entry fails the resolve with registry.Problems.
	SkipInvalid bool
	// TrustedKeys, when set, requires the resolved commit to carry a valid
	// signature by one of them.
	TrustedKeys *TrustedKeys
	// Auth, when set, authenticates to the remote instead of what the
	// URL (http) or Network's ssh settings give.
	Auth transport.AuthMethod
	// Network sets the timeouts, ssh keys and progress of fetches.
	Network Network
	// Now is the time recorded as the last successful fetch and the
	// reference time of the registry's date rules.
	Now time.Time

	prev []byte // set by Update: the bytes of the lock to replace
	lazy bool   // set by Update: Result.Lock may stay nil
}

// Result is a resolved registry.
type Result struct {
	// Lock is the resolved lock. Resolve always sets it; Update leaves it
	// nil when it only handled the lock's bytes (nothing changed, or a
	// commit that only added entries): LockFile decodes it then.
	Lock *lock.File
	// Pinned is the registry source and commit of the lock.
	Pinned lock.Source
	// Unchanged is set by Update when the lock file already held exactly
	// this lock; it is then left as it was.
	Unchanged bool
	// data is Lock encoded, when known.
	data []byte
	// reg is the registry just loaded, whose serial counts Lock (nil)
	// is made of: encode writes data from them without building maps.
	reg *registry.Registry
	// sizes are the numbers of derivations, outputs and names of the lock
	// when sized is set (Lock may be nil).
	sizes [3]int
	sized bool
	// base is the encoded lock that Lock extends with added entries only
	// (so no serial of base is lower in Lock).
	base   []byte
	Source Source
	// Fetched is set when the remote was contacted successfully (always
	// false with Offline; true for local sources).
	Fetched bool
	// LastFetch is the time of the last successful fetch the lock is
	// based on.
	LastFetch time.Time
	// Recloned is set when the cached clone was unreadable and was cloned
	// afresh.
	Recloned bool
	// Signer names the key that signed the commit (with TrustedKeys).
	Signer string
	// Skipped lists the errors of the entries left out under SkipInvalid.
	Skipped registry.Problems
	// Warnings lists the lint warnings of the files that were read.
	Warnings registry.Problems
	// Loaded is the number of entry files read: all of them, or only the
	// new ones when the lock of an earlier commit could be extended.
	Loaded int
	// Entries is the number of valid entries in the lock (-1 when the lock
	// came from the cache and was not recounted).
	Entries int
}

// FetchError is a failure to reach or fetch a remote registry.
type FetchError struct {
	// URL is the registry URL without its credentials (RedactURL), and
	// Err's text holds none either.
	URL string
	Err error
	// LastFetch is when the cache was last fetched completely (zero when
	// never), and Cached the commit it holds for the ref asked for (""
	// when unknown): what --offline would use.
	LastFetch time.Time
	Cached    string
}

// Hint says what to do about a failed fetch, in one line: the setting to
// change, and (unless offline) that --offline resolves from the cache.
func (e *FetchError) Hint(now time.Time) string {
	var te *gitnet.TimeoutError
	var hint string
	switch {
	case errors.As(e.Err, &te) && te.Stall:
		hint = fmt.Sprintf("the server stopped sending for %s: retry later, or raise --stall-timeout (POISON_STALL_TIMEOUT, poison.toml stall-timeout)", te.After)
	case errors.As(e.Err, &te):
		hint = fmt.Sprintf("no connection within %s: check the URL and the network, or raise --connect-timeout (POISON_CONNECT_TIMEOUT, poison.toml connect-timeout)", te.After)
	case IsNoSSHKey(e.Err):
		hint = "ssh needs a key: pass --ssh-key FILE (e.g. a deploy key), set POISON_SSH_KEY, or put ssh-key = \"FILE\" in poison.toml; or run ssh-agent and ssh-add the key, or name it with IdentityFile in ~/.ssh/config"
	case IsHostKey(e.Err):
		hint = "check the server's host key fingerprint, then add it to ~/.ssh/known_hosts (ssh-keyscan, or ssh to it once)"
	case errors.Is(e.Err, transport.ErrAuthenticationRequired), errors.Is(e.Err, transport.ErrAuthorizationFailed):
		hint = "check the credentials of the registry URL (an expired or revoked token, or an ssh key without access?)"
	default:
		hint = "check the URL and the network"
	}
	switch {
	case e.Cached != "":
		hint += fmt.Sprintf("; or pass --offline to use the cached commit %s", e.Cached[:min(12, len(e.Cached))])
		if !e.LastFetch.IsZero() {
			hint += " (fetched " + humanAge(now.Sub(e.LastFetch)) + " ago)"
		}
	case !e.LastFetch.IsZero():
		hint += "; or pass --offline to resolve from the cache"
	}
	return hint
}

func (e *FetchError) Error() string {
	return fmt.Sprintf("fetch registry %s: %s", RedactURL(e.URL), oneLine(e.Err))
}
func (e *FetchError) Unwrap() error { return e.Err }

// ErrNoCache is returned by an offline resolve of a registry that was never
// fetched.
var ErrNoCache = errors.New("no cached copy of the registry")

// Resolve fetches (unless offline) and reads a registry and computes its
// lock. It writes nothing but the cache.
func Resolve(ctx context.Context, o Options) (*Result, error) {
	res, err := resolve(ctx, o)
	if err == nil && res.Lock == nil && !o.lazy {
		if _, err := res.LockFile(); err != nil {
			return nil, err
		}
	}
	return res, err
}

// Sizes returns the numbers of derivations, outputs and names of the lock
// when they are known without decoding it (ok is false otherwise: use
// LockFile).
func (res *Result) Sizes() (derivations, outputs, names int, ok bool) {
	if res.Lock != nil {
		return len(res.Lock.Derivations), len(res.Lock.Outputs), len(res.Lock.Names), true
	}
	return res.sizes[0], res.sizes[1], res.sizes[2], res.sized
}

// LockFile returns Lock, decoding it from the lock's bytes when needed.
func (res *Result) LockFile() (*lock.File, error) {
	if res.Lock != nil || res.reg != nil {
		return res.lockOf(), nil
	}
	if res.data == nil {
		return nil, errors.New("resolve: no lock")
	}
	l, err := decodeLock(res.data)
	if err != nil {
		return nil, err
	}
	l.Registry = res.Pinned
	res.Lock = l
	return l, nil
}

func resolve(ctx context.Context, o Options) (*Result, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	src, err := ParseSource(o.Registry, o.BaseDir)
	if err != nil {
		return nil, err
	}
	switch src.Kind {
	case LocalDir:
		if o.TrustedKeys != nil {
			return nil, fmt.Errorf("registry %s is a plain directory, not a git repository: there is no commit to verify against --trusted-keys", src.URL)
		}
		if o.Ref != "" {
			return nil, fmt.Errorf("registry %s is a plain directory, not a git repository: --ref %s cannot apply", src.URL, o.Ref)
		}
		res := &Result{Source: src, Fetched: true, LastFetch: o.Now}
		if err := res.load(os.DirFS(src.URL), nil, o, lock.Source{URL: src.URL}); err != nil {
			return nil, err
		}
		if err := res.encode(o.Cache, res.Pinned, o); err != nil {
			return nil, err
		}
		o.Cache.writeState(state{URL: src.URL, LastFetch: o.Now})
		return res, nil
	case LocalRepo:
		r, err := openRepo(src.URL)
		if err != nil {
			return nil, fmt.Errorf("open registry %s: %w", src.URL, err)
		}
		defer r.Close()
		res := &Result{Source: src, Fetched: true, LastFetch: o.Now}
		if err := res.fromRepo(ctx, r, false, "", nil, o); err != nil {
			return nil, err
		}
		o.Cache.writeState(state{URL: src.URL, LastFetch: o.Now})
		return res, nil
	}
	return resolveRemote(ctx, src, o)
}

func resolveRemote(ctx context.Context, src Source, o Options) (*Result, error) {
	c := o.Cache
	if c.Dir == "" {
		return nil, errors.New("no cache directory: set XDG_CACHE_HOME or HOME, or POISON_CACHE_DIR")
	}
	if o.Offline {
		return resolveOffline(ctx, src, o)
	}
	// Online resolves of one URL take turns; offline ones do not wait.
	unlock, err := flock(ctx, c.flockPath(src.URL))
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir := c.repoDir(src.URL)
	res, st, err := fetchAndRead(ctx, src, o, dir, true)
	if err == nil || !isCorruption(err) || ctx.Err() != nil {
		return res, err
	}
	// The cached clone looks unreadable. Clone afresh next to it and swap
	// only when that succeeds: if the failure was the network after all,
	// the cache stays as it was, for --offline.
	fresh := fmt.Sprintf("%s.new-%d", dir, time.Now().UnixNano())
	defer os.RemoveAll(fresh)
	res, st, err2 := fetchAndRead(ctx, src, o, fresh, false)
	if err2 != nil {
		return nil, err
	}
	aside := fmt.Sprintf("%s.broken-%d", dir, time.Now().UnixNano())
	if err := os.Rename(dir, aside); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("move aside broken cached clone %s: %w", dir, err)
	}
	if err := os.Rename(fresh, dir); err != nil {
		return nil, fmt.Errorf("replace broken cached clone %s: %w", dir, err)
	}
	os.RemoveAll(aside)
	// Published only now: an offline resolve reading the state finds the
	// objects it names.
	if err := c.writeState(st); err != nil {
		return nil, err
	}
	res.Recloned = true
	return res, nil
}

// resolveOffline reads the cached clone as the last complete fetch left
// it, without the fetch lock: an online fetch of the same URL running
// alongside (or hanging on a dead server) does not hold it up. Objects in
// the clone are only ever added (a pack appears once complete), and the
// references come from the state file, replaced atomically after a fetch.
func resolveOffline(ctx context.Context, src Source, o Options) (*Result, error) {
	var res *Result
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		res, err = readOffline(ctx, src, o)
		if err == nil || errors.Is(err, ErrNoCache) || !isCorruption(err) {
			return res, err
		}
		// A broken clone replaced under our feet: read the new one.
		time.Sleep(50 * time.Millisecond)
	}
	return res, err
}

func readOffline(ctx context.Context, src Source, o Options) (*Result, error) {
	c := o.Cache
	st, _ := c.readState(src.URL)
	r, err := c.openCache(src.URL, false)
	if errors.Is(err, errNoCache) {
		return nil, fmt.Errorf("resolve %s offline: %w; run 'poison resolve' online once", src.URL, ErrNoCache)
	}
	if err != nil {
		return nil, fmt.Errorf("resolve %s offline: %w; run 'poison resolve' online to repair the cache", src.URL, err)
	}
	defer r.Close()
	res := &Result{Source: src, LastFetch: st.LastFetch}
	if err := res.fromRepo(ctx, r, true, st.Head, st.refMap(), o); err != nil {
		if isCorruption(err) {
			return nil, &corruptError{fmt.Errorf("resolve %s offline: %w", src.URL, err)}
		}
		return nil, fmt.Errorf("resolve %s offline: %w", src.URL, err)
	}
	return res, nil
}

// corruptError marks a failure to read objects the cache should have.
type corruptError struct{ err error }

func (e *corruptError) Error() string { return e.err.Error() }
func (e *corruptError) Unwrap() error { return e.err }

func isCorruption(err error) bool {
	var ce *corruptError
	return errors.As(err, &ce)
}

// fetchAndRead fetches the remote into the clone in dir and reads the
// registry from it. publish writes the cache state (what offline resolves
// read) as soon as the fetch is complete; otherwise the caller publishes
// the returned state once dir is in place.
func fetchAndRead(ctx context.Context, src Source, o Options, dir string, publish bool) (*Result, state, error) {
	c := o.Cache
	r, err := openClone(dir, src.URL, true)
	if err != nil {
		return nil, state{}, err
	}
	defer r.Close()
	cfg := o.gitnetConfig(src.URL)
	cfg.TempDir = dir
	fr, err := gitnet.Fetch(ctx, r.Storer, src.fetchURL(), cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil, state{}, &FetchError{URL: src.URL, Err: ctx.Err()}
		}
		// go-git's and net/http's texts may hold the URL as given.
		err = redactErr(err, src.fetchURL())
		if !isNetwork(err) {
			err = &corruptError{err}
		}
		fe := &FetchError{URL: src.URL, Err: fetchLimitError(err)}
		if prev, ok := c.readState(src.URL); ok {
			fe.LastFetch = prev.LastFetch
			fe.Cached = prev.cachedCommit(r, o.Ref)
		}
		return nil, state{}, fe
	}
	c.removeLegacy(src.fetchURL(), src.URL)
	st := state{URL: src.URL, LastFetch: o.Now, Head: fr.Head, Refs: map[string]string{}}
	for n, h := range fr.Refs {
		st.Refs[n.String()] = h.String()
	}
	if publish {
		if err := c.writeState(st); err != nil {
			return nil, st, err
		}
	}
	res := &Result{Source: src, Fetched: true, LastFetch: o.Now}
	if err := res.fromRepo(ctx, r, true, fr.Head, st.refMap(), o); err != nil {
		return nil, st, err
	}
	return res, st, nil
}

// isNetwork tells transport failures (keep the cache) from failures to
// read or write the cached clone (clone it again).
func isNetwork(err error) bool {
	var ne net.Error
	var ue *url.Error
	var oe *net.OpError
	var re *gitnet.RemoteError
	switch {
	case errors.As(err, &re):
		return true
	case errors.As(err, &ne), errors.As(err, &ue), errors.As(err, &oe),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, transport.ErrRepositoryNotFound),
		errors.Is(err, transport.ErrAuthenticationRequired),
		errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrInvalidAuthMethod),
		errors.Is(err, transport.ErrEmptyRemoteRepository),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}

// fromRepo reads the registry at the ref from an open repository.
func (res *Result) fromRepo(ctx context.Context, r *repo, remote bool, head string, refs map[plumbing.ReferenceName]plumbing.Hash, o Options) error {
	c, recorded, err := resolveRef(r, o.Ref, remote, head, refs)
	if err != nil {
		if remote && errors.Is(err, plumbing.ErrObjectNotFound) {
			return &corruptError{err}
		}
		return err
	}
	verifiedBy := ""
	if o.TrustedKeys != nil {
		id, signer, err := o.TrustedKeys.verify(c)
		if err != nil {
			return fmt.Errorf("verify registry commit: %w", err)
		}
		res.Signer, verifiedBy = signer, id
	}
	src := lock.Source{URL: res.Source.URL, Ref: recorded, Commit: c.Hash.String(), VerifiedBy: verifiedBy}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := res.loadCommit(r, c.TreeHash, src, o); err != nil {
		var ps registry.Problems
		var te *gittree.Error
		if errors.As(err, &ps) || errors.As(err, &te) {
			// The registry's content (a tree git fsck refuses, a limit),
			// not a broken cache: cloning again would not help.
			return err
		}
		return &corruptError{err}
	}
	return nil
}

// load reads a whole registry file system (or, with only, just those
// entry files) and computes its lock.
func (res *Result) load(fsys fs.FS, only []string, o Options, src lock.Source) error {
	reg, err := registry.Load(fsys, registry.LoadOptions{Now: o.Now, OnlyLock: true, Only: only, Limits: o.Limits})
	var ps registry.Problems
	switch {
	case err == nil:
	case errors.As(err, &ps) && reg != nil:
		if !o.SkipInvalid {
			return ps
		}
		res.Skipped = ps
	default:
		return fmt.Errorf("registry %s: %w", src.URL, err)
	}
	res.Warnings = reg.Warnings
	res.Lock, res.Pinned, res.reg = nil, src, reg
	res.Loaded = reg.Count + len(skippedFiles(res.Skipped))
	res.Entries = reg.Count
	return nil
}

// skippedFiles lists the distinct files of problems.
func skippedFiles(ps registry.Problems) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range ps {
		if !seen[p.Path] {
			seen[p.Path] = true
			out = append(out, p.Path)
		}
	}
	sort.Strings(out)
	return out
}

// SkippedFiles lists the files left out under SkipInvalid.
func (res *Result) SkippedFiles() []string { return skippedFiles(res.Skipped) }

// loadCommit computes the lock of a registry tree, from the cache of
// computed locks when it can: the lock of this very commit, or the lock of
// an earlier commit plus the entries added since, when the only changes
// under entries/ are additions and registry.toml is unchanged (serials are
// sums over entry files, so this equals a full load).
func (res *Result) loadCommit(r *repo, tree plumbing.Hash, src lock.Source, o Options) error {
	c := o.Cache
	res.Pinned = src
	if raw, ok := c.cachedRaw(src.URL, src.Commit, o.prev); ok {
		same := bytes.HasPrefix(raw, sourcePrefix(src))
		if same && o.prev != nil && bytes.Equal(raw, o.prev) {
			// The warm path of Update: nothing to decode.
			res.data, res.Unchanged, res.Entries = raw, true, -1
			return nil
		}
		if l, err := decodeLock(raw); err == nil && l.Registry.Commit == src.Commit {
			res.Lock, res.Entries = l, -1
			if same {
				res.data = raw
			}
			l.Registry = src
			return nil
		}
	}
	tfs := gittree.New(r.Storer, tree, o.Limits)
	tfs.SetObjects(r.objs)
	defer tfs.Close()
	baseRaw, baseCommit, ok := c.latestRaw(src.URL, o.prev)
	if ok && baseCommit != src.Commit {
		if err := res.extend(r, tfs, baseRaw, baseCommit, src, o); err == nil {
			res.base = baseRaw
			if res.data != nil {
				if len(res.Skipped) == 0 {
					c.storeLock(src.URL, src.Commit, res.data)
				}
				return nil
			}
			return res.encode(c, src, o)
		} else if !errors.Is(err, errNotIncremental) {
			return err
		}
	}
	if err := res.load(tfs, nil, o, src); err != nil {
		return err
	}
	tfs.Close() // its trees are no longer needed: free them before encoding
	return res.encode(c, src, o)
}

// lockOf returns Lock, building it from the registry just loaded when
// needed.
func (res *Result) lockOf() *lock.File {
	if res.Lock == nil && res.reg != nil {
		res.Lock, res.reg = res.reg.Lock(res.Pinned), nil
	}
	return res.Lock
}

// largeRegistry is the number of entries from which encode collects
// garbage before writing the lock.
const largeRegistry = 100_000

// encode fills res.data and remembers a clean lock in the cache.
func (res *Result) encode(c Cache, src lock.Source, o Options) error {
	var data []byte
	if res.Lock == nil && res.reg != nil {
		if res.Entries >= largeRegistry {
			// The lock is written into one buffer (140 MB at 1,000,000
			// entries): collect what the load left behind (paths, trees,
			// work lists) first, or the buffer comes on top of it.
			runtime.GC()
		}
		var ok bool
		if data, res.sizes, ok = encodeRegistry(res.reg, src); ok {
			res.reg, res.sized = nil, true
		}
	}
	if data == nil {
		var err error
		if data, err = encodeLock(res.lockOf()); err != nil {
			return err
		}
	}
	res.data = data
	if len(res.Skipped) == 0 {
		c.storeLock(src.URL, src.Commit, data)
	}
	return nil
}

// sourcePrefix is how every lock of src begins.
func sourcePrefix(src lock.Source) []byte {
	b, _ := encodeLock(lock.New(src, "X"))
	return b[:bytes.Index(b, []byte("\n  \"env\""))]
}

var errNotIncremental = errors.New("not incremental")

// extend computes the lock of tfs from the lock of baseCommit and the
// entry files added since.
func (res *Result) extend(r *repo, tfs *gittree.FS, baseRaw []byte, baseCommit string, src lock.Source, o Options) error {
	bc, err := r.CommitObject(plumbing.NewHash(baseCommit))
	if err != nil {
		return errNotIncremental
	}
	old := gittree.New(r.Storer, bc.TreeHash, o.Limits)
	old.SetObjects(r.objs)
	defer old.Close()
	same, err := gittree.SameEntry(old, tfs, registry.ConfigFile)
	if err != nil || !same {
		return errNotIncremental
	}
	added, ok, err := gittree.Added(old, tfs, registry.EntriesDir)
	if err != nil || !ok {
		return errNotIncremental
	}
	part := &Result{Source: res.Source}
	if err := part.load(tfs, added, o, src); err != nil {
		return err
	}
	res.Skipped, res.Warnings = part.Skipped, part.Warnings
	res.Loaded, res.Entries, res.Pinned = part.Loaded, -1, src
	if data, ok := extendEncoded(baseRaw, src, part.lockOf()); ok {
		res.data = data
		if !o.lazy {
			_, err := res.LockFile()
			return err
		}
		return nil
	}
	// Keys extendEncoded does not handle: sum decoded locks.
	base, err := decodeLock(baseRaw)
	if err != nil {
		return errNotIncremental
	}
	p := part.lockOf()
	if p.Env != base.Env || p.Store() != base.Store() {
		return errNotIncremental
	}
	l := base
	for k, v := range p.Derivations {
		l.Derivations[k] += v
	}
	for k, v := range p.Outputs {
		l.Outputs[k] += v
	}
	for k, v := range p.Names {
		l.Names[k] += v
	}
	l.Registry = src
	res.Lock = l
	return nil
}

// cachedRaw returns the bytes of the lock computed earlier for a commit.
// When the file holds exactly the bytes of prefer, prefer itself is
// returned: a lock of 1,000,000 entries is 140 MB, held once.
func (c Cache) cachedRaw(url, commit string, prefer []byte) ([]byte, bool) {
	if c.Dir == "" || commit == "" {
		return nil, false
	}
	p := c.lockCachePath(url, commit)
	if prefer != nil {
		if same, err := fileEquals(p, prefer); err == nil && same {
			return prefer, true
		}
	}
	raw, err := os.ReadFile(p)
	return raw, err == nil
}

// fileEquals reports whether the file at path holds exactly b, reading it
// in pieces.
func fileEquals(path string, b []byte) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != int64(len(b)) {
		return false, err
	}
	buf := make([]byte, 1<<20)
	for len(b) > 0 {
		n, err := io.ReadFull(f, buf[:min(len(buf), len(b))])
		if err != nil {
			return false, err
		}
		if !bytes.Equal(buf[:n], b[:n]) {
			return false, nil
		}
		b = b[n:]
	}
	return true, nil
}

// latestRaw returns the bytes and commit of the most recently stored lock
// of url.
func (c Cache) latestRaw(url string, prefer []byte) ([]byte, string, bool) {
	if c.Dir == "" {
		return nil, "", false
	}
	dir := filepath.Dir(c.lockCachePath(url, "x"))
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, "", false
	}
	var best string
	var bestT time.Time
	for _, e := range ents {
		if !fullHash().MatchString(e.Name()) {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.ModTime().After(bestT) {
			best, bestT = e.Name(), fi.ModTime()
		}
	}
	if best == "" {
		return nil, "", false
	}
	raw, ok := c.cachedRaw(url, best, prefer)
	return raw, best, ok
}

// storeLock remembers the lock of a clean load of commit, keeping the two
// most recent per URL. Failures only cost speed later, so they are ignored.
func (c Cache) storeLock(url, commit string, data []byte) {
	if c.Dir == "" || commit == "" {
		return
	}
	p := c.lockCachePath(url, commit)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return
	}
	// Not lock.WriteAtomic: the cache needs no fsync (a lost file only
	// costs a full load), and syncing 13 MB costs a warm resolve dearly.
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(data)
	if cerr := tmp.Close(); werr != nil || cerr != nil || os.Rename(tmp.Name(), p) != nil {
		os.Remove(tmp.Name())
		return
	}
	now := time.Now()
	os.Chtimes(p, now, now)
	ents, err := os.ReadDir(filepath.Dir(p))
	if err != nil {
		return
	}
	type aged struct {
		name string
		t    time.Time
	}
	var all []aged
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fullHash().MatchString(e.Name()) {
			all = append(all, aged{e.Name(), fi.ModTime()})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].t.After(all[j].t) })
	for _, a := range all[min(len(all), 2):] {
		os.Remove(filepath.Join(filepath.Dir(p), a.name))
	}
}
