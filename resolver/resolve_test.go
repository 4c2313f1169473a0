package resolver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/resolver"
	"github.com/poison-nix/poison/resolver/internal/regtest"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// world is a registry served every way the resolver supports.
type world struct {
	t      *testing.T
	root   string // base path of the servers
	repo   *regtest.Repo
	bare   string // bare clone served by the servers
	daemon *regtest.Daemon
	http   *regtest.HTTP
	cache  resolver.Cache
	tls    *tls.Config // trusts the HTTPS test server, when there is one
}

func newWorld(t *testing.T, entries map[string][]byte) *world {
	t.Helper()
	root := t.TempDir()
	w := &world{t: t, root: root, cache: resolver.Cache{Dir: filepath.Join(t.TempDir(), "cache")}}
	w.repo = regtest.NewRepo(t, filepath.Join(root, "work"), entries)
	w.bare = filepath.Join(root, "reg.git")
	regtest.Git(t, root, "clone", "-q", "--bare", w.repo.Dir, w.bare)
	return w
}

// push publishes the work tree's main to the served bare repository.
func (w *world) push(force bool) {
	w.t.Helper()
	args := []string{"push", "-q", w.bare, "main"}
	if force {
		args = append(args, "--force")
	}
	regtest.Git(w.t, w.repo.Dir, args...)
}

func (w *world) opts(url string) resolver.Options {
	return resolver.Options{Registry: url, Cache: w.cache, Now: now, BaseDir: w.root,
		Network: resolver.Network{TLS: w.tls}}
}

// wantLock is the lock of the work tree's committed state, computed with
// registry.Load straight from the files.
func (w *world) wantLock(url, ref string) *lock.File {
	w.t.Helper()
	reg, err := registry.Load(os.DirFS(w.repo.Dir), registry.LoadOptions{Now: now})
	if err != nil {
		w.t.Fatalf("load work tree: %v", err)
	}
	return reg.Lock(lock.Source{URL: url, Ref: ref, Commit: w.repo.Head()})
}

func marshal(t *testing.T, l *lock.File) string {
	t.Helper()
	b, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func baseEntries() map[string][]byte {
	return map[string][]byte{
		"a":  regtest.Entry("a-1.0", "first incident"),
		"b":  regtest.Entry("b-2.0", "second incident"),
		"b2": regtest.Entry("b-2.0", "b again: serial 2"),
	}
}

// TestResolveSources resolves the same registry through every kind of
// source and checks each lock against registry.Load of the files.
func TestResolveSources(t *testing.T) {
	w := newWorld(t, baseEntries())
	w.daemon = regtest.StartDaemon(t, w.root)
	w.http = regtest.StartHTTP(t, w.root)
	cases := []struct {
		name, url, ref string
	}{
		{"work tree path", w.repo.Dir, "main"},
		{"relative path", "work", "main"},
		{"bare path", w.bare, "main"},
		{"file URL", "file://" + w.bare, "main"},
		{"git daemon", w.daemon.URL("reg.git"), "main"},
		{"smart HTTP", w.http.URL("reg.git"), "main"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := resolver.Resolve(context.Background(), w.opts(c.url))
			if err != nil {
				t.Fatal(err)
			}
			url := c.url
			if !strings.Contains(url, "://") {
				url = filepath.Join(w.root, url)
				if filepath.IsAbs(c.url) {
					url = c.url
				}
			}
			want := w.wantLock(url, c.ref)
			if got := marshal(t, res.Lock); got != marshal(t, want) {
				t.Errorf("lock:\n%s\nwant:\n%s", got, marshal(t, want))
			}
			if res.Lock.Derivations[filepath.Base(regtest.Drv("b-2.0"))] != 2 {
				t.Errorf("serial of b = %d, want 2", res.Lock.Derivations[filepath.Base(regtest.Drv("b-2.0"))])
			}
		})
	}
}

// TestResolvePlainDirectory reads a directory that is not a git repository
// as it is on disk, without a commit.
func TestResolvePlainDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "registry.toml"), []byte(regtest.Config), 0o644)
	os.MkdirAll(filepath.Join(dir, "entries"), 0o755)
	os.WriteFile(filepath.Join(dir, "entries", "x.toml"), regtest.Entry("x-1", "x"), 0o644)
	res, err := resolver.Resolve(context.Background(), resolver.Options{Registry: dir, Cache: resolver.Cache{Dir: t.TempDir()}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lock.Registry.Commit != "" || res.Lock.Names["x-1"] != 1 {
		t.Errorf("lock = %+v", res.Lock)
	}
	_, err = resolver.Resolve(context.Background(), resolver.Options{Registry: dir, Ref: "main", Now: now})
	if err == nil || !strings.Contains(err.Error(), "plain directory") {
		t.Errorf("--ref on a plain directory: err = %v", err)
	}
}

// TestIncremental checks that a resolve after new commits fetches them and
// that the lock extended from the cached one equals a full load, and that
// a change other than an addition falls back to a full load.
func TestIncremental(t *testing.T) {
	w := newWorld(t, baseEntries())
	w.daemon = regtest.StartDaemon(t, w.root)
	url := w.daemon.URL("reg.git")
	lockPath := filepath.Join(t.TempDir(), "poison.lock")
	update := func() *resolver.Result {
		t.Helper()
		res, _, err := resolver.Update(context.Background(), resolver.UpdateOptions{Options: w.opts(url), LockPath: lockPath})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(lockPath)
		if want := marshal(t, w.wantLock(url, "main")); string(got) != want {
			t.Fatalf("lock file:\n%s\nwant:\n%s", got, want)
		}
		return res
	}
	update()
	w.repo.AddEntry("c", regtest.Entry("c-3", "new"))
	w.repo.AddEntry("a2", regtest.Entry("a-1.0", "a again"))
	w.push(false)
	if res := update(); res.Loaded != 2 {
		t.Errorf("after two added entries, loaded %d files, want 2 (incremental)", res.Loaded)
	}
	// Nothing new: the cached lock is reused, nothing is read.
	if res := update(); res.Loaded != 0 || !res.Unchanged {
		t.Errorf("warm resolve loaded %d files (want 0), unchanged=%v", res.Loaded, res.Unchanged)
	}
	// Unchanged, but poison.nix asked for: written from the same lock.
	nixPath := filepath.Join(t.TempDir(), "poison.nix")
	if _, _, err := resolver.Update(context.Background(), resolver.UpdateOptions{Options: w.opts(url), LockPath: lockPath, NixPath: nixPath}); err != nil {
		t.Fatal(err)
	}
	if nix, err := os.ReadFile(nixPath); err != nil || string(nix) != string(w.wantLock(url, "main").Nix()) {
		t.Errorf("poison.nix of an unchanged lock: %v\n%s", err, nix)
	}
	// registry.toml changes: full load.
	w.repo.Write("registry.toml", []byte("env = \"POISON_SERIAL\"\nstore-dir = \"/nix/store\"\n# comment\n"))
	w.repo.Commit("touch config")
	w.push(false)
	if res := update(); res.Loaded != 5 {
		t.Errorf("after a registry.toml change, loaded %d files, want all 5", res.Loaded)
	}
}

// TestOffline proves --offline never touches the network: the HTTP server
// counts no request, and a stopped daemon does not matter.
func TestOffline(t *testing.T) {
	w := newWorld(t, baseEntries())
	w.http = regtest.StartHTTP(t, w.root)
	w.daemon = regtest.StartDaemon(t, w.root)
	ctx := context.Background()

	// Never fetched: offline fails clearly.
	o := w.opts(w.http.URL("reg.git"))
	o.Offline = true
	if _, err := resolver.Resolve(ctx, o); !errors.Is(err, resolver.ErrNoCache) {
		t.Fatalf("offline without cache: err = %v, want ErrNoCache", err)
	}
	if n := w.http.Requests(); n != 0 {
		t.Fatalf("offline resolve made %d HTTP requests", n)
	}
	o.Offline = false
	online, err := resolver.Resolve(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	before := w.http.Requests()
	if before == 0 {
		t.Fatal("online resolve made no HTTP request")
	}
	// A new commit on the server is not seen offline.
	w.repo.AddEntry("c", regtest.Entry("c-3", "new"))
	w.push(false)
	o.Offline = true
	off, err := resolver.Resolve(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if n := w.http.Requests(); n != before {
		t.Errorf("offline resolve made %d HTTP requests", n-before)
	}
	if marshal(t, off.Lock) != marshal(t, online.Lock) || off.Fetched {
		t.Errorf("offline lock differs from the cached one (fetched=%v)", off.Fetched)
	}

	// git daemon: fetch once, stop the server, resolve offline.
	d := w.opts(w.daemon.URL("reg.git"))
	if _, err := resolver.Resolve(ctx, d); err != nil {
		t.Fatal(err)
	}
	w.daemon.Stop()
	d.Offline = true
	if _, err := resolver.Resolve(ctx, d); err != nil {
		t.Errorf("offline with the server stopped: %v", err)
	}
	d.Offline = false
	var fe *resolver.FetchError
	if _, err := resolver.Resolve(ctx, d); !errors.As(err, &fe) {
		t.Errorf("online with the server stopped: err = %v, want a FetchError", err)
	}
	// The failed fetch left the cache usable.
	d.Offline = true
	if _, err := resolver.Resolve(ctx, d); err != nil {
		t.Errorf("offline after a failed fetch: %v", err)
	}
}

// TestFailClosed checks every failure leaves the previous lock intact.
func TestFailClosed(t *testing.T) {
	w := newWorld(t, baseEntries())
	w.daemon = regtest.StartDaemon(t, w.root)
	url := w.daemon.URL("reg.git")
	ctx := context.Background()
	lockPath := filepath.Join(t.TempDir(), "poison.lock")
	if _, _, err := resolver.Update(ctx, resolver.UpdateOptions{Options: w.opts(url), LockPath: lockPath}); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(lockPath)
	intact := func(t *testing.T) {
		t.Helper()
		if got, _ := os.ReadFile(lockPath); !bytes.Equal(got, good) {
			t.Errorf("previous lock changed")
		}
		ents, _ := os.ReadDir(filepath.Dir(lockPath))
		if len(ents) != 1 {
			t.Errorf("stray files next to the lock: %v", ents)
		}
	}
	update := func(o resolver.UpdateOptions) error {
		if o.Registry == "" {
			o.Options = w.opts(url)
		}
		o.LockPath = lockPath
		_, _, err := resolver.Update(ctx, o)
		return err
	}

	t.Run("unreachable host", func(t *testing.T) {
		o := resolver.UpdateOptions{Options: w.opts("git://127.0.0.1:" + strconv.Itoa(regtest.FreePort(t)) + "/reg.git")}
		err := update(o)
		var fe *resolver.FetchError
		if !errors.As(err, &fe) || strings.Contains(err.Error(), "\n") {
			t.Errorf("err = %v, want a one-line FetchError", err)
		}
		intact(t)
	})
	t.Run("interrupted", func(t *testing.T) {
		// A resolve cancelled while it fetches into a fresh cache (as by
		// SIGINT): an error, the lock intact, and the next resolve works.
		o := w.opts(url)
		o.Cache = resolver.Cache{Dir: filepath.Join(t.TempDir(), "cache")}
		for _, d := range []time.Duration{time.Millisecond, 20 * time.Millisecond, 60 * time.Millisecond} {
			cctx, cancel := context.WithTimeout(ctx, d)
			_, _, err := resolver.Update(cctx, resolver.UpdateOptions{Options: o, LockPath: lockPath})
			cancel()
			if err == nil {
				continue // fast enough to finish: nothing to check
			}
			intact(t)
		}
		if _, err := resolver.Resolve(ctx, o); err != nil {
			t.Errorf("resolve after interruptions: %v", err)
		}
	})
	t.Run("bad URL", func(t *testing.T) {
		for _, u := range []string{"ftp://example.com/r", "http:///nohost", "/does/not/exist"} {
			if err := update(resolver.UpdateOptions{Options: w.opts(u)}); err == nil {
				t.Errorf("%s: no error", u)
			}
		}
		intact(t)
	})
	t.Run("unknown repository", func(t *testing.T) {
		err := update(resolver.UpdateOptions{Options: w.opts(w.daemon.URL("nope.git"))})
		var fe *resolver.FetchError
		if !errors.As(err, &fe) {
			t.Errorf("err = %v, want a FetchError", err)
		}
		intact(t)
	})
	t.Run("unknown ref", func(t *testing.T) {
		o := w.opts(url)
		o.Ref = "nosuchbranch"
		err := update(resolver.UpdateOptions{Options: o})
		if err == nil || !strings.Contains(err.Error(), "nosuchbranch") || !strings.Contains(err.Error(), "main") {
			t.Errorf("err = %v, want it to name the ref and the branches", err)
		}
		intact(t)
	})
	t.Run("invalid entry", func(t *testing.T) {
		w.repo.AddEntry("bad", []byte("reason = \"x\"\nauthor = \"a <a@b>\"\ndate = 2026-11-20\nbogus = 1\n[[derivation]]\npath = \"/nix/store/short-x.drv\"\n"))
		w.repo.AddEntry("d", regtest.Entry("d-4", "valid"))
		w.push(false)
		err := update(resolver.UpdateOptions{})
		var ps registry.Problems
		if !errors.As(err, &ps) || !strings.Contains(err.Error(), "entries/2026/11/bad.toml:") {
			t.Fatalf("err = %v, want lint problems naming bad.toml:LINE", err)
		}
		intact(t)
		o := resolver.UpdateOptions{Options: w.opts(url)}
		o.SkipInvalid = true
		res, _, err := resolver.Update(ctx, resolver.UpdateOptions{Options: o.Options, LockPath: lockPath})
		if err != nil {
			t.Fatal(err)
		}
		if files := res.SkippedFiles(); len(files) != 1 || files[0] != "entries/2026/11/bad.toml" {
			t.Errorf("skipped %v", files)
		}
		l, err := lock.ReadFile(lockPath)
		if err != nil || l.Names["d-4"] != 1 {
			t.Errorf("skip-invalid lock: %v %v", l, err)
		}
		good, _ = os.ReadFile(lockPath)
	})
	t.Run("serial decrease", func(t *testing.T) {
		// A force-push that drops the last two entries.
		regtest.Git(t, w.repo.Dir, "reset", "-q", "--hard", "HEAD~2")
		w.repo.AddEntry("e", regtest.Entry("e-5", "after the rewrite"))
		w.push(true)
		o := w.opts(url)
		o.SkipInvalid = true
		err := update(resolver.UpdateOptions{Options: o})
		var sd *resolver.SerialDecreaseError
		if !errors.As(err, &sd) || !strings.Contains(err.Error(), `names["d-4"] 1 -> 0`) {
			t.Fatalf("err = %v, want a SerialDecreaseError naming d-4", err)
		}
		intact(t)
		if err := update(resolver.UpdateOptions{Options: o, AllowSerialDecrease: true}); err != nil {
			t.Fatal(err)
		}
		l, _ := lock.ReadFile(lockPath)
		if l.Names["d-4"] != 0 || l.Names["e-5"] != 1 {
			t.Errorf("lock after --allow-serial-decrease: %v", l.Names)
		}
		good, _ = os.ReadFile(lockPath)
	})
	t.Run("corrupt previous lock", func(t *testing.T) {
		os.WriteFile(lockPath, []byte("{ not json"), 0o644)
		good, _ = os.ReadFile(lockPath)
		w.repo.AddEntry("f", regtest.Entry("f-6", "f"))
		w.push(false)
		if err := update(resolver.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "unreadable") {
			t.Errorf("err = %v", err)
		}
		intact(t)
		if err := update(resolver.UpdateOptions{AllowSerialDecrease: true}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestCorruptCache checks that an unreadable cached clone is cloned again
// online and reported clearly offline.
func TestCorruptCache(t *testing.T) {
	w := newWorld(t, baseEntries())
	w.daemon = regtest.StartDaemon(t, w.root)
	ctx := context.Background()
	o := w.opts(w.daemon.URL("reg.git"))
	want, err := resolver.Resolve(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	// Remove the cached locks so the objects must be read, then damage
	// every pack of the clone.
	os.RemoveAll(filepath.Join(w.cache.Dir, "locks"))
	packs, _ := filepath.Glob(filepath.Join(w.cache.Dir, "repos", "*.git", "objects", "pack", "*.pack"))
	if len(packs) == 0 {
		t.Fatal("no pack in the cache")
	}
	for _, p := range packs {
		os.Chmod(p, 0o644)
		os.WriteFile(p, []byte("PACK garbage"), 0o644)
	}
	o.Offline = true
	if _, err := resolver.Resolve(ctx, o); err == nil {
		t.Error("offline resolve from a corrupt cache succeeded")
	} else if strings.Contains(err.Error(), "\n") {
		t.Errorf("multi-line error: %q", err)
	}
	o.Offline = false
	got, err := resolver.Resolve(ctx, o)
	if err != nil {
		t.Fatalf("online resolve did not repair the cache: %v", err)
	}
	if !got.Recloned || marshal(t, got.Lock) != marshal(t, want.Lock) {
		t.Errorf("recloned=%v, lock equal=%v", got.Recloned, marshal(t, got.Lock) == marshal(t, want.Lock))
	}
	// Damaged again, and this time the remote moved, so the fetch itself
	// must cope with the broken objects.
	os.RemoveAll(filepath.Join(w.cache.Dir, "locks"))
	packs, _ = filepath.Glob(filepath.Join(w.cache.Dir, "repos", "*.git", "objects", "pack", "*.pack"))
	for _, p := range packs {
		os.Chmod(p, 0o644)
		os.WriteFile(p, []byte("PACK garbage"), 0o644)
	}
	w.repo.AddEntry("c", regtest.Entry("c-3", "new"))
	w.push(false)
	got, err = resolver.Resolve(ctx, o)
	if err != nil {
		t.Fatalf("online resolve after a push did not repair the cache: %v", err)
	}
	// The fetch may bring every object again (its "haves" are unreadable):
	// each object read is checked against its id, so the intact pack then
	// serves the resolve without a new clone. Either way the lock is right.
	if want := marshal(t, w.wantLock(o.Registry, "main")); marshal(t, got.Lock) != want {
		t.Errorf("recloned=%v, lock:\n%s\nwant:\n%s", got.Recloned, marshal(t, got.Lock), want)
	}
}

// TestConcurrent runs several resolves of one registry into one lock at
// once, while the registry moves; every one succeeds and the lock is one
// consistent state.
func TestConcurrent(t *testing.T) {
	w := newWorld(t, baseEntries())
	w.daemon = regtest.StartDaemon(t, w.root)
	url := w.daemon.URL("reg.git")
	lockPath := filepath.Join(t.TempDir(), "poison.lock")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := resolver.Update(context.Background(), resolver.UpdateOptions{Options: w.opts(url), LockPath: lockPath})
			errs <- err
		}()
		if i == 3 {
			w.repo.AddEntry("c", regtest.Entry("c-3", "new"))
			w.push(false)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// The last writer saw the newest commit: one more resolve changes
	// nothing.
	before, _ := os.ReadFile(lockPath)
	if _, _, err := resolver.Update(context.Background(), resolver.UpdateOptions{Options: w.opts(url), LockPath: lockPath}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(lockPath)
	if !bytes.Equal(before, after) {
		t.Errorf("lock after concurrent resolves is not the newest state")
	}
	if want := marshal(t, w.wantLock(url, "main")); string(after) != want {
		t.Errorf("lock:\n%s\nwant:\n%s", after, want)
	}
}

// TestResolveSSH resolves over ssh:// from an SSH server that runs the real
// git upload-pack, and refuses a server whose host key is not the pinned
// one.
func TestResolveSSH(t *testing.T) {
	w := newWorld(t, baseEntries())
	srv := regtest.StartSSH(t, w.root)
	o := w.opts(srv.URL("reg.git"))
	o.Auth = srv.Auth
	res, err := resolver.Resolve(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := marshal(t, res.Lock), marshal(t, w.wantLock(srv.URL("reg.git"), "main")); got != want {
		t.Errorf("lock:\n%s\nwant:\n%s", got, want)
	}
	// Another server on another port with another host key, same client
	// auth pinned to the first key: the fetch must fail.
	other := regtest.StartSSH(t, w.root)
	o = w.opts(other.URL("reg.git"))
	o.Auth = srv.Auth
	var fe *resolver.FetchError
	if _, err := resolver.Resolve(context.Background(), o); !errors.As(err, &fe) {
		t.Errorf("wrong host key: err = %v, want a FetchError", err)
	}
}

// TestShow looks keys up in the lock and in the cached registry commit.
func TestShow(t *testing.T) {
	w := newWorld(t, baseEntries())
	init := w.repo.Head()
	added := w.repo.AddEntry("c", regtest.Entry("c-3", "c reason"))
	w.repo.AddEntry("d", regtest.Entry("d-4", "d"))
	w.push(false)
	w.daemon = regtest.StartDaemon(t, w.root)
	ctx := context.Background()
	res, err := resolver.Resolve(ctx, w.opts(w.daemon.URL("reg.git")))
	if err != nil {
		t.Fatal(err)
	}
	l := res.Lock
	cases := []struct {
		key, kind string
		serial    int
		files     []string
		commit    string
	}{
		{regtest.Drv("c-3"), "derivation", 1, []string{"entries/2026/11/c.toml"}, added},
		{filepath.Base(regtest.Out("b-2.0")), "output", 2, []string{"entries/2026/11/b.toml", "entries/2026/11/b2.toml"}, init},
		{"a-1.0", "name", 1, []string{"entries/2026/11/a.toml"}, init},
		{regtest.Drv("zzz"), "derivation", 0, nil, ""},
	}
	for _, c := range cases {
		s, err := resolver.Show(ctx, w.cache, l, c.key, resolver.ShowOptions{Now: now})
		if err != nil {
			t.Fatalf("%s: %v", c.key, err)
		}
		var files []string
		for _, e := range s.Entries {
			files = append(files, e.File)
			if e.Commit != c.commit {
				t.Errorf("%s: entry %s commit %s, want %s", c.key, e.File, e.Commit, c.commit)
			}
		}
		if s.Kind != c.kind || s.Serial != c.serial || strings.Join(files, " ") != strings.Join(c.files, " ") {
			t.Errorf("%s: got %s serial %d %v, want %s serial %d %v", c.key, s.Kind, s.Serial, files, c.kind, c.serial, c.files)
		}
	}
	if _, err := resolver.Show(ctx, resolver.Cache{Dir: t.TempDir()}, l, "a-1.0", resolver.ShowOptions{Now: now}); err == nil || !strings.Contains(err.Error(), "poison resolve") {
		t.Errorf("show without a cache: %v", err)
	}
}
