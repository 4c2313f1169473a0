package resolver_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/resolver"
)

func TestLoadSettings(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	s, err := resolver.LoadSettings(dir, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if s.Registry != "" || s.Lock != filepath.Join(dir, "poison.lock") || s.MaxAge != resolver.DefaultMaxAge || s.CacheDir != "" {
		t.Errorf("defaults: %+v", s)
	}

	os.WriteFile(filepath.Join(dir, "poison.toml"), []byte("registry = \"reg\"\nref = \"stable\"\nlock = \"l/p.lock\"\nmax-age = \"2d\"\ntrusted-keys = \"keys\"\nother-tool = 1\n"), 0o644)
	env["HOME"] = "/home/u"
	s, err = resolver.LoadSettings(dir, getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := resolver.Settings{Registry: filepath.Join(dir, "reg"), Ref: "stable", Lock: filepath.Join(dir, "l/p.lock"),
		MaxAge: 48 * time.Hour, TrustedKeys: filepath.Join(dir, "keys"), CacheDir: "/home/u/.cache/poison"}
	if s != want {
		t.Errorf("poison.toml:\n got %+v\nwant %+v", s, want)
	}

	env["POISON_REGISTRY"] = "https://example.com/reg.git"
	env["POISON_LOCK"] = "other.lock"
	env["POISON_MAX_AGE"] = "90m"
	env["POISON_OFFLINE"] = "1"
	env["XDG_CACHE_HOME"] = "/xdg"
	s, err = resolver.LoadSettings(dir, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if s.Registry != "https://example.com/reg.git" || s.Lock != filepath.Join(dir, "other.lock") || s.MaxAge != 90*time.Minute || !s.Offline || s.CacheDir != "/xdg/poison" || s.Ref != "stable" {
		t.Errorf("environment over poison.toml: %+v", s)
	}
	env["POISON_CACHE_DIR"] = "/c"
	if s, _ = resolver.LoadSettings(dir, getenv); s.CacheDir != "/c" {
		t.Errorf("POISON_CACHE_DIR: %q", s.CacheDir)
	}

	for _, bad := range []struct{ file, env, want string }{
		{"max-age = \"soon\"\n", "", "max-age"},
		{"registry = [\n", "", "poison.toml:"},
		{"", "POISON_MAX_AGE=-1h", "POISON_MAX_AGE"},
		{"", "POISON_OFFLINE=maybe", "POISON_OFFLINE"},
	} {
		os.WriteFile(filepath.Join(dir, "poison.toml"), []byte(bad.file), 0o644)
		env = map[string]string{}
		if k, v, ok := strings.Cut(bad.env, "="); ok {
			env[k] = v
		}
		if _, err := resolver.LoadSettings(dir, getenv); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q %q: err = %v, want %q", bad.file, bad.env, err, bad.want)
		}
	}
}

func TestFreshness(t *testing.T) {
	w := newWorld(t, baseEntries())
	res, err := resolver.Resolve(t.Context(), w.opts(w.repo.Dir))
	if err != nil {
		t.Fatal(err)
	}
	l := res.Lock
	cases := []struct {
		name   string
		cache  resolver.Cache
		at     time.Time
		maxAge time.Duration
		warn   string
		desc   string
	}{
		{"fresh", w.cache, now.Add(time.Hour), 24 * time.Hour, "", "fetched 1h ago"},
		{"stale", w.cache, now.Add(72 * time.Hour), 24 * time.Hour, "last fetched 3d ago, more than --max-age 24h", "fetched 3d ago"},
		{"no limit", w.cache, now.Add(1000 * time.Hour), 0, "", "fetched 41d ago"},
		{"unknown", resolver.Cache{Dir: t.TempDir()}, now, time.Hour, "no record of a fetch", "never fetched on this machine"},
	}
	for _, c := range cases {
		f := resolver.CheckFreshness(c.cache, l, c.maxAge, c.at)
		if got := f.Warning(); (c.warn == "") != (got == "") || !strings.Contains(got, c.warn) {
			t.Errorf("%s: warning %q, want %q", c.name, got, c.warn)
		}
		d := f.Describe("poison.lock")
		if !strings.Contains(d, c.desc) || !strings.Contains(d, l.Registry.Commit[:12]) || !strings.HasPrefix(d, "lock poison.lock: registry "+w.repo.Dir+" (main)") {
			t.Errorf("%s: describe %q", c.name, d)
		}
	}
	if d := resolver.CheckFreshness(w.cache, lock.New(lock.Source{URL: "/x"}, "E"), 0, now).Describe("p"); !strings.Contains(d, "no commit") {
		t.Errorf("describe without commit: %q", d)
	}
}
