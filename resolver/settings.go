package resolver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultMaxAge is how old the last fetch behind a lock may be before
// commands warn.
const DefaultMaxAge = 7 * 24 * time.Hour

// ProjectFile is the per-project settings file.
const ProjectFile = "poison.toml"

// Settings are the resolver settings of a project. Each comes, in order of
// precedence, from a command-line flag, an environment variable, the
// project's poison.toml, or its default:
//
//	flag              environment           poison.toml     default
//	--registry        POISON_REGISTRY       registry        (none)
//	--ref             POISON_REF            ref             remote default branch
//	--lock            POISON_LOCK           lock            poison.lock
//	--nix             POISON_NIX            nix             (none)
//	--max-age         POISON_MAX_AGE        max-age         168h
//	--trusted-keys    POISON_TRUSTED_KEYS   trusted-keys    (none)
//	--offline         POISON_OFFLINE=1      offline         false
//	                  POISON_CACHE_DIR                      $XDG_CACHE_HOME/poison
//
// Relative paths in poison.toml are relative to its directory; relative
// paths from flags and the environment to the working directory. Durations
// are Go durations ("36h") or whole days ("7d").
type Settings struct {
	Registry    string
	Ref         string
	Lock        string
	Nix         string
	MaxAge      time.Duration
	TrustedKeys string
	Offline     bool
	CacheDir    string
}

// projectFile is the decoded poison.toml. Keys of other commands are
// allowed; only these are read here.
type projectFile struct {
	Registry    string `toml:"registry"`
	Ref         string `toml:"ref"`
	Lock        string `toml:"lock"`
	Nix         string `toml:"nix"`
	MaxAge      string `toml:"max-age"`
	TrustedKeys string `toml:"trusted-keys"`
	Offline     bool   `toml:"offline"`
}

// LoadSettings reads the settings of the project in dir from the
// environment and dir/poison.toml (flags are applied by the caller).
func LoadSettings(dir string, getenv func(string) string) (Settings, error) {
	s := Settings{Lock: filepath.Join(dir, "poison.lock"), MaxAge: DefaultMaxAge}
	pf := filepath.Join(dir, ProjectFile)
	data, err := os.ReadFile(pf)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return s, fmt.Errorf("read %s: %w", pf, err)
	default:
		var p projectFile
		if _, err := toml.Decode(string(data), &p); err != nil {
			var pe toml.ParseError
			if errors.As(err, &pe) {
				return s, fmt.Errorf("%s:%d:%d: %s", pf, pe.Position.Line, pe.Position.Col, pe.Message)
			}
			return s, fmt.Errorf("%s: %w", pf, err)
		}
		rel := func(p string) string {
			if p == "" || filepath.IsAbs(p) {
				return p
			}
			return filepath.Join(dir, p)
		}
		if p.Registry != "" {
			s.Registry = p.Registry
			if !strings.Contains(p.Registry, "://") && !scpLike.MatchString(p.Registry) {
				s.Registry = rel(p.Registry)
			}
		}
		s.Ref = p.Ref
		if p.Lock != "" {
			s.Lock = rel(p.Lock)
		}
		s.Nix = rel(p.Nix)
		s.TrustedKeys = rel(p.TrustedKeys)
		s.Offline = p.Offline
		if p.MaxAge != "" {
			d, err := ParseAge(p.MaxAge)
			if err != nil {
				return s, fmt.Errorf("%s: max-age: %w", pf, err)
			}
			s.MaxAge = d
		}
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if v := getenv("POISON_REGISTRY"); v != "" {
		s.Registry = v
	}
	if v := getenv("POISON_REF"); v != "" {
		s.Ref = v
	}
	if v := getenv("POISON_LOCK"); v != "" {
		s.Lock = abs(v)
	}
	if v := getenv("POISON_NIX"); v != "" {
		s.Nix = abs(v)
	}
	if v := getenv("POISON_TRUSTED_KEYS"); v != "" {
		s.TrustedKeys = abs(v)
	}
	if v := getenv("POISON_MAX_AGE"); v != "" {
		d, err := ParseAge(v)
		if err != nil {
			return s, fmt.Errorf("POISON_MAX_AGE: %w", err)
		}
		s.MaxAge = d
	}
	if v := getenv("POISON_OFFLINE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return s, fmt.Errorf("POISON_OFFLINE=%q: want 1 or 0", v)
		}
		s.Offline = b
	}
	s.CacheDir = DefaultCacheDir(getenv)
	return s, nil
}

// DefaultCacheDir is POISON_CACHE_DIR, else $XDG_CACHE_HOME/poison, else
// $HOME/.cache/poison; "" when none is set.
func DefaultCacheDir(getenv func(string) string) string {
	if v := getenv("POISON_CACHE_DIR"); v != "" {
		return v
	}
	if v := getenv("XDG_CACHE_HOME"); v != "" && filepath.IsAbs(v) {
		return filepath.Join(v, "poison")
	}
	if v := getenv("HOME"); v != "" {
		return filepath.Join(v, ".cache", "poison")
	}
	return ""
}

// ParseAge parses a duration: a Go duration ("36h", "90m") or a number of
// days ("7d"). "0" disables the check.
func ParseAge(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("invalid duration %q: want e.g. 7d or 36h", s)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q: want e.g. 7d or 36h", s)
	}
	return d, nil
}
