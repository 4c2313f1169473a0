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

	rename func(oldpath, newpath string) error // os.Rename; tests inject failures
}

// Update resolves the registry and replaces the lock (and poison.nix) at
// the given paths, failing closed: on any error the previous files are left
// as they were. Updates of the same lock file are serialised, so
// concurrent runs leave one consistent lock.
//
// Only the writing is serialised per lock file, not the fetch: an offline
// update never waits behind an online one of the same project, which may
// be waiting on a dead server.
//
// The lock is refused, with a *SerialDecreaseError, when it would lower any
// serial of the previous lock, unless AllowSerialDecrease is set.
//
// Both files or neither: the new lock and poison.nix are written to
// temporary files first, then the lock is renamed into place, then
// poison.nix. When that last step fails, the previous lock is put back;
// a *WriteError says exactly which file changed if even that fails.
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
	// A first look at the previous lock, without the project lock: the
	// warm path of Resolve compares against it. It is read again below.
	hint, err := os.ReadFile(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		hint = nil
	case err != nil:
		return nil, nil, fmt.Errorf("read previous lock: %w", err)
	}
	prev := sourceOnly(hint)
	ro := o.Options
	ro.prev, ro.lazy = hint, true
	res, err := Resolve(ctx, ro)
	if err != nil {
		return nil, prev, err
	}
	if o.Cache.Dir != "" {
		sum := sha256.Sum256([]byte(abs))
		unlock, err := flock(ctx, filepath.Join(o.Cache.Dir, "projects", hex.EncodeToString(sum[:8])+".flock"))
		if err != nil {
			return res, prev, err
		}
		defer unlock()
	}
	// Compared in pieces first: a lock of 1,000,000 entries is 140 MB,
	// held once.
	prevBytes := hint
	if same, err := fileEquals(abs, hint); hint == nil || err != nil || !same {
		prevBytes, err = os.ReadFile(abs)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			prevBytes = nil
		case err != nil:
			return res, prev, fmt.Errorf("read previous lock: %w", err)
		}
		if !bytes.Equal(prevBytes, hint) {
			prev = sourceOnly(prevBytes) // another update wrote it meanwhile
		}
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
	var nix []byte
	if o.NixPath != "" {
		l, err := res.LockFile()
		if err != nil {
			return res, prev, err
		}
		if nix, err = l.NixFile(); err != nil {
			return res, prev, fmt.Errorf("write %s: %w", o.NixPath, err)
		}
	}
	res.Unchanged = bytes.Equal(data, prevBytes)
	var lockData []byte
	if !res.Unchanged {
		lockData = data
	}
	if err := writeBoth(abs, lockData, prevBytes, o.NixPath, nix, o.rename); err != nil {
		return res, prev, err
	}
	return res, prev, nil
}

// sourceOnly returns a lock holding only the registry source of data, for
// messages ("kept the previous lock at commit X"), or nil.
func sourceOnly(data []byte) *lock.File {
	if data == nil {
		return nil
	}
	if src, ok := decodeSource(data); ok {
		return &lock.File{Registry: src}
	}
	return nil
}

// WriteError is a failure to write the lock and poison.nix together.
type WriteError struct {
	// LockChanged is set when the lock file holds the new lock although
	// poison.nix could not be written (putting the previous lock back
	// failed too).
	LockChanged bool
	Lock, Nix   string
	Err         error
}

func (e *WriteError) Error() string {
	if e.LockChanged {
		return fmt.Sprintf("%s was updated but %s was not: %v; the two disagree until a resolve succeeds", e.Lock, e.Nix, e.Err)
	}
	if e.Nix == "" {
		return fmt.Sprintf("%v; %s was not changed", e.Err, e.Lock)
	}
	return fmt.Sprintf("%v; neither %s nor %s was changed", e.Err, e.Lock, e.Nix)
}

func (e *WriteError) Unwrap() error { return e.Err }

// writeBoth writes the lock (unless lockData is nil: unchanged) and
// poison.nix (unless nixPath is "") both or neither. prevLock is the
// lock's previous content (nil: there was none), put back when poison.nix
// cannot be renamed into place. rename is os.Rename (tests inject
// failures).
func writeBoth(lockPath string, lockData, prevLock []byte, nixPath string, nix []byte, rename func(string, string) error) error {
	if rename == nil {
		rename = os.Rename
	}
	werr := func(err error) error { return &WriteError{Lock: lockPath, Nix: nixPath, Err: err} }
	var tmps []string
	defer func() {
		for _, t := range tmps {
			os.Remove(t)
		}
	}()
	var tmpLock, tmpNix string
	if lockData != nil {
		t, err := writeTemp(lockPath, lockData)
		if err != nil {
			return werr(err)
		}
		tmpLock = t
		tmps = append(tmps, t)
	}
	if nixPath != "" {
		t, err := writeTemp(nixPath, nix)
		if err != nil {
			return werr(err)
		}
		tmpNix = t
		tmps = append(tmps, t)
	}
	if tmpLock != "" {
		if err := rename(tmpLock, lockPath); err != nil {
			return werr(fmt.Errorf("write %s: %w", lockPath, err))
		}
	}
	if tmpNix == "" {
		return nil
	}
	err := rename(tmpNix, nixPath)
	if err == nil || tmpLock == "" {
		if err != nil {
			return werr(fmt.Errorf("write %s: %w", nixPath, err))
		}
		return nil
	}
	// The lock is new, poison.nix is not: put the previous lock back.
	nixErr := fmt.Errorf("write %s: %w", nixPath, err)
	var restore error
	if prevLock == nil {
		restore = os.Remove(lockPath)
	} else if t, err := writeTemp(lockPath, prevLock); err != nil {
		restore = err
	} else {
		tmps = append(tmps, t)
		restore = rename(t, lockPath)
	}
	if restore != nil {
		return &WriteError{LockChanged: true, Lock: lockPath, Nix: nixPath,
			Err: fmt.Errorf("%v (and putting the previous lock back failed: %v)", nixErr, restore)}
	}
	return werr(nixErr)
}

// writeTemp writes data to a new synced temporary file beside path and
// returns its name.
func writeTemp(path string, data []byte) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return name, nil
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
