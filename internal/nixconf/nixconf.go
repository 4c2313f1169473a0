// Package nixconf reads the Nix client settings poison needs (max-jobs,
// builders, ...) from the same places and in the same order as Nix: the
// system nix.conf ($NIX_CONF_DIR, default /etc/nix), the user's
// configuration files ($NIX_USER_CONF_FILES, else nix/nix.conf under
// $XDG_CONFIG_DIRS and then $XDG_CONFIG_HOME), then the NIX_CONFIG
// variable; later sources win. "include" and "!include" lines, comments
// and "extra-NAME" (appends to NAME) are understood.
package nixconf

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxFileSize bounds each configuration file read.
const maxFileSize = 1 << 20

// maxIncludeDepth bounds nested includes (and include loops).
const maxIncludeDepth = 16

// Config is the merged configuration.
type Config struct {
	values    map[string]string
	overrides map[string]string
}

// Load reads the configuration as a Nix client started with the
// environment getenv would.
func Load(getenv func(string) string) (*Config, error) {
	c := &Config{values: map[string]string{}, overrides: map[string]string{}}
	dir := getenv("NIX_CONF_DIR")
	if dir == "" {
		dir = "/etc/nix"
	}
	files := []string{filepath.Join(dir, "nix.conf")}
	files = append(files, userFiles(getenv)...)
	for _, f := range files {
		if err := c.readFile(f, false, 0, c.values); err != nil {
			return c, err
		}
	}
	if err := apply(getenv("NIX_CONFIG"), "", "NIX_CONFIG", 0, c.values, c); err != nil {
		return c, err
	}
	if err := apply(getenv("NIX_CONFIG"), "", "NIX_CONFIG", 0, c.overrides, c); err != nil {
		return c, err
	}
	return c, nil
}

// userFiles are the user's configuration files, lowest precedence first.
func userFiles(getenv func(string) string) []string {
	if v := getenv("NIX_USER_CONF_FILES"); v != "" {
		var out []string
		for _, f := range strings.Split(v, ":") {
			if f != "" {
				out = append([]string{f}, out...) // the first listed wins
			}
		}
		return out
	}
	home := getenv("XDG_CONFIG_HOME")
	if home == "" && getenv("HOME") != "" {
		home = filepath.Join(getenv("HOME"), ".config")
	}
	dirs := getenv("XDG_CONFIG_DIRS")
	if dirs == "" {
		dirs = "/etc/xdg"
	}
	var out []string
	list := strings.Split(dirs, ":")
	for i := len(list) - 1; i >= 0; i-- {
		if list[i] != "" {
			out = append(out, filepath.Join(list[i], "nix", "nix.conf"))
		}
	}
	if home != "" {
		out = append(out, filepath.Join(home, "nix", "nix.conf"))
	}
	return out
}

// Get returns setting name and whether any source set it.
func (c *Config) Get(name string) (string, bool) {
	v, ok := c.values[name]
	return v, ok
}

// Overrides are the settings NIX_CONFIG sets: what a Nix client sends to
// the daemon with SetOptions.
func (c *Config) Overrides() map[string]string {
	out := make(map[string]string, len(c.overrides))
	for k, v := range c.overrides {
		out[k] = v
	}
	return out
}

// readFile applies the file at path; a missing file is skipped unless
// required ("include" is optional, as in Nix; "!include" too, silently).
func (c *Config) readFile(path string, required bool, depth int, into map[string]string) error {
	if depth > maxIncludeDepth {
		return fmt.Errorf("%s: includes nested more than %d deep", path, maxIncludeDepth)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read Nix configuration: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return fmt.Errorf("read Nix configuration %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return fmt.Errorf("Nix configuration %s is larger than %d bytes", path, maxFileSize)
	}
	return apply(string(data), filepath.Dir(path), path, depth, into, c)
}

// apply applies configuration text; dir resolves relative includes.
func apply(text, dir, name string, depth int, into map[string]string, c *Config) error {
	for n, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		tokens := strings.Fields(line)
		if len(tokens) == 0 {
			continue
		}
		if len(tokens) == 2 && (tokens[0] == "include" || tokens[0] == "!include") {
			p := tokens[1]
			if !filepath.IsAbs(p) && dir != "" {
				p = filepath.Join(dir, p)
			}
			if err := c.readFile(p, false, depth+1, into); err != nil {
				return err
			}
			continue
		}
		if len(tokens) < 2 || tokens[1] != "=" {
			return fmt.Errorf("%s:%d: syntax error in Nix configuration: want NAME = VALUE", name, n+1)
		}
		key, value := tokens[0], strings.Join(tokens[2:], " ")
		if base, ok := strings.CutPrefix(key, "extra-"); ok {
			if old := into[base]; old != "" && value != "" {
				value = old + " " + value
			} else if value == "" {
				value = old
			}
			key = base
		}
		into[key] = value
	}
	return nil
}

// ParseOverrides turns NIX_CONFIG-style "name = value" text into settings,
// leniently (lines that are not settings are skipped).
func ParseOverrides(text string) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		out[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), " ")
	}
	return out
}
