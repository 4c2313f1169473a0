package registry

import (
	"errors"

	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/storepath"
)

// ConfigFile is the name of the settings file at the registry root.
const ConfigFile = "registry.toml"

// EntriesDir is the directory holding the entry files.
const EntriesDir = "entries"

// Config is registry.toml.
type Config struct {
	// Env is the attribute injected into poisoned derivations
	// (lock.DefaultEnv when empty).
	Env string
	// StoreDir is the Nix store the entries' paths live in
	// (lock.DefaultStoreDir when empty).
	StoreDir string
}

func (c Config) withDefaults() Config {
	if c.Env == "" {
		c.Env = lock.DefaultEnv
	}
	if c.StoreDir == "" {
		c.StoreDir = lock.DefaultStoreDir
	}
	return c
}

// ValidateEnv checks that name can carry a serial: a shell-safe variable
// name that Nix neither interprets nor sets itself (lock.ValidateEnv).
func ValidateEnv(name string) error { return lock.ValidateEnv(name) }

// ValidateStoreDir checks a store directory: absolute, clean, not "/",
// only characters of store paths (storepath.CheckStoreDir).
func ValidateStoreDir(dir string) error { return storepath.CheckStoreDir(dir) }

// DecodeConfig decodes and validates registry.toml. On problems it returns
// the defaults for the bad settings, so entries can still be checked.
func DecodeConfig(data []byte) (Config, Problems) {
	d := entryDecoder{file: ConfigFile, src: data}
	var cfg Config
	m, ok := d.parse()
	if ok {
		for _, k := range sortedKeys(m) {
			switch k {
			case "env":
				s, isStr := m[k].(string)
				if !isStr {
					d.errorf(k, "is %s; write env = \"%s\"", aType(m[k]), lock.DefaultEnv)
				} else if err := ValidateEnv(s); err != nil {
					d.errorf(k, "%v", err)
				} else {
					cfg.Env = s
				}
			case "store-dir":
				s, isStr := m[k].(string)
				if !isStr {
					d.errorf(k, "is %s; write store-dir = \"%s\"", aType(m[k]), lock.DefaultStoreDir)
				} else if err := ValidateStoreDir(s); err != nil {
					d.errorf(k, "%v", err)
				} else {
					cfg.StoreDir = s
				}
			default:
				d.errorf(k, "unknown key%s; registry.toml has only env and store-dir", suggest(k, []string{"env", "store-dir"}))
			}
		}
	}
	return cfg.withDefaults(), d.problems
}

// ErrNotRegistry is returned by Load when there is no registry.toml.
var ErrNotRegistry = errors.New("no registry.toml: not a poison registry")
