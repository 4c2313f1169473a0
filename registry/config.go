package registry

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/poison-nix/poison/registry/lock"
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

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedEnv are attribute names Nix gives a meaning to, or sets in the
// build environment itself: injecting a serial under one of them would
// change the build or be overwritten.
var reservedEnv = map[string]bool{
	// derivation attributes and common output names
	"name": true, "system": true, "builder": true, "args": true, "outputs": true,
	"out": true, "bin": true, "dev": true, "lib": true, "man": true, "doc": true,
	"info": true, "devdoc": true, "static": true, "debug": true, "include": true,
	// attributes Nix interprets
	"allowedReferences": true, "allowedRequisites": true, "disallowedReferences": true,
	"disallowedRequisites": true, "exportReferencesGraph": true, "impureEnvVars": true,
	"outputHash": true, "outputHashAlgo": true, "outputHashMode": true, "passAsFile": true,
	"preferLocalBuild": true, "allowSubstitutes": true, "requiredSystemFeatures": true,
	"outputChecks": true, "unsafeDiscardReferences": true, "contentAddressed": true,
	// variables Nix sets in the build environment
	"PATH": true, "HOME": true, "NIX_STORE": true, "NIX_BUILD_TOP": true, "NIX_BUILD_CORES": true,
	"NIX_LOG_FD": true, "NIX_ATTRS_JSON_FILE": true, "NIX_ATTRS_SH_FILE": true,
	"TMPDIR": true, "TEMPDIR": true, "TMP": true, "TEMP": true, "PWD": true, "TERM": true,
}

// ValidateEnv checks that name can carry a serial: a shell-safe variable
// name that Nix neither interprets nor sets itself.
func ValidateEnv(name string) error {
	if !envNameRE.MatchString(name) {
		return fmt.Errorf("%q is not a valid environment variable name (letters, digits, _; not starting with a digit)", truncate(name))
	}
	if strings.HasPrefix(name, "__") {
		return fmt.Errorf("%q starts with __, which Nix reserves for its own attributes", name)
	}
	if reservedEnv[name] {
		return fmt.Errorf("%q is an attribute Nix interprets or sets itself", name)
	}
	return nil
}

// ValidateStoreDir checks a store directory: absolute, clean, not "/".
func ValidateStoreDir(dir string) error {
	if !strings.HasPrefix(dir, "/") || path.Clean(dir) != dir || dir == "/" {
		return fmt.Errorf("%q is not a clean absolute directory such as /nix/store", truncate(dir))
	}
	return nil
}

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
					d.errorf(k, "%v; choose another name such as %s", err, lock.DefaultEnv)
				} else {
					cfg.Env = s
				}
			case "store-dir":
				s, isStr := m[k].(string)
				if !isStr {
					d.errorf(k, "is %s; write store-dir = \"%s\"", aType(m[k]), lock.DefaultStoreDir)
				} else if err := ValidateStoreDir(s); err != nil {
					d.errorf(k, "%v; write the store directory of your Nix installation", err)
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
