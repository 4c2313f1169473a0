// Package settings is the one place the project settings of poison are
// read: each setting comes from its command-line flag, else its
// environment variable, else the project's poison.toml, else its default.
//
// Every setting is one row of Table. A command registers the flags of the
// settings it takes (Register) and loads the merged values (Flags.Load);
// settings without a flag on that command still come from the environment
// and poison.toml, so a command can never silently ignore POISON_LOCK or
// `lock = "..."` the way a hard-coded default would.
package settings

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"
)

// ProjectFile is the per-project settings file, read from the working
// directory.
const ProjectFile = "poison.toml"

// DefaultJournal is the build journal the post-build-hook appends to and
// provenance reads unless told otherwise.
const DefaultJournal = "/var/log/poison/journal.jsonl"

// DefaultMaxAge is how old the last fetch behind a lock may be before
// commands warn.
const DefaultMaxAge = 7 * 24 * time.Hour

// Settings are the merged project settings.
type Settings struct {
	Registry    string        // URL or absolute directory
	Ref         string        // branch, tag or commit to pin
	Lock        string        // absolute path of the lock file
	Nix         string        // absolute path of poison.nix to write, or ""
	MaxAge      time.Duration // freshness limit of the registry fetch; 0 disables
	TrustedKeys string        // absolute path of the trusted keys file, or ""
	Offline     bool          // resolve from the cache only
	CacheDir    string        // absolute cache directory, or "" when none is known
	// ClosureCache lets poison build skip reading a closure that a
	// record in CacheDir shows the lock poisons nothing in.
	ClosureCache bool
	Journal      string // absolute path of the build journal
	SSHKey       string // absolute path of the ssh private key for ssh registries, or ""
	// ConnectTimeout and StallTimeout bound the network waits of a fetch
	// (0: no limit).
	ConnectTimeout time.Duration
	StallTimeout   time.Duration
	// Limits on the work one registry commit may cause (resolve, lint);
	// 0 takes the registry's default (registry.DefaultLimits).
	MaxEntries       int64 // files and directories of the tree
	MaxTreeDepth     int64 // directory levels below the root
	MaxEntrySize     int64 // bytes of one file (an entry, registry.toml)
	MaxTreeSize      int64 // bytes of one git tree object (one directory)
	MaxRegistryBytes int64 // bytes of all trees and files read

	origin map[string]string
}

// Origin says where setting name came from: "--lock", "POISON_LOCK",
// "poison.toml (DIR/poison.toml)" or "default". Messages use it so that a
// user sees which source to change.
func (s *Settings) Origin(name string) string {
	if o, ok := s.origin[name]; ok {
		return o
	}
	return "default"
}

// Kind is how a setting's text is interpreted.
type Kind int

// Kinds of settings.
const (
	// String is taken as is.
	String Kind = iota
	// Path is a file or directory: relative paths are relative to the
	// working directory (flag, environment) or to poison.toml's directory.
	Path
	// Location is a URL (scheme://..., user@host:path) or, like Path, a
	// directory.
	Location
	// Duration is a Go duration ("36h") or a number of days ("7d").
	Duration
	// Bool is true or false (1 or 0 in the environment).
	Bool
	// Count is a positive whole number ("4000000"), with the suffixes
	// of Size ("4M").
	Count
	// Size is a positive number of bytes, with an optional K, M, G or T
	// suffix for KiB, MiB, GiB or TiB ("64K", "4G"), as Nix's size
	// settings take.
	Size
)

// Setting is one row of the settings table.
type Setting struct {
	// Name is the flag (--NAME) and the poison.toml key.
	Name string
	// Env is the environment variable.
	Env  string
	Kind Kind
	// Arg names the flag's value in help ("FILE"); "" for Bool.
	Arg string
	// Default is the default's text for help and docs; the default value
	// itself is set by defaults.
	Default string
	// Usage is the flag's help text, without the sources (added by Usage).
	Usage string
	// field returns a pointer into Settings of the type Kind implies
	// (*string, *time.Duration, *bool, *int64).
	field func(*Settings) any
}

// Table lists every project setting, in the order help and docs show them.
// To add a setting: add a field to Settings and one row here.
var Table = []Setting{
	{Name: "registry", Arg: "URL|DIR", Env: "POISON_REGISTRY", Kind: Location, Default: "(none)",
		Usage: "registry URL (file, git, http(s), ssh) or directory",
		field: func(s *Settings) any { return &s.Registry }},
	{Name: "ref", Arg: "REF", Env: "POISON_REF", Kind: String, Default: "the remote's default branch",
		Usage: "branch, tag or commit to pin",
		field: func(s *Settings) any { return &s.Ref }},
	{Name: "lock", Arg: "FILE", Env: "POISON_LOCK", Kind: Path, Default: "poison.lock",
		Usage: "lock file",
		field: func(s *Settings) any { return &s.Lock }},
	{Name: "nix", Arg: "FILE", Env: "POISON_NIX", Kind: Path, Default: "(none)",
		Usage: "also write poison.nix to this file",
		field: func(s *Settings) any { return &s.Nix }},
	{Name: "max-age", Arg: "DURATION", Env: "POISON_MAX_AGE", Kind: Duration, Default: "7d",
		Usage: "warn when the registry was last fetched longer ago, e.g. 36h or 7d; 0 disables",
		field: func(s *Settings) any { return &s.MaxAge }},
	{Name: "trusted-keys", Arg: "FILE", Env: "POISON_TRUSTED_KEYS", Kind: Path, Default: "(none)",
		Usage: "file of OpenPGP/SSH public keys; the pinned commit must be signed by one",
		field: func(s *Settings) any { return &s.TrustedKeys }},
	{Name: "offline", Env: "POISON_OFFLINE", Kind: Bool, Default: "false",
		Usage: "resolve from the cache, without network access",
		field: func(s *Settings) any { return &s.Offline }},
	{Name: "cache-dir", Arg: "DIR", Env: "POISON_CACHE_DIR", Kind: Path, Default: "$XDG_CACHE_HOME/poison, else ~/.cache/poison",
		Usage: "cache of fetched registries and of closure records (build)",
		field: func(s *Settings) any { return &s.CacheDir }},
	{Name: "closure-cache", Env: "POISON_CLOSURE_CACHE", Kind: Bool, Default: "true",
		Usage: "record the .drv and output paths of each closure poison build reads (under cache-dir), and build without reading again a closure the lock poisons nothing in; false reads every closure",
		field: func(s *Settings) any { return &s.ClosureCache }},
	{Name: "journal", Arg: "FILE", Env: "POISON_JOURNAL", Kind: Path, Default: DefaultJournal,
		Usage: "build journal that provenance and add --built-on read",
		field: func(s *Settings) any { return &s.Journal }},
	{Name: "ssh-key", Arg: "FILE", Env: "POISON_SSH_KEY", Kind: Path, Default: "ssh-agent, else ~/.ssh/config IdentityFile, else ~/.ssh/id_*",
		Usage: "private key for ssh registries (e.g. a deploy key); the only key offered",
		field: func(s *Settings) any { return &s.SSHKey }},
	{Name: "connect-timeout", Arg: "DURATION", Env: "POISON_CONNECT_TIMEOUT", Kind: Duration, Default: "30s",
		Usage: "give up connecting to the registry server after this long; 0 waits forever",
		field: func(s *Settings) any { return &s.ConnectTimeout }},
	{Name: "stall-timeout", Arg: "DURATION", Env: "POISON_STALL_TIMEOUT", Kind: Duration, Default: "30s",
		Usage: "give up a fetch when the server sends nothing for this long; 0 waits forever",
		field: func(s *Settings) any { return &s.StallTimeout }},
	{Name: "max-entries", Arg: "N", Env: "POISON_MAX_ENTRIES", Kind: Count, Default: "4000000",
		Usage: "refuse a registry tree of more files and directories",
		field: func(s *Settings) any { return &s.MaxEntries }},
	{Name: "max-tree-depth", Arg: "N", Env: "POISON_MAX_TREE_DEPTH", Kind: Count, Default: "64",
		Usage: "refuse a registry tree nested deeper",
		field: func(s *Settings) any { return &s.MaxTreeDepth }},
	{Name: "max-entry-size", Arg: "SIZE", Env: "POISON_MAX_ENTRY_SIZE", Kind: Size, Default: "64K",
		Usage: "refuse a registry file (entry, registry.toml) larger than this, e.g. 64K or 1M",
		field: func(s *Settings) any { return &s.MaxEntrySize }},
	{Name: "max-tree-size", Arg: "SIZE", Env: "POISON_MAX_TREE_SIZE", Kind: Size, Default: "64M",
		Usage: "refuse a git tree object (one registry directory) larger than this",
		field: func(s *Settings) any { return &s.MaxTreeSize }},
	{Name: "max-registry-bytes", Arg: "SIZE", Env: "POISON_MAX_REGISTRY_BYTES", Kind: Size, Default: "4G",
		Usage: "refuse to read more bytes of trees and files from one registry commit",
		field: func(s *Settings) any { return &s.MaxRegistryBytes }},
}

// LimitSettings names the settings of the registry limits, in Table
// order: the flags of resolve and lint.
var LimitSettings = []string{"max-entries", "max-tree-depth", "max-entry-size", "max-tree-size", "max-registry-bytes"}

// Default network timeouts of a fetch.
const (
	DefaultConnectTimeout = 30 * time.Second
	DefaultStallTimeout   = 30 * time.Second
)

// Lookup returns the row of setting name.
func Lookup(name string) (Setting, bool) {
	for _, st := range Table {
		if st.Name == name {
			return st, true
		}
	}
	return Setting{}, false
}

// FullUsage is the flag help of st: its usage and where else it is read.
func (st Setting) FullUsage() string {
	return fmt.Sprintf("%s (env %s, %s %s; default %s)", st.Usage, st.Env, ProjectFile, st.Name, st.Default)
}

// defaults returns the settings before any source is read.
func defaults(dir string, getenv func(string) string) Settings {
	return Settings{
		Lock:         filepath.Join(dir, "poison.lock"),
		MaxAge:       DefaultMaxAge,
		CacheDir:     defaultCacheDir(getenv),
		ClosureCache: true,
		Journal:      DefaultJournal,

		ConnectTimeout: DefaultConnectTimeout,
		StallTimeout:   DefaultStallTimeout,
		origin:         map[string]string{},
	}
}

// defaultCacheDir is $XDG_CACHE_HOME/poison, else $HOME/.cache/poison; ""
// when neither is set.
func defaultCacheDir(getenv func(string) string) string {
	if v := getenv("XDG_CACHE_HOME"); v != "" && filepath.IsAbs(v) {
		return filepath.Join(v, "poison")
	}
	if v := getenv("HOME"); v != "" {
		return filepath.Join(v, ".cache", "poison")
	}
	return ""
}

// Flags are the setting flags a command registered.
type Flags struct {
	fs     *flag.FlagSet
	values map[string]*string
}

// Register defines --NAME on fs for each named setting (it panics on an
// unknown name: a programming error) and returns the handle to load the
// merged settings with after fs is parsed.
func Register(fs *flag.FlagSet, names ...string) *Flags {
	f := &Flags{fs: fs, values: map[string]*string{}}
	for _, n := range names {
		st, ok := Lookup(n)
		if !ok {
			panic("settings: unknown setting " + n)
		}
		v := new(string)
		f.values[n] = v
		fs.Var(&settingValue{st: st, p: v}, n, st.FullUsage())
	}
	return f
}

// settingValue is a flag.Value that validates its text as its setting
// would be (a bad --max-age is a usage error at parse time).
type settingValue struct {
	st Setting
	p  *string
}

func (v *settingValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return *v.p
}

func (v *settingValue) Set(s string) error {
	var scratch Settings
	if err := v.st.set(&scratch, s, "/", false); err != nil {
		return err
	}
	*v.p = s
	return nil
}

// Placeholder names the value in help.
func (v *settingValue) Placeholder() string { return v.st.Arg }

// IsBoolFlag lets --offline stand alone, as flag.BoolVar does.
func (v *settingValue) IsBoolFlag() bool { return v.st.Kind == Bool }

// Load merges the flags set on the command line over the environment,
// dir/poison.toml and the defaults. dir is the working directory.
func (f *Flags) Load(dir string, getenv func(string) string) (Settings, error) {
	s, err := Load(dir, getenv)
	if err != nil {
		return s, err
	}
	var ferr error
	f.fs.Visit(func(fl *flag.Flag) {
		v, ok := f.values[fl.Name]
		if !ok || ferr != nil {
			return
		}
		st, _ := Lookup(fl.Name)
		if err := st.set(&s, *v, dir, false); err != nil {
			ferr = fmt.Errorf("--%s: %w", st.Name, err)
			return
		}
		s.origin[st.Name] = "--" + st.Name
	})
	return s, ferr
}

// Load reads the settings of the project in dir from the environment and
// dir/poison.toml (no flags).
func Load(dir string, getenv func(string) string) (Settings, error) {
	s := defaults(dir, getenv)
	pf := filepath.Join(dir, ProjectFile)
	data, err := os.ReadFile(pf)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return s, fmt.Errorf("read %s: %w", pf, err)
	default:
		var raw map[string]any
		_, err := toml.Decode(string(data), &raw)
		if err != nil {
			var pe toml.ParseError
			if errors.As(err, &pe) {
				return s, fmt.Errorf("%s:%d:%d: %s", pf, pe.Position.Line, pe.Position.Col, pe.Message)
			}
			return s, fmt.Errorf("%s: %w", pf, err)
		}
		for _, st := range Table {
			v, ok := raw[st.Name]
			if !ok {
				continue
			}
			text, err := tomlText(st, v)
			if err == nil {
				err = st.set(&s, text, dir, true)
			}
			if err != nil {
				return s, fmt.Errorf("%s: %s: %w", pf, st.Name, err)
			}
			s.origin[st.Name] = pf
		}
	}
	for _, st := range Table {
		v := getenv(st.Env)
		if v == "" {
			continue
		}
		if err := st.set(&s, v, dir, false); err != nil {
			return s, fmt.Errorf("%s=%q: %w", st.Env, v, err)
		}
		s.origin[st.Name] = st.Env
	}
	return s, nil
}

// tomlText turns a poison.toml value into the text set parses: strings
// for every kind but Bool, booleans for Bool, and integers too for Count
// and Size.
func tomlText(st Setting, v any) (string, error) {
	if n, ok := v.(int64); ok && (st.Kind == Count || st.Kind == Size) {
		return strconv.FormatInt(n, 10), nil
	}
	switch x := v.(type) {
	case string:
		if st.Kind == Bool {
			return "", fmt.Errorf("want true or false, not the string %q", x)
		}
		return x, nil
	case bool:
		if st.Kind != Bool {
			return "", fmt.Errorf("want a string, not %v", x)
		}
		return strconv.FormatBool(x), nil
	default:
		if st.Kind == Bool {
			return "", fmt.Errorf("want true or false, got %v", v)
		}
		return "", fmt.Errorf("want a string, got %v", v)
	}
}

// set parses text as st's value into s. base is the directory relative
// paths are resolved against.
func (st Setting) set(s *Settings, text, base string, fromFile bool) error {
	switch p := st.field(s).(type) {
	case *string:
		switch st.Kind {
		case Path:
			*p = absUnder(base, text)
		case Location:
			if IsURL(text) {
				*p = text
			} else {
				*p = absUnder(base, text)
			}
		default:
			*p = text
		}
	case *time.Duration:
		d, err := ParseAge(text)
		if err != nil {
			return err
		}
		*p = d
	case *bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return fmt.Errorf("want true or false (1 or 0), got %q", text)
		}
		*p = b
	case *int64:
		var n int64
		var err error
		if st.Kind == Size {
			n, err = ParseSize(text)
		} else {
			n, err = parseCount(text)
		}
		if err != nil {
			return err
		}
		*p = n
	default:
		panic("settings: field of " + st.Name + " has an unsupported type")
	}
	return nil
}

func absUnder(base, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

var scpLike = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/]?`) })

// IsURL reports whether a registry value is a URL (scheme://... or the
// scp-like user@host:path) rather than a directory.
func IsURL(s string) bool {
	return strings.Contains(s, "://") || scpLike().MatchString(s)
}

// RegistryDir is the registry work tree for commands that edit or check
// one (add, lint, impact, hooks install): the registry setting when it is
// a directory, else the working directory.
func (s *Settings) RegistryDir(dir string) string {
	if s.Registry != "" && !IsURL(s.Registry) {
		return s.Registry
	}
	return dir
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

// parseCount parses a positive whole number, with the suffixes ParseSize
// takes (Nix's integer settings take them too).
func parseCount(s string) (int64, error) {
	n, ok := parseSuffixed(s)
	if !ok {
		return 0, fmt.Errorf("invalid number %q: want a positive whole number, with an optional K, M, G or T suffix (powers of 1024), such as 4000000 or 4M", s)
	}
	return n, nil
}

// ParseSize parses a positive number of bytes with an optional K, M, G or
// T suffix (powers of 1024, as in Nix's settings): "65536", "64K", "4G".
func ParseSize(s string) (int64, error) {
	n, ok := parseSuffixed(s)
	if !ok {
		return 0, fmt.Errorf("invalid size %q: want a positive number of bytes, with an optional K, M, G or T suffix, such as 64K or 4G", s)
	}
	return n, nil
}

// parseSuffixed parses a positive decimal number with an optional K, M, G
// or T suffix (powers of 1024).
func parseSuffixed(s string) (int64, bool) {
	num, shift := s, 0
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K':
			shift = 10
		case 'M':
			shift = 20
		case 'G':
			shift = 30
		case 'T':
			shift = 40
		}
		if shift > 0 {
			num = s[:n-1]
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64>>shift {
		return 0, false
	}
	return n << shift, true
}
