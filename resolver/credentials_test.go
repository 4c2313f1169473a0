package resolver_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/resolver"
	"github.com/poison-nix/poison/resolver/internal/regtest"
)

// trustServer makes the world's resolves trust the test server's
// certificate (per call: nothing global changes).
func (w *world) trustServer(srv *regtest.HTTP) {
	w.tls = srv.Client().Transport.(*http.Transport).TLSClientConfig
}

// withCredentials puts user:password@ into the URL of srv's repository.
func withCredentials(srv *regtest.HTTP, userinfo, name string) string {
	u := srv.URL(name)
	i := strings.Index(u, "://") + 3
	return u[:i] + userinfo + "@" + u[i:]
}

// noSecret fails the test when secret appears in any file name or file
// content under dir.
func noSecret(t *testing.T, dir, secret string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		if strings.Contains(p, secret) {
			t.Errorf("file name %s holds the secret", p)
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("file %s holds the secret", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("nothing to check under %s", dir)
	}
}

// TestCredentials resolves a registry served by git http-backend behind
// HTTPS basic authentication with the credentials in the URL, as teams give
// GitLab and GitHub tokens: the fetch uses them, and they appear nowhere
// the resolver writes or says: poison.lock, poison.nix, the cache (file
// names and contents), the messages the CLI prints.
func TestCredentials(t *testing.T) {
	cases := []struct {
		name, user, password, userinfo, secret string
	}{
		{"user and token", "oauth2", "glpat-SECRET1", "oauth2:glpat-SECRET1", "glpat-SECRET1"},
		{"token as user", "ghp_SECRET2", "", "ghp_SECRET2", "ghp_SECRET2"},
		{"escaped token", "x-access-token", "ghs/SECRET3@", "x-access-token:ghs%2FSECRET3%40", "SECRET3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			testCredentials(t, c.user, c.password, c.userinfo, c.secret)
		})
	}
}

func testCredentials(t *testing.T, user, password, userinfo, secret string) {
	w := newWorld(t, baseEntries())
	srv := regtest.StartHTTPAuth(t, w.root, user, password, true)
	w.trustServer(srv)
	ctx := context.Background()
	full := withCredentials(srv, userinfo, "reg.git")
	plain := srv.URL("reg.git")
	if !strings.HasPrefix(plain, "https://127.0.0.1:") {
		t.Fatalf("server URL %s", plain)
	}
	proj := t.TempDir()
	lockPath, nixPath := filepath.Join(proj, "poison.lock"), filepath.Join(proj, "poison.nix")
	uo := resolver.UpdateOptions{Options: w.opts(full), LockPath: lockPath, NixPath: nixPath}

	// Without credentials the server refuses: the check is real.
	if _, _, err := resolver.Update(ctx, resolver.UpdateOptions{Options: w.opts(plain), LockPath: lockPath}); err == nil {
		t.Fatal("resolve without credentials succeeded")
	}

	res, _, err := resolver.Update(ctx, uo)
	if err != nil {
		t.Fatalf("resolve with credentials: %v", err)
	}
	l, err := res.LockFile()
	if err != nil {
		t.Fatal(err)
	}
	// What the CLI prints after a resolve: the pinned URL and source.
	if res.Pinned.URL != plain || l.Registry.URL != plain || res.Source.URL != plain {
		t.Errorf("recorded %q / %q / %q, want %q", res.Pinned.URL, l.Registry.URL, res.Source.URL, plain)
	}
	if got, want := marshal(t, l), marshal(t, w.wantLock(plain, "main")); got != want {
		t.Errorf("lock:\n%s\nwant:\n%s", got, want)
	}
	onDisk, err := lock.ReadFile(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	if onDisk.Registry.URL != plain {
		t.Errorf("poison.lock records %q", onDisk.Registry.URL)
	}
	nix, _ := os.ReadFile(nixPath)
	if !bytes.Contains(nix, []byte(`"`+plain+`"`)) {
		t.Errorf("poison.nix does not record %s:\n%s", plain, nix)
	}
	noSecret(t, proj, secret)
	noSecret(t, w.cache.Dir, secret)

	// Freshness: the lock (redacted URL) finds the fetch in the cache.
	f := resolver.CheckFreshness(w.cache, onDisk, time.Hour, now.Add(2*time.Minute))
	if f.LastFetch != now || f.Stale() || f.URL != plain {
		t.Errorf("freshness of the lock: %+v", f)
	}
	if d := f.Describe("poison.lock"); strings.Contains(d, secret) || !strings.Contains(d, plain+" (main)") || !strings.Contains(d, "fetched 2m ago") {
		t.Errorf("Describe: %s", d)
	}
	if w := resolver.CheckFreshness(w.cache, onDisk, time.Minute, now.Add(time.Hour)).Warning(); w == "" || strings.Contains(w, secret) {
		t.Errorf("Warning: %q", w)
	}
	// show reads the registry from the cache with the redacted URL.
	sh, err := resolver.Show(ctx, w.cache, onDisk, filepath.Base(regtest.Drv("b-2.0")), resolver.ShowOptions{Now: now})
	if err != nil || sh.Serial != 2 || len(sh.Entries) != 2 {
		t.Errorf("show: %+v, %v", sh, err)
	}

	// Again, with nothing new: unchanged, served by the same cache.
	res, _, err = resolver.Update(ctx, uo)
	if err != nil || !res.Unchanged {
		t.Fatalf("second resolve: unchanged=%v, %v", res != nil && res.Unchanged, err)
	}
	// Offline from the cache of the credentialed URL.
	off := uo
	off.Offline = true
	if _, _, err := resolver.Update(ctx, off); err != nil {
		t.Errorf("offline: %v", err)
	}

	// A new entry is fetched with the credentials too.
	w.repo.AddEntry("c", regtest.Entry("c-3", "new"))
	w.push(false)
	if res, _, err = resolver.Update(ctx, uo); err != nil || res.Pinned.Commit != w.repo.Head() {
		t.Fatalf("resolve of a new commit: %v", err)
	}
	noSecret(t, proj, secret)
	noSecret(t, w.cache.Dir, secret)
	good, _ := os.ReadFile(lockPath)

	// A wrong password (or token) fails closed, in one line, without it.
	wrongs := []string{"oauth2:WRONGPASS", "WRONGPASS", user + ":WRONGPASS"}
	for _, wrong := range wrongs {
		bad := uo
		bad.Registry = withCredentials(srv, wrong, "reg.git")
		_, _, err := resolver.Update(ctx, bad)
		var fe *resolver.FetchError
		if !errors.As(err, &fe) {
			t.Fatalf("wrong credentials %s: err = %v, want a FetchError", wrong, err)
		}
		msg := err.Error()
		if strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, secret) || strings.Contains(msg, "\n") {
			t.Errorf("wrong credentials %s: %q", wrong, msg)
		}
		if !strings.HasPrefix(msg, "fetch registry "+plain+": ") || !strings.Contains(msg, "authentication required") {
			t.Errorf("wrong credentials %s: %q", wrong, msg)
		}
		if b, _ := os.ReadFile(lockPath); !bytes.Equal(b, good) {
			t.Errorf("wrong credentials %s changed the lock", wrong)
		}
	}
	// An unreachable server: the transport error names the URL, redacted.
	port := regtest.FreePort(t)
	for _, u := range []string{
		"https://" + userinfo + "@127.0.0.1:" + strconv.Itoa(port) + "/reg.git",
		"http://" + userinfo + "@127.0.0.1:" + strconv.Itoa(port) + "/reg.git",
	} {
		bad := uo
		bad.Registry = u
		_, _, err := resolver.Update(ctx, bad)
		if err == nil || strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(port)+"/reg.git") {
			t.Errorf("unreachable %s: %v", resolver.RedactURL(u), err)
		}
	}
	noSecret(t, proj, secret)
	noSecret(t, w.cache.Dir, secret)
}

// TestCredentialsLegacyLock: a lock written before the redaction holds the
// full URL. Reading it works, and the next resolve rewrites it redacted.
func TestCredentialsLegacyLock(t *testing.T) {
	w := newWorld(t, baseEntries())
	srv := regtest.StartHTTPAuth(t, w.root, "oauth2", "SECRET", false)
	ctx := context.Background()
	full, plain := withCredentials(srv, "oauth2:SECRET", "reg.git"), srv.URL("reg.git")
	proj := t.TempDir()
	lockPath := filepath.Join(proj, "poison.lock")
	old := w.wantLock(full, "main")
	if err := old.WriteFile(lockPath); err != nil {
		t.Fatal(err)
	}
	l, err := lock.ReadFile(lockPath)
	if err != nil {
		t.Fatalf("read a lock holding credentials: %v", err)
	}
	if d := resolver.CheckFreshness(w.cache, l, time.Hour, now).Describe("poison.lock"); strings.Contains(d, "SECRET") || !strings.Contains(d, plain) {
		t.Errorf("Describe: %s", d)
	}
	res, prev, err := resolver.Update(ctx, resolver.UpdateOptions{Options: w.opts(full), LockPath: lockPath})
	if err != nil {
		t.Fatal(err)
	}
	if prev == nil || res.Unchanged {
		t.Errorf("the lock was not rewritten (prev %v, unchanged %v)", prev, res.Unchanged)
	}
	b, _ := os.ReadFile(lockPath)
	if bytes.Contains(b, []byte("SECRET")) || !bytes.Contains(b, []byte(`"url": "`+plain+`"`)) {
		t.Errorf("rewritten lock:\n%s", b)
	}
	// The old lock, read after the fetch, finds it.
	if f := resolver.CheckFreshness(w.cache, l, time.Hour, now.Add(time.Minute)); f.LastFetch != now {
		t.Errorf("freshness of the old lock: %+v", f)
	}
	if sh, err := resolver.Show(ctx, w.cache, l, "b-2.0", resolver.ShowOptions{Now: now}); err != nil || sh.Serial != 2 {
		t.Errorf("show with the old lock: %+v, %v", sh, err)
	}
}

// TestQueryCredentials resolves registry URLs with a token in the query
// and the fragment (GitLab's ?private_token=). Git's smart HTTP appends
// /info/refs to the URL, so such a URL does not fetch (with git either);
// what matters is that the failure message, the cache and the project
// hold the token redacted.
func TestQueryCredentials(t *testing.T) {
	w := newWorld(t, baseEntries())
	srv := regtest.StartHTTP(t, w.root)
	const secret = "glpat-QUERYSECRET"
	proj := t.TempDir()
	lockPath := filepath.Join(proj, "poison.lock")
	for _, url := range []string{
		srv.URL("reg.git") + "?private_token=" + secret + "#frag-" + secret,
		"http://127.0.0.1:1/reg.git?private_token=" + secret,
		"https://oauth2:" + secret + "@127.0.0.1:1/reg.git#" + secret,
	} {
		_, _, err := resolver.Update(context.Background(), resolver.UpdateOptions{Options: w.opts(url), LockPath: lockPath})
		if err == nil {
			t.Fatalf("resolve %s succeeded", resolver.RedactURL(url))
		}
		if msg := err.Error(); strings.Contains(msg, secret) || !strings.Contains(msg, "***") {
			t.Errorf("failure message %q", msg)
		}
	}
	noSecret(t, w.cache.Dir, secret)
	if _, err := os.Stat(lockPath); err == nil {
		t.Error("a lock was written")
	}
}
