// Package lock reads and writes poison.lock, the resolved serial map of a
// registry (docs/formats.md).
//
// A lock is a projection of one registry commit: for every canonical .drv
// path, output path and derivation name, the number of entries that poison
// it. The encoding is deterministic: the same File always marshals to the
// same bytes (map keys sorted, fixed field order, trailing newline), so a
// project can commit its lock and review changes as diffs.
//
// The serial of a derivation is the largest of its .drv serial and the
// serials of its output paths; with name fallback, also its name's serial.
package lock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/poison-nix/poison/storepath"
)

// Version is the lock format version this package reads and writes.
const Version = 1

// DefaultEnv is the attribute injected when a registry does not name one.
const DefaultEnv = "POISON_SERIAL"

// DefaultStoreDir is the store directory assumed when a lock does not name one.
const DefaultStoreDir = storepath.DefaultStoreDir

// Source records where a lock came from.
type Source struct {
	URL    string `json:"url"`
	Ref    string `json:"ref"`
	Commit string `json:"commit"`
	// VerifiedBy names the trusted key whose signature on Commit was
	// verified when the lock was resolved ("ssh:SHA256:..." or
	// "openpgp:FINGERPRINT"); empty when the commit was not verified.
	VerifiedBy string `json:"verifiedBy,omitempty"`
}

// File is the content of poison.lock.
//
// Keys of Derivations and Outputs are store path base names
// ("6jqi...-b.drv", "bgzy...-b"); keys of Names are derivation names.
// Every serial is at least 1: a key with serial 0 is simply absent.
type File struct {
	Version     int            `json:"version"`
	Registry    Source         `json:"registry"`
	Env         string         `json:"env"`
	StoreDir    string         `json:"storeDir,omitempty"`
	Derivations map[string]int `json:"derivations"`
	Outputs     map[string]int `json:"outputs"`
	Names       map[string]int `json:"names"`
}

// New returns an empty lock for the given source and attribute name.
func New(src Source, env string) *File {
	return &File{
		Version:     Version,
		Registry:    src,
		Env:         env,
		Derivations: map[string]int{},
		Outputs:     map[string]int{},
		Names:       map[string]int{},
	}
}

var (
	commitRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{40}$`) })
	keyIDRE  = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(ssh:SHA256:[A-Za-z0-9+/]{43}|openpgp:[0-9A-F]{40,64})$`)
	})
)

// Validate checks the invariants a lock must hold: a known version, a valid
// attribute name, base-name keys of the right form, name keys that are
// derivation names as a registry entry's names are (storepath.CheckName)
// and positive serials. Unmarshal applies it, so a lock edited by hand or
// written by another tool is refused on read, before any of its strings
// reaches poison.nix or a rewrite.
func (f *File) Validate() error {
	if f.Version != Version {
		return fmt.Errorf("lock version %d is not supported (want %d)", f.Version, Version)
	}
	if err := ValidateEnv(f.Env); err != nil {
		return fmt.Errorf("lock env: %w", err)
	}
	if f.Registry.Commit != "" && !commitRE().MatchString(f.Registry.Commit) {
		return fmt.Errorf("lock registry commit %q is not a 40-digit hex commit id", f.Registry.Commit)
	}
	if f.Registry.VerifiedBy != "" && (!keyIDRE().MatchString(f.Registry.VerifiedBy) || f.Registry.Commit == "") {
		return fmt.Errorf("lock registry verifiedBy %q is not a key id (ssh:SHA256:... or openpgp:FINGERPRINT) of a verified commit", f.Registry.VerifiedBy)
	}
	if f.StoreDir != "" {
		if err := storepath.CheckStoreDir(f.StoreDir); err != nil {
			return fmt.Errorf("lock storeDir: %w", err)
		}
	}
	for k, v := range f.Derivations {
		if storepath.CheckBase(k) != nil || !strings.HasSuffix(k, ".drv") {
			return fmt.Errorf("lock derivations key %q is not a .drv store path base name", short(k))
		}
		if v < 1 {
			return fmt.Errorf("lock derivations[%q] = %d: serials must be at least 1", short(k), v)
		}
	}
	for k, v := range f.Outputs {
		if storepath.CheckBase(k) != nil {
			return fmt.Errorf("lock outputs key %q is not a store path base name", short(k))
		}
		if v < 1 {
			return fmt.Errorf("lock outputs[%q] = %d: serials must be at least 1", short(k), v)
		}
	}
	for k, v := range f.Names {
		if err := storepath.CheckName(k); err != nil {
			return fmt.Errorf("lock names key %q is not a derivation name (%v)", short(k), err)
		}
		if v < 1 {
			return fmt.Errorf("lock names[%q] = %d: serials must be at least 1", short(k), v)
		}
	}
	return nil
}

// Store returns the store directory the lock's keys live in.
func (f *File) Store() string {
	if f.StoreDir == "" {
		return DefaultStoreDir
	}
	return f.StoreDir
}

// Serial returns the serial of a derivation given the base names of its
// canonical .drv path and output paths: the largest serial among them, or 0.
func (f *File) Serial(drvBase string, outBases []string) int {
	s := f.Derivations[drvBase]
	for _, o := range outBases {
		if v := f.Outputs[o]; v > s {
			s = v
		}
	}
	return s
}

// NameSerial returns the name-based serial of a derivation name, or 0.
func (f *File) NameSerial(name string) int { return f.Names[name] }

// Marshal returns the deterministic encoding of f.
func (f *File) Marshal() ([]byte, error) {
	g := *f
	// nil maps would encode as null; the format always has objects.
	if g.Derivations == nil {
		g.Derivations = map[string]int{}
	}
	if g.Outputs == nil {
		g.Outputs = map[string]int{}
	}
	if g.Names == nil {
		g.Names = map[string]int{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&g); err != nil {
		return nil, fmt.Errorf("encode lock: %w", err)
	}
	return buf.Bytes(), nil
}

// Unmarshal decodes and validates a lock. Unknown fields are an error, so a
// lock written by a newer poison is not silently misread.
func Unmarshal(data []byte) (*File, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode lock: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode lock: trailing data after the JSON object")
	}
	if f.Derivations == nil {
		f.Derivations = map[string]int{}
	}
	if f.Outputs == nil {
		f.Outputs = map[string]int{}
	}
	if f.Names == nil {
		f.Names = map[string]int{}
	}
	if err := f.Validate(); err != nil {
		// Only a lock edited by hand, or written by another tool, fails:
		// poison writes none that does.
		return nil, fmt.Errorf("%w; run 'poison resolve' to regenerate the lock", err)
	}
	return &f, nil
}

// ReadFile reads and validates the lock at path. The error wraps
// fs.ErrNotExist when there is no lock.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read lock: %w", err)
	}
	f, err := Unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// WriteFile writes f to path atomically: the bytes go to a temporary file in
// the same directory, which is synced and renamed over path. A failure
// leaves any previous lock untouched.
func (f *File) WriteFile(path string) error {
	if err := f.Validate(); err != nil {
		return err
	}
	data, err := f.Marshal()
	if err != nil {
		return err
	}
	return WriteAtomic(path, data, 0o644)
}

// WriteAtomic writes data to path through a temporary file and a rename, so
// readers see either the old or the new content, never a partial file.
//
// A path that exists and is not a regular file (a device such as /dev/null,
// a directory, a pipe) is refused: renaming over it would replace it.
func WriteAtomic(path string, data []byte, perm os.FileMode) error {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("write %s: not a regular file (%s); give the path of a file", path, fi.Mode().Type())
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
