package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/registry/lock"
)

// binaryCache is a real Nix binary cache made with nix copy --to file://,
// signed with a key from nix-store --generate-binary-cache-key, and served
// over HTTP on 127.0.0.1.
type binaryCache struct {
	dir, url, publicKey string
}

func newBinaryCache(t *testing.T, paths []string) *binaryCache {
	t.Helper()
	work := t.TempDir()
	c := &binaryCache{dir: filepath.Join(work, "cache")}
	sk, pk := filepath.Join(work, "sk"), filepath.Join(work, "pk")
	nixtest.Output(t, "nix-store", "--generate-binary-cache-key", "poison-test-1", sk, pk)
	pub, err := os.ReadFile(pk)
	if err != nil {
		t.Fatal(err)
	}
	c.publicKey = strings.TrimSpace(string(pub))
	nixtest.Output(t, "nix", append([]string{"--extra-experimental-features", "nix-command", "copy",
		"--to", "file://" + c.dir + "?secret-key=" + sk}, paths...)...)
	srv := httptest.NewServer(http.FileServer(http.Dir(c.dir)))
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

// substitute realises paths in a fresh store (local?root=) with the cache
// as its only substituter, signatures required, and a fresh Nix cache
// directory unless cacheHome is given (then narinfo lookups made before
// are remembered). It returns the error and output of nix-store.
func (c *binaryCache) substitute(t *testing.T, cacheHome string, args ...string) (string, error) {
	t.Helper()
	root := t.TempDir()
	if cacheHome == "" {
		cacheHome = t.TempDir()
	}
	cmd := nixtest.Command("nix-store", append([]string{"--store", "local?root=" + root, "--realise",
		"--option", "substituters", c.url, "--option", "trusted-public-keys", c.publicKey,
		"--option", "require-sigs", "true"}, args...)...)
	cmd.Env = append(cmd.Env, "XDG_CACHE_HOME="+cacheHome)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func cacheTreeHash(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		line := rel + " " + d.Type().String()
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			line += " " + hex.EncodeToString(sum[:])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:])
}

// TestQuarantineRealCache quarantines a poisoned output (by output path)
// and a poisoned derivation's outputs (by Deriver) in a real signed cache
// and substitutes from it over HTTP into fresh stores: before, everything
// substitutes; after, the poisoned paths do not (only a build makes them)
// while the rest still does; after --restore they substitute again and
// the cache is byte-identical. A client that looked a path up before the
// quarantine still gets it (narinfo-cache-positive-ttl): the documented
// limit.
func TestQuarantineRealCache(t *testing.T) {
	nixtest.Need(t)
	file := filepath.Join(daemontest.RepoRoot(t), "testdata", "provenance", "wide.nix")
	nonce := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	drvs := strings.Fields(nixtest.Output(t, "nix-instantiate", file, "--argstr", "nonce", nonce, "--arg", "n", "2", "--argstr", "sleep", "0"))
	outs := strings.Fields(nixtest.Output(t, "nix-store", append([]string{"--realise"}, drvs...)...))
	// drvs: leaf-0, leaf-1, split; outs: leaf-0, leaf-1, split, split-dev
	if len(drvs) != 3 || len(outs) != 4 {
		t.Fatalf("built %q from %q", outs, drvs)
	}
	poisonedOut, clean, splitDrv := outs[0], outs[1], drvs[2]
	splitOuts := outs[2:]
	cache := newBinaryCache(t, outs)

	dir := t.TempDir()
	lk := lock.New(lock.Source{URL: "file:///registry", Commit: strings.Repeat("c", 40)}, lock.DefaultEnv)
	lk.Outputs[filepath.Base(poisonedOut)] = 1
	lk.Derivations[filepath.Base(splitDrv)] = 1
	lockPath := filepath.Join(dir, "poison.lock")
	if err := lk.WriteFile(lockPath); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }, now: time.Now, dir: dir}
	poison := func(args ...string) int {
		stdout.Reset()
		stderr.Reset()
		return run(args, e)
	}

	// Before: the poisoned paths substitute; check --cache sees them.
	remembered := t.TempDir()
	if out, err := cache.substitute(t, remembered, poisonedOut); err != nil {
		t.Fatalf("before quarantine, %s did not substitute: %v\n%s", poisonedOut, err, out)
	}
	for _, uri := range []string{"file://" + cache.dir, cache.url} {
		if code := poison("check", "--cache", uri); code != checkStale {
			t.Errorf("check --cache %s before: exit %d, want %d\n%s%s", uri, code, checkStale, stdout.String(), stderr.String())
		}
	}
	if n := strings.Count(stdout.String(), "served "); n != 1 { // over HTTP: by output path only
		t.Errorf("check --cache over HTTP listed %d paths, want 1:\n%s", n, stdout.String())
	}
	before := cacheTreeHash(t, cache.dir)

	if code := poison("quarantine", "--cache", "file://"+cache.dir, "--dry-run"); code != 0 || cacheTreeHash(t, cache.dir) != before {
		t.Fatalf("quarantine --dry-run: exit %d, cache changed %v\n%s", code, cacheTreeHash(t, cache.dir) != before, stderr.String())
	}
	if code := poison("quarantine", "--cache", "file://"+cache.dir); code != 0 {
		t.Fatalf("quarantine: exit %d\n%s", code, stderr.String())
	}
	for _, p := range append([]string{poisonedOut}, splitOuts...) {
		if !strings.Contains(stdout.String(), "quarantined "+p+": ") {
			t.Errorf("quarantine did not report %s:\n%s", p, stdout.String())
		}
	}
	if strings.Contains(stdout.String(), clean) {
		t.Errorf("quarantine moved the clean path %s", clean)
	}

	// After: fresh clients cannot substitute the poisoned paths, still get the others.
	for _, p := range append([]string{poisonedOut}, splitOuts...) {
		if out, err := cache.substitute(t, "", p); err == nil {
			t.Errorf("after quarantine %s still substitutes:\n%s", p, out)
		}
	}
	if out, err := cache.substitute(t, "", clean); err != nil {
		t.Errorf("after quarantine the clean %s no longer substitutes: %v\n%s", clean, err, out)
	}
	// Only a build makes the poisoned output: building its .drv in a fresh
	// store runs the builder (a build log appears).
	root := t.TempDir()
	build := nixtest.Command("nix-build", "--store", "local?root="+root, "--no-out-link", file, "--argstr", "nonce", nonce, "--arg", "n", "2", "--argstr", "sleep", "0",
		"--option", "substituters", cache.url, "--option", "trusted-public-keys", cache.publicKey, "--option", "require-sigs", "true",
		"--option", "sandbox-paths", "/bin /lib /lib64 /usr") // a chroot store builds in a sandbox; Debian's /bin/sh is dynamic
	build.Env = append(build.Env, "XDG_CACHE_HOME="+t.TempDir())
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building in a fresh store: %v\n%s", err, out)
	}
	logs, _ := filepath.Glob(filepath.Join(root, "nix/var/log/nix/drvs/*/*"))
	var built []string
	for _, l := range logs {
		built = append(built, strings.TrimSuffix(filepath.Base(filepath.Dir(l))+filepath.Base(l), ".bz2"))
	}
	sort.Strings(built)
	want := []string{filepath.Base(drvs[0]), filepath.Base(splitDrv)}
	sort.Strings(want)
	if strings.Join(built, " ") != strings.Join(want, " ") {
		t.Errorf("the fresh store built %q, want exactly the quarantined %q (the rest substituted)", built, want)
	}
	// The documented limit: a client that looked the path up before still
	// has the narinfo in its disk cache, and the NAR is still there.
	if out, err := cache.substitute(t, remembered, poisonedOut); err != nil {
		t.Logf("a client with a remembered narinfo could not substitute (limit not observed): %v\n%s", err, out)
	} else {
		t.Logf("as documented, a client that looked %s up before the quarantine still substitutes it", poisonedOut)
	}

	if code := poison("check", "--cache", "file://"+cache.dir); code != 0 {
		t.Errorf("check --cache after quarantine: exit %d\n%s", code, stdout.String())
	}
	if code := poison("quarantine", "--cache", "file://"+cache.dir); code != 0 || strings.Contains(stdout.String(), "quarantined ") {
		t.Errorf("second quarantine: exit %d, moved:\n%s", code, stdout.String())
	}

	if code := poison("quarantine", "--cache", "file://"+cache.dir, "--restore"); code != 0 {
		t.Fatalf("restore: exit %d\n%s", code, stderr.String())
	}
	if n := strings.Count(stdout.String(), "restored "); n != 3 {
		t.Errorf("restore reported %d narinfos, want 3:\n%s", n, stdout.String())
	}
	if cacheTreeHash(t, cache.dir) != before {
		t.Error("after --restore the cache is not byte-identical")
	}
	if out, err := cache.substitute(t, "", poisonedOut); err != nil {
		t.Errorf("after restore %s does not substitute: %v\n%s", poisonedOut, err, out)
	}
}
