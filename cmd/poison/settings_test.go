package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/internal/settings"
	"github.com/poison-nix/poison/registry"
)

// settingsCommands are the commands that read a lock, each with arguments
// that make it read the lock and then stop (a .drv that is not there, a
// store that does not answer): what is checked is which lock it read.
var settingsCommands = []struct {
	name string
	args []string
}{
	{"rewrite", []string{"rewrite", "--no-write", "/nix/store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-a.drv"}},
	{"build", []string{"build", "--dry-run", "--store", "unix:///nonexistent/socket", "/nix/store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-a.drv"}},
	{"show", []string{"show", "hello"}},
	{"check", []string{"check", "--store", "unix:///nonexistent/socket", "/nix/store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-a"}},
	{"impact", []string{"impact", "--registry", "reg", "/nix/store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-a.drv"}},
	{"export", []string{"export", "nix"}},
}

// settingsSources stack the sources of a setting from the lowest up:
// each case adds one source above the previous ones, and the command must
// take the value of the highest.
var settingsSources = []struct {
	source string
	toml   string            // poison.toml content
	env    map[string]string // environment
	flags  []string          // appended after the arguments
	lock   string            // the lock the command must read
	warns  bool              // whether the freshness warning is printed
}{
	{source: "default", lock: "poison.lock", warns: true},
	{source: "poison.toml", toml: "lock = \"toml.lock\"\nmax-age = \"0\"\n", lock: "toml.lock"},
	{source: "environment", toml: "lock = \"toml.lock\"\nmax-age = \"0\"\n",
		env: map[string]string{"POISON_LOCK": "env.lock", "POISON_MAX_AGE": "7d"}, lock: "env.lock", warns: true},
	{source: "flag", toml: "lock = \"toml.lock\"\nmax-age = \"0\"\n",
		env:   map[string]string{"POISON_LOCK": "env.lock", "POISON_MAX_AGE": "7d"},
		flags: []string{"--lock", "flag.lock", "--max-age", "0"}, lock: "flag.lock"},
	{source: "flag over a relative poison.toml path", toml: "lock = \"sub/toml.lock\"\n",
		flags: []string{"--lock=sub/flag.lock"}, lock: "sub/flag.lock", warns: true},
	{source: "poison.toml relative to its directory", toml: "lock = \"sub/toml.lock\"\n", lock: "sub/toml.lock", warns: true},
}

// TestSettingsEveryCommand runs every command that reads a lock with the
// lock and max-age set by each source in turn (flag > environment >
// poison.toml > default) and checks, from the line each command prints
// about the lock it uses, that it read the lock the highest source names.
// A command with a hard-coded default (build once read poison.lock
// whatever poison.toml said) fails here.
func TestSettingsEveryCommand(t *testing.T) {
	base := t.TempDir()
	if code, _, stderr := runPoisonEnv(t, base, nil, "init", "reg"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	for i, l := range []string{"poison.lock", "toml.lock", "env.lock", "flag.lock", "sub/toml.lock", "sub/flag.lock"} {
		os.MkdirAll(filepath.Join(base, "sub"), 0o755)
		lk := fmt.Sprintf(`{"version":1,"registry":{"url":"file:///srv/registry","ref":"main","commit":"%s"},"env":"POISON_SERIAL","derivations":{},"outputs":{},"names":{}}`,
			strings.Repeat(fmt.Sprintf("%02x", i+1), 20))
		if err := os.WriteFile(filepath.Join(base, l), []byte(lk), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range settingsCommands {
		for _, src := range settingsSources {
			t.Run(c.name+"/"+src.source, func(t *testing.T) {
				toml := filepath.Join(base, "poison.toml")
				os.Remove(toml)
				if src.toml != "" {
					if err := os.WriteFile(toml, []byte(src.toml), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				env := map[string]string{"POISON_CACHE_DIR": filepath.Join(base, "cache")}
				for k, v := range src.env {
					env[k] = v
				}
				args := append(append([]string{}, c.args...), src.flags...)
				_, _, stderr := runPoisonEnv(t, base, env, args...)
				want := regexp.MustCompile(`(?m)^poison: lock ` + regexp.QuoteMeta(src.lock) + `: registry `)
				if !want.MatchString(stderr) {
					t.Errorf("poison %s did not read %s (set by %s):\n%s", strings.Join(args, " "), src.lock, src.source, stderr)
				}
				if got := strings.Contains(stderr, "poison: warning: no record of a fetch"); got != src.warns {
					t.Errorf("poison %s: freshness warning %v, want %v (max-age from %s):\n%s", strings.Join(args, " "), got, src.warns, src.source, stderr)
				}
			})
		}
	}
}

// TestSettingsBadValues: a bad value names its source; a bad flag value
// is a usage error.
func TestSettingsBadValues(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		toml string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{toml: "max-age = \"soon\"\n", args: []string{"show", "x"}, code: 1, want: `poison: error: .*poison.toml: max-age: invalid duration "soon"`},
		{toml: "lock = 3\n", args: []string{"build", "x.drv"}, code: 1, want: `poison: error: .*poison.toml: lock: want a string`},
		{toml: "offline = \"yes\"\n", args: []string{"resolve"}, code: 1, want: `poison: error: .*poison.toml: offline: want true or false`},
		{toml: "registry = [\n", args: []string{"check", "x"}, code: 1, want: `poison: error: .*poison.toml:\d+:\d+: `},
		{env: map[string]string{"POISON_MAX_AGE": "-1h"}, args: []string{"rewrite", "x.drv"}, code: 1, want: `poison: error: POISON_MAX_AGE="-1h": invalid duration`},
		{env: map[string]string{"POISON_OFFLINE": "maybe"}, args: []string{"resolve"}, code: 1, want: `poison: error: POISON_OFFLINE="maybe": want true or false`},
		{args: []string{"impact", "x.drv", "--max-age", "soon"}, code: 2, want: `poison: error: impact: invalid value "soon" for flag --max-age: invalid duration`},
	} {
		os.Remove(filepath.Join(dir, "poison.toml"))
		if c.toml != "" {
			os.WriteFile(filepath.Join(dir, "poison.toml"), []byte(c.toml), 0o644)
		}
		code, _, stderr := runPoisonEnv(t, dir, c.env, c.args...)
		if code != c.code || !regexp.MustCompile(`(?m)^`+c.want).MatchString(stderr) {
			t.Errorf("poison %s (poison.toml %q, env %v): exit %d, want %d and %q:\n%s", strings.Join(c.args, " "), c.toml, c.env, code, c.code, c.want, stderr)
		}
	}
}

// TestSettingsRegistryDir: add, lint, impact and hooks install take the
// registry work tree from the registry setting when it names a directory.
func TestSettingsRegistryDir(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := runPoisonEnv(t, dir, nil, "init", "reg"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	lint := func(env map[string]string, args ...string) (int, string) {
		code, _, stderr := runPoisonEnv(t, dir, env, append([]string{"lint"}, args...)...)
		return code, stderr
	}
	if code, stderr := lint(nil); code != 1 || !strings.Contains(stderr, "registry.toml") {
		t.Errorf("lint in a directory that is no registry: exit %d\n%s", code, stderr)
	}
	os.WriteFile(filepath.Join(dir, "poison.toml"), []byte("registry = \"reg\"\n"), 0o644)
	if code, stderr := lint(nil); code != 0 {
		t.Errorf("lint with registry = \"reg\" in poison.toml: exit %d\n%s", code, stderr)
	}
	if code, stderr := lint(map[string]string{"POISON_REGISTRY": "nowhere"}); code == 0 || !strings.Contains(stderr, "nowhere") {
		t.Errorf("lint with POISON_REGISTRY=nowhere over poison.toml: exit %d\n%s", code, stderr)
	}
	if code, stderr := lint(map[string]string{"POISON_REGISTRY": "nowhere"}, "--registry", "reg"); code != 0 {
		t.Errorf("lint --registry reg over POISON_REGISTRY: exit %d\n%s", code, stderr)
	}
	// A URL is the consumers' registry, not a work tree: the working
	// directory is linted.
	os.WriteFile(filepath.Join(dir, "reg", "poison.toml"), []byte("registry = \"https://example.com/reg.git\"\n"), 0o644)
	if code, _, stderr := runPoisonEnv(t, filepath.Join(dir, "reg"), nil, "lint"); code != 0 {
		t.Errorf("lint in the registry with a URL in poison.toml: exit %d\n%s", code, stderr)
	}
}

// runPoisonEnv runs the CLI in-process in dir with exactly the given
// environment and returns exit code, stdout and stderr.
func runPoisonEnv(t *testing.T, dir string, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, dir: dir,
		getenv: func(k string) string {
			if v, ok := vars[k]; ok {
				return v
			}
			switch k {
			case "HOME", "PATH", "NIX_CONFIG", "NIX_REMOTE", "NIX_STORE_DIR":
				return os.Getenv(k)
			}
			return ""
		},
		now: func() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }}
	code := run(args, e)
	return code, out.String(), errb.String()
}

// TestSettingsLimits: the registry limits come from flag, environment or
// poison.toml like every setting; resolve, lint of a commit and lint of
// the work tree refuse a registry over one in one line naming the setting
// that raises it, and a higher value from a higher source lets it through.
func TestSettingsLimits(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := runPoisonEnv(t, dir, nil, "init", "--ci", "none", "reg"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	entry := "reason = \"a reason long enough to make this entry larger than registry.toml\"\nauthor = \"A <a@example.com>\"\ndate = 2026-11-01\nnames = [\"openssl-3.0.13\"]\n"
	os.MkdirAll(filepath.Join(dir, "reg", "entries", "2026", "11"), 0o755)
	os.WriteFile(filepath.Join(dir, "reg", "entries", "2026", "11", "e.toml"), []byte(entry), 0o644)
	for _, args := range [][]string{{"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "e"}} {
		cmd := exec.Command("git", append([]string{"-C", filepath.Join(dir, "reg")}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	commands := map[string][]string{
		"resolve":    {"resolve", "--registry", "reg", "--lock", "l.lock"},
		"lint --rev": {"lint", "--registry", "reg", "--rev", "HEAD"},
		"lint":       {"lint", "--registry", "reg"},
	}
	for _, c := range []struct {
		name    string
		cmds    []string // keys of commands
		toml    string
		env     map[string]string
		flags   []string
		setting string // "" when the registry must pass
	}{
		{name: "entries flag", cmds: []string{"resolve", "lint --rev", "lint"}, flags: []string{"--max-entries", "3"}, setting: "max-entries"},
		{name: "depth env", cmds: []string{"resolve", "lint --rev", "lint"}, env: map[string]string{"POISON_MAX_TREE_DEPTH": "1"}, setting: "max-tree-depth"},
		{name: "entry size poison.toml", cmds: []string{"resolve", "lint --rev", "lint"}, toml: "max-entry-size = \"128\"\n", setting: "max-entry-size"},
		{name: "tree size flag", cmds: []string{"resolve", "lint --rev"}, flags: []string{"--max-tree-size=16"}, setting: "max-tree-size"},
		{name: "registry bytes flag", cmds: []string{"resolve", "lint --rev"}, flags: []string{"--max-registry-bytes", "200"}, setting: "max-registry-bytes"},
		{name: "flag over env", cmds: []string{"resolve", "lint --rev", "lint"}, env: map[string]string{"POISON_MAX_ENTRIES": "3"}, flags: []string{"--max-entries", "1K"}},
		{name: "env over poison.toml", cmds: []string{"resolve", "lint --rev", "lint"}, toml: "max-entry-size = \"128\"\n", env: map[string]string{"POISON_MAX_ENTRY_SIZE": "1K"}},
	} {
		os.Remove(filepath.Join(dir, "poison.toml"))
		if c.toml != "" {
			os.WriteFile(filepath.Join(dir, "poison.toml"), []byte(c.toml), 0o644)
		}
		for _, k := range c.cmds {
			env := map[string]string{"POISON_CACHE_DIR": filepath.Join(dir, "cache")}
			for k, v := range c.env {
				env[k] = v
			}
			args := append(append([]string{}, commands[k]...), c.flags...)
			code, _, stderr := runPoisonEnv(t, dir, env, args...)
			if c.setting == "" {
				if code != 0 {
					t.Errorf("%s: poison %s: exit %d, want 0\n%s", c.name, strings.Join(args, " "), code, stderr)
				}
				continue
			}
			limitLines := regexp.MustCompile(`(?m)^poison: error: .*more than the limit of .*$`).FindAllString(stderr, -1)
			if code != 1 || len(limitLines) != 1 || !strings.Contains(limitLines[0], "; if the registry is right, raise the limit with --"+c.setting) {
				t.Errorf("%s: poison %s: exit %d, want 1 and one error line naming the limit and the setting --%s:\n%s", c.name, strings.Join(args, " "), code, c.setting, stderr)
			}
		}
	}
}

// TestSettingsLimitsShowImpact: show (reading the cached registry commit
// of the lock) and impact (reading the work tree) take the limits too.
func TestSettingsLimitsShowImpact(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := runPoisonEnv(t, dir, nil, "init", "--ci", "none", "reg"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	env := map[string]string{"POISON_CACHE_DIR": filepath.Join(dir, "cache")}
	if code, _, stderr := runPoisonEnv(t, dir, env, "resolve", "--registry", "reg"); code != 0 {
		t.Fatalf("resolve: %s", stderr)
	}
	for _, c := range []struct {
		args    []string
		setting string
	}{
		{[]string{"show", "--max-age", "0", "--max-entries", "2", "openssl-3.0.13"}, "max-entries"},
		{[]string{"impact", "--registry", "reg", "--max-entry-size", "16", "/nix/store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-a.drv"}, "max-entry-size"},
	} {
		code, _, stderr := runPoisonEnv(t, dir, env, c.args...)
		if code != 1 || !strings.Contains(stderr, "raise the limit with --"+c.setting) {
			t.Errorf("poison %s: exit %d, want 1 and the setting --%s named:\n%s", strings.Join(c.args, " "), code, c.setting, stderr)
		}
	}
}

// TestLimitDefaults: the defaults the limit settings document are
// registry.DefaultLimits, and every limit has its setting.
func TestLimitDefaults(t *testing.T) {
	d := registry.DefaultLimits
	want := map[string]int64{"Entries": d.Entries, "Depth": int64(d.Depth), "FileSize": d.FileSize, "TreeSize": d.TreeSize, "TotalBytes": d.TotalBytes}
	if len(registry.LimitSettings) != len(want) || len(settings.LimitSettings) != len(want) {
		t.Fatalf("%d limits, %d registry.LimitSettings, %d settings.LimitSettings", len(want), len(registry.LimitSettings), len(settings.LimitSettings))
	}
	for field, name := range registry.LimitSettings {
		st, ok := settings.Lookup(name)
		if !ok || !slices.Contains(settings.LimitSettings, name) {
			t.Errorf("limit %s: setting %s is not a limit setting", field, name)
			continue
		}
		var s settings.Settings
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		sf := settings.Register(fs, name)
		if err := fs.Parse([]string{"--" + name, st.Default}); err != nil {
			t.Fatal(err)
		}
		s, err := sf.Load(t.TempDir(), func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		l := registryLimits(s)
		got := map[string]int64{"Entries": l.Entries, "Depth": int64(l.Depth), "FileSize": l.FileSize, "TreeSize": l.TreeSize, "TotalBytes": l.TotalBytes}[field]
		if got != want[field] {
			t.Errorf("--%s default %q is %d, registry.DefaultLimits.%s is %d", name, st.Default, got, field, want[field])
		}
	}
}
