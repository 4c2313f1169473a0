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

// TestLimits: the limit settings read counts and sizes (K/M/G/T suffixes)
// from each source in order flag > environment > poison.toml > default,
// and refuse what is not a positive number, naming the source.
func TestLimits(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	s, err := settings.Load(dir, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxEntries != 0 || s.MaxTreeDepth != 0 || s.MaxEntrySize != 0 || s.MaxTreeSize != 0 || s.MaxRegistryBytes != 0 || s.Origin("max-entries") != "default" {
		t.Errorf("defaults: %+v", s)
	}
	toml := "max-entries = 5000000\nmax-tree-depth = \"80\"\nmax-entry-size = \"1M\"\nmax-tree-size = 1048576\nmax-registry-bytes = \"8G\"\n"
	if err := os.WriteFile(filepath.Join(dir, "poison.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = settings.Load(dir, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxEntries != 5_000_000 || s.MaxTreeDepth != 80 || s.MaxEntrySize != 1<<20 || s.MaxTreeSize != 1<<20 || s.MaxRegistryBytes != 8<<30 {
		t.Errorf("poison.toml: %+v", s)
	}
	env["POISON_MAX_ENTRY_SIZE"] = "128K"
	env["POISON_MAX_ENTRIES"] = "7"
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	sf := settings.Register(fs, settings.LimitSettings...)
	if err := fs.Parse([]string{"--max-entries", "9", "--max-registry-bytes", "1T", "--max-tree-depth", "1K"}); err != nil {
		t.Fatal(err)
	}
	s, err = sf.Load(dir, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxEntries != 9 || s.MaxEntrySize != 128<<10 || s.MaxRegistryBytes != 1<<40 || s.MaxTreeDepth != 1024 ||
		s.Origin("max-entries") != "--max-entries" || s.Origin("max-entry-size") != "POISON_MAX_ENTRY_SIZE" {
		t.Errorf("flag > env > poison.toml: %+v", s)
	}

	for _, bad := range []struct{ file, env, flag, want string }{
		{"max-entries = 0\n", "", "", "max-entries: invalid number \"0\""},
		{"max-entries = -5\n", "", "", "max-entries: invalid number"},
		{"max-entry-size = \"64KB\"\n", "", "", "max-entry-size: invalid size \"64KB\""},
		{"max-entry-size = true\n", "", "", "max-entry-size: want a string"},
		{"", "POISON_MAX_TREE_DEPTH=deep", "", "POISON_MAX_TREE_DEPTH=\"deep\": invalid number"},
		{"", "POISON_MAX_REGISTRY_BYTES=9999999999T", "", "invalid size"},
		{"", "", "--max-tree-size=1.5M", "invalid size \"1.5M\""},
		{"", "", "--max-entries=1e6", "invalid number \"1e6\""},
		{"", "", "--max-tree-depth=deep", "invalid number \"deep\""},
	} {
		os.WriteFile(filepath.Join(dir, "poison.toml"), []byte(bad.file), 0o644)
		env = map[string]string{}
		if k, v, ok := strings.Cut(bad.env, "="); ok {
			env[k] = v
		}
		var err error
		if bad.flag != "" {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(new(strings.Builder))
			settings.Register(fs, settings.LimitSettings...)
			err = fs.Parse([]string{bad.flag})
		} else {
			_, err = settings.Load(dir, getenv)
		}
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q %q %q: err = %v, want %q", bad.file, bad.env, bad.flag, err, bad.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "65536": 65536, "64K": 64 << 10, "3M": 3 << 20, "4G": 4 << 30, "2T": 2 << 40} {
		if got, err := settings.ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "K", "64k", "64KB", "64KiB", "1.5G", " 64K", "8388608T"} {
		if _, err := settings.ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
}
