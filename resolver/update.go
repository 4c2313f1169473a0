package resolver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/poison-nix/poison/registry/lock"
)

// UpdateOptions configures Update.
type UpdateOptions struct {
	Options
	// LockPath is the poison.lock to replace.
	LockPath string
	// NixPath, when set, is a poison.nix to write from the same lock.
	NixPath string
	// AllowSerialDecrease accepts a lock that lowers serials of the
	// previous one (after a force-push that dropped entries).
	AllowSerialDecrease bool
}

// Update resolves the registry and replaces the lock (and poison.nix) at
// the given paths, failing closed: on any error the previous files are left
// as they were. Updates of the same lock file are serialised, so
// concurrent runs leave one consistent lock.
//
// The lock is refused, with a *SerialDecreaseError, when it would lower any
// serial of the previous lock, unless AllowSerialDecrease is set.
func Update(ctx context.Context, o UpdateOptions) (*Result, *lock.File, error) {
	if o.LockPath == "" {
		return nil, nil, errors.New("no lock path")
	}
	abs, err := filepath.Abs(o.LockPath)
	if err != nil {
		return nil, nil, fmt.Errorf("lock path %s: %w", o.LockPath, err)
	}
	for _, p := range []string{o.LockPath, o.NixPath} {
		// Files are replaced by renaming a temporary file over them: never
		// do that to a device such as /dev/null.
		if fi, err := os.Stat(p); p != "" && err == nil && !fi.Mode().IsRegular() {
			return nil, nil, fmt.Errorf("output %s is not a regular file; name a file to write", p)
		}
	}
	if o.Cache.Dir != "" {
		sum := sha256.Sum256([]byte(abs))
		unlock, err := flock(ctx, filepath.Join(o.Cache.Dir, "projects", hex.EncodeToString(sum[:8])+".flock"))
		if err != nil {
			return nil, nil, err
		}
		defer unlock()
	}
	prevBytes, err := os.ReadFile(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		prevBytes = nil
	case err != nil:
		return nil, nil, fmt.Errorf("read previous lock: %w", err)
	}
	// The previous lock is parsed only when needed: a warm resolve that
	// yields the same bytes never pays for it.
	var prev *lock.File
	if prevBytes != nil {
		if src, ok := decodeSource(prevBytes); ok {
			prev = &lock.File{Registry: src}
		}
	}
	ro := o.Options
	ro.prev, ro.lazy = prevBytes, true
	res, err := Resolve(ctx, ro)
	if err != nil {
		return nil, prev, err
	}
	data := res.data
	if data == nil {
		if data, err = encodeLock(res.Lock); err != nil {
			return res, prev, err
		}
	}
	// A lock that only adds entries to the previous one lowers nothing.
	monotone := res.base != nil && bytes.Equal(res.base, prevBytes)
	if prevBytes != nil && !o.AllowSerialDecrease && !bytes.Equal(data, prevBytes) && !monotone {
		full, err := decodeLock(prevBytes)
		if err != nil {
			return res, prev, fmt.Errorf("previous lock %s is unreadable, so serials cannot be checked: %w; move it away or pass --allow-serial-decrease", o.LockPath, err)
		}
		prev = full
		next, err := res.LockFile()
		if err != nil {
			return res, prev, err
		}
		if err := CheckSerials(prev, next); err != nil {
			return res, prev, err
		}
	}
	if o.NixPath != "" {
		l, err := res.LockFile()
		if err != nil {
			return res, prev, err
		}
		if err := l.WriteNixFile(o.NixPath); err != nil {
			return res, prev, err
		}
	}
	res.Unchanged = bytes.Equal(data, prevBytes)
	if !res.Unchanged {
		if err := lock.WriteAtomic(abs, data, 0o644); err != nil {
			return res, prev, err
		}
	}
	return res, prev, nil
}

// SerialDecreaseError says which serials a new lock would lower.
type SerialDecreaseError struct {
	// Keys are "derivations[KEY] N -> M" (outputs, names likewise),
	// sorted.
	Keys []string
}

func (e *SerialDecreaseError) Error() string {
	shown := e.Keys
	more := ""
	if len(shown) > 5 {
		more = fmt.Sprintf(" and %d more", len(shown)-5)
		shown = shown[:5]
	}
	return fmt.Sprintf("the registry would lower %d serial(s) of the previous lock (entries were deleted or edited, e.g. by a force-push): %s%s", len(e.Keys), strings.Join(shown, ", "), more)
}

// CheckSerials returns a *SerialDecreaseError when next lowers any serial of
// prev (a key missing in next counts as 0).
func CheckSerials(prev, next *lock.File) error {
	var keys []string
	cmp := func(field string, a, b map[string]int) {
		for k, v := range a {
			if w := b[k]; w < v {
				keys = append(keys, fmt.Sprintf("%s[%q] %d -> %d", field, k, v, w))
			}
		}
	}
	cmp("derivations", prev.Derivations, next.Derivations)
	cmp("outputs", prev.Outputs, next.Outputs)
	cmp("names", prev.Names, next.Names)
	if prev.Env != next.Env && (len(prev.Derivations)+len(prev.Outputs)+len(prev.Names)) > 0 {
		keys = append(keys, fmt.Sprintf("env %q -> %q (every serial moves to another attribute)", prev.Env, next.Env))
	}
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)
	return &SerialDecreaseError{Keys: keys}
}
