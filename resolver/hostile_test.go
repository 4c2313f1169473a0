package resolver_test

import (
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/resolver"
	"github.com/poison-nix/poison/resolver/internal/regtest"
)

// hostileOpts are the options of the hostile-server tests: short
// timeouts, so that a hang would show as a test far over its budget.
func (w *world) hostileOpts(url string, stall time.Duration) resolver.Options {
	o := w.opts(url)
	o.Network.StallTimeout = stall
	o.Network.ConnectTimeout = stall
	return o
}

// within runs f and fails the test when it takes longer than limit.
func within(t *testing.T, limit time.Duration, what string, f func() error) error {
	t.Helper()
	start := time.Now()
	err := f()
	if el := time.Since(start); el > limit {
		t.Errorf("%s took %s, more than %s", what, el.Round(time.Millisecond), limit)
	}
	return err
}

// TestHostileServers fetches from real servers on 127.0.0.1 that
// misbehave: each fetch fails within its timeout (plus a small margin)
// with one line naming the URL and the timeout, keeps the previous lock,
// and an offline resolve of the same URL alongside a hanging online one
// returns at once from the last complete fetch.
func TestHostileServers(t *testing.T) {
	w := newWorld(t, baseEntries())
	h, err := regtest.StartHostile(w.root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	url := h.Repo("reg.git")
	ctx := context.Background()
	proj := t.TempDir()
	lockPath := filepath.Join(proj, "poison.lock")
	const stall = 2 * time.Second

	// A healthy fetch first: the cache and the lock hold the commit.
	if _, _, err := resolver.Update(ctx, resolver.UpdateOptions{Options: w.hostileOpts(url, stall), LockPath: lockPath}); err != nil {
		t.Fatalf("healthy resolve: %v", err)
	}
	good, err := os.ReadFile(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	pinned := w.repo.Head()
	// A new commit the hostile server will never deliver.
	w.repo.AddEntry("c", regtest.Entry("c-3.0", "third"))
	w.push(false)

	checkFailure := func(t *testing.T, err error, wantTimeout bool) {
		t.Helper()
		if err == nil {
			t.Fatal("resolve succeeded")
		}
		var fe *resolver.FetchError
		if !errors.As(err, &fe) {
			t.Fatalf("error %v (%T) is not a FetchError", err, err)
		}
		if resolver.IsTimeout(err) != wantTimeout {
			t.Errorf("IsTimeout(%v) = %v", err, !wantTimeout)
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "127.0.0.1") {
			t.Errorf("message %q: want one line naming the server", msg)
		}
		if got, _ := os.ReadFile(lockPath); string(got) != string(good) {
			t.Errorf("the lock changed after a failed resolve")
		}
	}

	t.Run("stall after headers, offline alongside", func(t *testing.T) {
		h.SetMode(regtest.Stall)
		defer h.SetMode(regtest.Good)
		var wg sync.WaitGroup
		var onlineErr error
		var onlineTook time.Duration
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, _, onlineErr = resolver.Update(ctx, resolver.UpdateOptions{Options: w.hostileOpts(url, stall), LockPath: lockPath})
			onlineTook = time.Since(start)
		}()
		time.Sleep(500 * time.Millisecond) // the online resolve is now waiting on the server
		// Offline, same URL, same lock file: neither the fetch lock nor the
		// project's lock is held up by the stalled fetch.
		o := w.hostileOpts(url, stall)
		o.Offline = true
		var res *resolver.Result
		err := within(t, 2*time.Second, "offline resolve beside a stalled fetch", func() error {
			var err error
			res, _, err = resolver.Update(ctx, resolver.UpdateOptions{Options: o, LockPath: lockPath})
			return err
		})
		if err != nil {
			t.Fatalf("offline resolve: %v", err)
		}
		if res.Pinned.Commit != pinned {
			t.Errorf("offline pinned %s, want the cached %s", res.Pinned.Commit, pinned)
		}
		wg.Wait()
		checkFailure(t, onlineErr, true)
		if onlineTook > stall+5*time.Second || onlineTook < stall {
			t.Errorf("stalled resolve ended after %s; want within [%s, %s]", onlineTook, stall, stall+5*time.Second)
		}
		if !strings.Contains(onlineErr.Error(), "stall timeout") {
			t.Errorf("error %q does not name the stall timeout", onlineErr)
		}
	})

	t.Run("closes mid-pack", func(t *testing.T) {
		h.SetMode(regtest.CutPack)
		defer h.SetMode(regtest.Good)
		err := within(t, 10*time.Second, "resolve from a server closing mid-pack", func() error {
			_, _, err := resolver.Update(ctx, resolver.UpdateOptions{Options: w.hostileOpts(url, stall), LockPath: lockPath})
			return err
		})
		checkFailure(t, err, false)
	})

	t.Run("healthy again", func(t *testing.T) {
		res, _, err := resolver.Update(ctx, resolver.UpdateOptions{Options: w.hostileOpts(url, stall), LockPath: lockPath})
		if err != nil {
			t.Fatalf("resolve after the failures: %v", err)
		}
		if res.Pinned.Commit != w.repo.Head() || res.Recloned {
			t.Errorf("pinned %s (recloned %v), want %s from the same cache", res.Pinned.Commit, res.Recloned, w.repo.Head())
		}
		l, err := lock.ReadFile(lockPath)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := marshal(t, l), marshal(t, w.wantLock(url, "main")); got != want {
			t.Errorf("lock:\n%s\nwant:\n%s", got, want)
		}
	})
}

// TestSilentServers points git:// and ssh:// at a listener that accepts
// and never answers, and http:// at a port whose connection attempts
// hang: each resolve fails after its timeout, saying which.
func TestSilentServers(t *testing.T) {
	w := newWorld(t, baseEntries())
	s, err := regtest.StartSilent()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	u, err := regtest.StartUnreachable()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	const timeout = time.Second
	cases := []struct {
		name, url, want string
	}{
		{"git never answers", "git://" + s.Addr + "/reg.git", "stall timeout"},
		{"ssh never greets", "ssh://git@" + s.Addr + "/reg.git", "stall timeout"},
		{"https never answers", "https://" + s.Addr + "/reg.git", "timeout"},
		{"http connect hangs", "http://" + u.Addr + "/reg.git", "connect timeout"},
		{"git connect hangs", "git://" + u.Addr + "/reg.git", "connect timeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := w.hostileOpts(c.url, timeout)
			o.Network.Home = t.TempDir()
			o.Network.SSHKey = writeKey(t)
			err := within(t, timeout+5*time.Second, c.name, func() error {
				_, err := resolver.Resolve(context.Background(), o)
				return err
			})
			if err == nil {
				t.Fatal("resolve succeeded")
			}
			if !resolver.IsTimeout(err) {
				t.Errorf("error %v is not a timeout", err)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.url) {
				t.Errorf("error %q: want the URL and %q", err, c.want)
			}
		})
	}
}

// writeKey writes a fresh unencrypted ed25519 private key in OpenSSH
// format and returns its path.
func writeKey(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(p, pem.EncodeToMemory(b), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
