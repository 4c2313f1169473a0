package settings_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/internal/settings"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	s, err := settings.Load(dir, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if s.Registry != "" || s.Lock != filepath.Join(dir, "poison.lock") || s.MaxAge != settings.DefaultMaxAge || s.CacheDir != "" || s.Origin("lock") != "default" {
		t.Errorf("defaults: %+v", s)
	}

	os.WriteFile(filepath.Join(dir, "poison.toml"), []byte("registry = \"reg\"\nref = \"stable\"\nlock = \"l/p.lock\"\nmax-age = \"2d\"\ntrusted-keys = \"keys\"\nother-tool = 1\n"), 0o644)
	env["HOME"] = "/home/u"
	s, err = settings.Load(dir, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if s.Registry != filepath.Join(dir, "reg") || s.Ref != "stable" || s.Lock != filepath.Join(dir, "l/p.lock") ||
		s.MaxAge != 48*time.Hour || s.TrustedKeys != filepath.Join(dir, "keys") || s.CacheDir != "/home/u/.cache/poison" || s.Offline {
		t.Errorf("poison.toml: %+v", s)
	}
	if o := s.Origin("lock"); o != filepath.Join(dir, "poison.toml") {
		t.Errorf("origin of lock: %q", o)
	}

	env["POISON_REGISTRY"] = "https://example.com/reg.git"
	env["POISON_LOCK"] = "other.lock"
	env["POISON_MAX_AGE"] = "90m"
	env["POISON_OFFLINE"] = "1"
	env["XDG_CACHE_HOME"] = "/xdg"
	s, err = settings.Load(dir, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if s.Registry != "https://example.com/reg.git" || s.Lock != filepath.Join(dir, "other.lock") || s.MaxAge != 90*time.Minute || !s.Offline || s.CacheDir != "/xdg/poison" || s.Ref != "stable" {
		t.Errorf("environment over poison.toml: %+v", s)
	}
	if s.Origin("lock") != "POISON_LOCK" || s.Origin("ref") == "POISON_REF" {
		t.Errorf("origins: lock %q, ref %q", s.Origin("lock"), s.Origin("ref"))
	}
	env["POISON_CACHE_DIR"] = "/c"
	if s, _ = settings.Load(dir, getenv); s.CacheDir != "/c" {
		t.Errorf("POISON_CACHE_DIR: %q", s.CacheDir)
	}
	env["POISON_REGISTRY"] = "git@example.com:reg.git"
	if s, _ = settings.Load(dir, getenv); s.Registry != "git@example.com:reg.git" {
		t.Errorf("scp-like registry: %q", s.Registry)
	}

	for _, bad := range []struct{ file, env, want string }{
		{"max-age = \"soon\"\n", "", "max-age"},
		{"registry = [\n", "", "poison.toml:"},
		{"offline = 1\n", "", "offline: want true or false"},
		{"lock = true\n", "", "lock: want a string"},
		{"", "POISON_MAX_AGE=-1h", "POISON_MAX_AGE"},
		{"", "POISON_OFFLINE=maybe", "POISON_OFFLINE"},
	} {
		os.WriteFile(filepath.Join(dir, "poison.toml"), []byte(bad.file), 0o644)
		env = map[string]string{}
		if k, v, ok := strings.Cut(bad.env, "="); ok {
			env[k] = v
		}
		if _, err := settings.Load(dir, getenv); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q %q: err = %v, want %q", bad.file, bad.env, err, bad.want)
		}
	}
}

// TestFlags: a registered flag beats the environment; unregistered
// settings still come from the environment; a bad flag value fails the
// parse.
func TestFlags(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"POISON_LOCK": "env.lock", "POISON_REF": "envref", "POISON_MAX_AGE": "1h"}
	getenv := func(k string) string { return env[k] }
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	sf := settings.Register(fs, "lock", "offline", "max-age")
	if err := fs.Parse([]string{"--lock", "flag.lock", "--offline"}); err != nil {
		t.Fatal(err)
	}
	s, err := sf.Load(dir, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if s.Lock != filepath.Join(dir, "flag.lock") || !s.Offline || s.Ref != "envref" || s.MaxAge != time.Hour || s.Origin("lock") != "--lock" {
		t.Errorf("flags: %+v (lock from %s)", s, s.Origin("lock"))
	}
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	settings.Register(fs, "max-age")
	if err := fs.Parse([]string{"--max-age", "soon"}); err == nil || !strings.Contains(err.Error(), "invalid duration") {
		t.Errorf("--max-age soon: %v", err)
	}
}

// TestTable: every row is complete, and every setting has a field (Load
// would panic otherwise).
func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for _, st := range settings.Table {
		if st.Name == "" || st.Env == "" || st.Usage == "" || st.Default == "" || seen[st.Name] {
			t.Errorf("incomplete or duplicate row %+v", st)
		}
		if (st.Arg == "") != (st.Kind == settings.Bool) {
			t.Errorf("%s: Arg %q for kind %v", st.Name, st.Arg, st.Kind)
		}
		seen[st.Name] = true
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		settings.Register(fs, st.Name)
	}
}
