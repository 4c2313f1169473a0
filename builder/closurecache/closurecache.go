// Package closurecache remembers what the derivation closure of a set of
// root .drv paths holds, so that `poison build` can tell that a lock
// poisons nothing in it without reading its .drv files again.
//
// A .drv path is content-addressed: while it exists, its file, and so the
// set of derivations its closure holds and their output paths, never
// change. A record written after one full load of the closure therefore
// stays true for as long as the roots exist. It lists every .drv path and
// output path of the closure (the names follow from the .drv paths), and
// is written only when no derivation carries the lock's attribute, so
// that those are the paths a lock is matched against.
//
// The cache may only ever let a build skip work: a record that is
// missing, unreadable, corrupt, of another version, for other roots,
// another store or another attribute, or not owned by the user, is no
// record, and the caller loads the closure as it would without one.
package closurecache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/storepath"
)

// header is the first line of a record; the number is the format version.
const header = "poison closure cache 1\n"

// Bounds of one record and of the whole cache.
const (
	// MaxRecordSize is the largest record read or written (about 400,000
	// derivations).
	MaxRecordSize = 64 << 20
	// DefaultMaxTotal and DefaultMaxRecords bound the directory: a write
	// that finds more removes the records least recently used.
	DefaultMaxTotal   = 512 << 20
	DefaultMaxRecords = 1000
)

// ErrNoRecord is wrapped by Load when there is no usable record.
var ErrNoRecord = errors.New("no closure record")

// Key is what a record is for: the roots, the store they were read from
// and the attribute no derivation of the closure carries.
type Key struct {
	StoreDir     string   // logical store directory
	RealStoreDir string   // where the .drv files were read
	Attr         string   // the lock's attribute name
	Roots        []string // root .drv paths, in any order, duplicates allowed
}

// roots returns the key's roots sorted, without duplicates.
func (k Key) roots() []string {
	r := slices.Clone(k.Roots)
	slices.Sort(r)
	return slices.Compact(r)
}

// text is the part of a record before its members: the header and the
// key.
func (k Key) text() string {
	var b strings.Builder
	b.WriteString(header)
	fmt.Fprintf(&b, "store %s\nreal %s\nattr %s\n", k.StoreDir, k.RealStoreDir, k.Attr)
	r := k.roots()
	fmt.Fprintf(&b, "roots %d\n", len(r))
	for _, p := range r {
		b.WriteString(p)
		b.WriteByte('\n')
	}
	return b.String()
}

// valid reports whether the key can be written in a record: no field may
// hold a line break, and the roots must be .drv paths of the store.
func (k Key) valid() bool {
	if k.StoreDir == "" || k.RealStoreDir == "" || k.Attr == "" || len(k.Roots) == 0 ||
		strings.ContainsAny(k.StoreDir+k.RealStoreDir+k.Attr, "\n\r") {
		return false
	}
	for _, r := range k.Roots {
		if _, err := storepath.Base(k.StoreDir, r); err != nil || !strings.HasSuffix(r, ".drv") {
			return false
		}
	}
	return true
}

// file names the record of k: the SHA-256 of its key.
func (k Key) file() string {
	h := sha256.Sum256([]byte(k.text()))
	return hex.EncodeToString(h[:20]) + ".closure"
}

// Cache is a directory of records, owned by the user and closed to
// everyone else.
type Cache struct {
	dir string
	// MaxRecords and MaxTotal bound the number of records and their
	// bytes (DefaultMaxRecords, DefaultMaxTotal).
	MaxRecords int
	MaxTotal   int64
}

// New returns the cache in dir (created on the first Save).
func New(dir string) *Cache {
	return &Cache{dir: dir, MaxRecords: DefaultMaxRecords, MaxTotal: DefaultMaxTotal}
}

// Dir returns the cache's directory.
func (c *Cache) Dir() string { return c.dir }

// Record is the closure of a Key's roots as loaded from the cache.
type Record struct {
	storeDir string
	// members holds one line per derivation: its .drv base name, then
	// the base names of its output paths, separated by spaces.
	members []string
}

// Len returns the number of derivations in the closure.
func (r *Record) Len() int { return len(r.members) }

// Poisons reports whether the lock could change anything in the closure:
// whether it names one of its .drv paths or output paths (or, with
// byName, one of its derivation names), or is for another store.
func (r *Record) Poisons(lk *lock.File, byName bool) bool {
	if lk.Store() != r.storeDir {
		return true
	}
	if len(lk.Derivations) == 0 && len(lk.Outputs) == 0 && (!byName || len(lk.Names) == 0) {
		return false
	}
	for _, m := range r.members {
		drv, outs, _ := strings.Cut(m, " ")
		if _, ok := lk.Derivations[drv]; ok {
			return true
		}
		if byName {
			if _, ok := lk.Names[drv[storepath.HashLen+1:len(drv)-len(".drv")]]; ok {
				return true
			}
		}
		for outs != "" {
			var o string
			o, outs, _ = strings.Cut(outs, " ")
			if _, ok := lk.Outputs[o]; ok {
				return true
			}
		}
	}
	return false
}

// Load returns the record of k. Any reason not to trust it (none, not
// readable, not the user's, corrupt, for another key) is an error
// wrapping ErrNoRecord.
func (c *Cache) Load(k Key) (*Record, error) {
	if !k.valid() {
		return nil, fmt.Errorf("%w: the key cannot be recorded", ErrNoRecord)
	}
	if err := checkOwned(c.dir, true); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoRecord, err)
	}
	name := filepath.Join(c.dir, k.file())
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoRecord, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoRecord, err)
	}
	if err := owned(fi, false); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoRecord, name, err)
	}
	if fi.Size() > MaxRecordSize {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrNoRecord, name, MaxRecordSize)
	}
	data := make([]byte, fi.Size()+1)
	n, err := io.ReadFull(f, data)
	if err != io.ErrUnexpectedEOF || int64(n) != fi.Size() {
		return nil, fmt.Errorf("%w: %s: changed while read", ErrNoRecord, name)
	}
	r, err := parse(data[:n], k)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoRecord, name, err)
	}
	// Least recently used goes first when the cache is full.
	now := time.Now()
	_ = os.Chtimes(name, now, now)
	return r, nil
}

// parse checks a record's checksum, version and key and returns its
// members.
func parse(data []byte, k Key) (*Record, error) {
	const sumLine = len("sha256 ") + 64 + 1
	if len(data) < sumLine || data[len(data)-1] != '\n' {
		return nil, errors.New("truncated")
	}
	body, trailer := data[:len(data)-sumLine], string(data[len(data)-sumLine:])
	sum := sha256.Sum256(body)
	if trailer != "sha256 "+hex.EncodeToString(sum[:])+"\n" {
		return nil, errors.New("checksum mismatch")
	}
	kt := k.text()
	if !bytes.HasPrefix(body, []byte(header)) {
		return nil, errors.New("another format version")
	}
	if !bytes.HasPrefix(body, []byte(kt)) {
		return nil, errors.New("for other roots, another store or another attribute")
	}
	rest := string(body[len(kt):])
	line, rest, _ := strings.Cut(rest, "\n")
	count, ok := strings.CutPrefix(line, "members ")
	n, err := strconv.Atoi(count)
	if !ok || err != nil || n < 1 || n > MaxRecordSize/storepath.HashLen {
		return nil, fmt.Errorf("bad member count %q", line)
	}
	if strings.Count(rest, "\n") != n {
		return nil, fmt.Errorf("%d members announced, %d present", n, strings.Count(rest, "\n"))
	}
	r := &Record{storeDir: k.StoreDir, members: make([]string, 0, n)}
	for range n {
		line, rest, _ = strings.Cut(rest, "\n")
		r.members = append(r.members, line)
	}
	if err := r.check(k); err != nil {
		return nil, err
	}
	return r, nil
}

// check validates every base name of the members and that the roots are
// among the first of them (Save writes the roots first).
func (r *Record) check(k Key) error {
	roots := map[string]bool{}
	for _, p := range k.Roots {
		roots[p[len(k.StoreDir)+1:]] = true
	}
	if len(roots) > len(r.members) {
		return errors.New("fewer members than roots")
	}
	for i, m := range r.members {
		drv, outs, _ := strings.Cut(m, " ")
		if storepath.CheckBase(drv) != nil || !strings.HasSuffix(drv, ".drv") || len(drv) <= storepath.HashLen+1+len(".drv") {
			return fmt.Errorf("member %d: %q is not a .drv base name", i+1, drv)
		}
		if i < len(roots) && !roots[drv] {
			return fmt.Errorf("member %d: %q is not a root", i+1, drv)
		}
		for outs != "" {
			var o string
			o, outs, _ = strings.Cut(outs, " ")
			if storepath.CheckBase(o) != nil {
				return fmt.Errorf("member %d: output %q is not a store path base name", i+1, o)
			}
		}
	}
	return nil
}

// Save writes the record of k: members must be those of builder's
// Closure.Members for the closure of k's roots (roots first). The
// record is written to a temporary file and renamed into place, so a
// reader sees the whole record or none. A record larger than
// MaxRecordSize is not written. When the cache holds too much, the
// records least recently used are removed.
func (c *Cache) Save(k Key, members []builder.Member) error {
	if !k.valid() {
		return errors.New("closure cache: the key cannot be recorded")
	}
	var b bytes.Buffer
	b.WriteString(k.text())
	fmt.Fprintf(&b, "members %d\n", len(members))
	prefix := k.StoreDir + "/"
	base := func(p string) (string, error) {
		s, ok := strings.CutPrefix(p, prefix)
		if !ok || strings.ContainsAny(s, " \n/") {
			return "", fmt.Errorf("closure cache: %q is not a store path of %s", p, k.StoreDir)
		}
		return s, nil
	}
	for _, m := range members {
		d, err := base(m.DrvPath)
		if err != nil {
			return err
		}
		b.WriteString(d)
		for _, o := range m.Outputs {
			s, err := base(o)
			if err != nil {
				return err
			}
			b.WriteByte(' ')
			b.WriteString(s)
		}
		b.WriteByte('\n')
		if b.Len() > MaxRecordSize {
			return nil
		}
	}
	sum := sha256.Sum256(b.Bytes())
	b.WriteString("sha256 " + hex.EncodeToString(sum[:]) + "\n")
	// The record must read back as written: check it as Load would.
	if _, err := parse(b.Bytes(), k); err != nil {
		return fmt.Errorf("closure cache: record of %s: %w", strings.Join(k.Roots, " "), err)
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("closure cache: %w", err)
	}
	if err := checkOwned(c.dir, true); err != nil {
		return fmt.Errorf("closure cache: %w", err)
	}
	tmp, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("closure cache: %w", err)
	}
	_, err = tmp.Write(b.Bytes())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(c.dir, k.file()))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("closure cache: %w", err)
	}
	return c.prune()
}

// prune removes the records least recently used (oldest modification
// time: Load touches what it reads) while the cache holds more than
// MaxRecords records or MaxTotal bytes, and temporary files left by
// writers that died more than an hour ago.
func (c *Cache) prune() error {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("closure cache: %w", err)
	}
	type rec struct {
		name string
		size int64
		mod  time.Time
	}
	var recs []rec
	var total int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if strings.HasPrefix(e.Name(), ".tmp-") {
			if time.Since(fi.ModTime()) > time.Hour {
				os.Remove(filepath.Join(c.dir, e.Name()))
			}
			continue
		}
		if !strings.HasSuffix(e.Name(), ".closure") {
			continue
		}
		recs = append(recs, rec{e.Name(), fi.Size(), fi.ModTime()})
		total += fi.Size()
	}
	if len(recs) <= c.MaxRecords && total <= c.MaxTotal {
		return nil
	}
	slices.SortFunc(recs, func(a, b rec) int { return a.mod.Compare(b.mod) })
	// Down to three quarters, so that not every write prunes.
	left := len(recs)
	for _, r := range recs {
		if left <= c.MaxRecords*3/4 && total <= c.MaxTotal*3/4 {
			break
		}
		if err := os.Remove(filepath.Join(c.dir, r.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("closure cache: %w", err)
		}
		left--
		total -= r.size
	}
	return nil
}

// checkOwned checks that dir is a directory of the user's that no one
// else may write to (a record there is trusted to list a closure).
func checkOwned(dir string, isDir bool) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if err := owned(fi, isDir); err != nil {
		return fmt.Errorf("%s: %v", dir, err)
	}
	return nil
}

// owned checks that fi is a directory (isDir) or regular file of the
// effective user, not writable by group or others.
func owned(fi fs.FileInfo, isDir bool) error {
	switch {
	case isDir && !fi.IsDir():
		return errors.New("not a directory")
	case !isDir && !fi.Mode().IsRegular():
		return errors.New("not a regular file")
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) != os.Geteuid() {
		return errors.New("not owned by this user")
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return errors.New("writable by group or others")
	}
	return nil
}
