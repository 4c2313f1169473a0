package nixconf_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/poison-nix/poison/internal/nixconf"
)

// TestLoad: the system file, the user's files and NIX_CONFIG in Nix's
// order; include, !include, comments, extra-.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, text string) {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/nix.conf", "max-jobs = 4 # comment\nbuilders = ssh://a x86_64-linux\ninclude more.conf\n!include missing.conf\nsandbox = true\n")
	write("etc/more.conf", "cores = 2\nextra-builders = ssh://b\n")
	write("home/nix/nix.conf", "max-jobs = 8\n")
	env := map[string]string{"NIX_CONF_DIR": filepath.Join(dir, "etc"), "XDG_CONFIG_HOME": filepath.Join(dir, "home"), "XDG_CONFIG_DIRS": filepath.Join(dir, "none")}
	getenv := func(k string) string { return env[k] }

	c, err := nixconf.Load(getenv)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"max-jobs": "8", "builders": "ssh://a x86_64-linux ssh://b", "cores": "2", "sandbox": "true"} {
		if got, ok := c.Get(k); !ok || got != want {
			t.Errorf("%s = %q, %v; want %q", k, got, ok, want)
		}
	}
	if _, ok := c.Get("substituters"); ok {
		t.Errorf("substituters set without a source")
	}
	if len(c.Overrides()) != 0 {
		t.Errorf("overrides without NIX_CONFIG: %v", c.Overrides())
	}

	env["NIX_CONFIG"] = "max-jobs = 0\nsubstituters =\n"
	c, err = nixconf.Load(getenv)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get("max-jobs"); v != "0" {
		t.Errorf("NIX_CONFIG max-jobs: %q", v)
	}
	if o := c.Overrides(); o["max-jobs"] != "0" || o["substituters"] != "" || len(o) != 2 {
		t.Errorf("overrides: %v", o)
	}

	env["NIX_USER_CONF_FILES"] = filepath.Join(dir, "u1.conf") + ":" + filepath.Join(dir, "u2.conf")
	write("u1.conf", "cores = 7\n")
	write("u2.conf", "cores = 9\n")
	c, _ = nixconf.Load(getenv)
	if v, _ := c.Get("cores"); v != "7" {
		t.Errorf("NIX_USER_CONF_FILES: the first file wins, got cores = %q", v)
	}

	for _, bad := range []struct{ text, want string }{
		{"max-jobs 4\n", "nix.conf:1: syntax error"},
		{"include loop.conf\n", "nested more than"},
	} {
		write("etc/nix.conf", bad.text)
		write("etc/loop.conf", "include loop.conf\n")
		if _, err := nixconf.Load(getenv); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want %q", bad.text, err, bad.want)
		}
	}
}
