package gitnet

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/poison-nix/poison/registry/gittree"
)

// DefaultMaxObject bounds the size of one object of a fetched pack: far
// above any file a registry holds (entries are a few hundred bytes), far
// below what would hurt. go-git's pack indexer holds every object whole
// in memory, so a 2 MB pack inflating to a 2 GB blob would cost 2 GB.
const DefaultMaxObject = 16 << 20

// ObjectTooLargeError is a pack holding an object above the limit.
type ObjectTooLargeError struct {
	Type   plumbing.ObjectType
	Offset int64
	Size   int64
	Max    int64
}

func (e *ObjectTooLargeError) Error() string {
	return fmt.Sprintf("the server's pack holds a %s of %s (at pack offset %d), more than the %s an object of a registry may have; refused before unpacking it",
		e.Type, human(e.Size), e.Offset, human(e.Max))
}

// storePack receives a pack into a temporary file (in dir, else the
// system's), checks the size of every object it declares, and only then
// indexes it into st: no object above max is ever inflated into memory.
// A repository on disk is indexed by gittree.IndexPack, in about 50 bytes
// per object (go-git's indexer holds several hundred: 500 MB for a pack of
// a million objects); others by go-git.
func storePack(st storer.Storer, r io.Reader, dir string, max int64) error {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	f, err := os.CreateTemp(dir, "poison-pack-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	if fst, ok := st.(*filesystem.Storage); ok {
		// IndexPack makes the checks of checkPack as it indexes.
		if err := f.Close(); err != nil {
			return err
		}
		if _, err := gittree.IndexPack(fst.Filesystem().Root(), f.Name(), max); err != nil {
			return indexError(err, max)
		}
		fst.ObjectStorage.Reindex() // go-git read the pack list before
		return nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := checkPack(f, max); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return packfile.UpdateObjectStorage(st, f)
}

// indexError reports a refusal of gittree.IndexPack as checkPack would.
func indexError(err error, max int64) error {
	var ie *gittree.IndexError
	if !errors.As(err, &ie) {
		return err
	}
	if errors.Is(err, gittree.ErrLimit) {
		t, terr := plumbing.ParseObjectType(ie.Kind)
		if terr != nil {
			t = plumbing.InvalidObject
		}
		return &ObjectTooLargeError{Type: t, Offset: ie.Offset, Size: ie.Size, Max: max}
	}
	return fmt.Errorf("the server's pack %s; refused before unpacking it", strings.TrimPrefix(ie.Error(), "pack "))
}

// LieError is a pack holding an object whose data inflates to more than
// its header says: go-git would inflate all of it into memory.
type LieError struct {
	Type   plumbing.ObjectType
	Offset int64
	Size   int64 // what the header says
}

func (e *LieError) Error() string {
	return fmt.Sprintf("the server's pack holds a %s (at pack offset %d) that inflates to more than the %s its header says; refused before unpacking it (a corrupt or crafted pack)",
		e.Type, e.Offset, human(e.Size))
}

// checkPack reads the object headers of a pack and refuses an object
// whose size (for a delta: the size of the object it produces) exceeds
// max, or whose data inflates to more than its header says. Objects are
// inflated into nothing, never past the size their header states, so
// memory and work stay small whatever the pack holds.
func checkPack(r io.ReadSeeker, max int64) error {
	s := packfile.NewScanner(r)
	_, n, err := s.Header()
	if err != nil {
		return fmt.Errorf("pack header: %w", err)
	}
	for i := uint32(0); i < n; i++ {
		oh, err := s.NextObjectHeader()
		if err != nil {
			return fmt.Errorf("pack object %d of %d: %w", i+1, n, err)
		}
		size := oh.Length
		if size > max {
			return &ObjectTooLargeError{Type: oh.Type, Offset: oh.Offset, Size: size, Max: max}
		}
		h := deltaHead{max: oh.Length}
		if _, _, err := s.NextObject(&h); err != nil {
			if errors.Is(err, errInflatesMore) || errors.Is(err, packfile.ErrInflatedSizeMismatch) {
				return &LieError{Type: oh.Type, Offset: oh.Offset, Size: oh.Length}
			}
			return fmt.Errorf("pack object %d of %d: %w", i+1, n, err)
		}
		if oh.Type == plumbing.OFSDeltaObject || oh.Type == plumbing.REFDeltaObject {
			if size, err = h.targetSize(); err != nil {
				return fmt.Errorf("pack object %d of %d: %w", i+1, n, err)
			}
			if size > max {
				return &ObjectTooLargeError{Type: oh.Type, Offset: oh.Offset, Size: size, Max: max}
			}
		}
	}
	return nil
}

// deltaHead receives an inflated object, refusing more than max bytes,
// and keeps its first bytes: for a delta, the sizes of its base and of
// its result.
type deltaHead struct {
	b      []byte
	n, max int64
}

var errInflatesMore = errors.New("inflates to more than its header says")

func (d *deltaHead) Write(p []byte) (int, error) {
	if d.n += int64(len(p)); d.n > d.max {
		return 0, errInflatesMore
	}
	if room := 20 - len(d.b); room > 0 {
		d.b = append(d.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// targetSize decodes the second size of the delta header.
func (d *deltaHead) targetSize() (int64, error) {
	b := d.b
	for k := 0; k < 2; k++ {
		var v int64
		shift := uint(0)
		for {
			if len(b) == 0 || shift > 56 {
				return 0, errors.New("truncated delta header")
			}
			c := b[0]
			b = b[1:]
			v |= int64(c&0x7f) << shift
			shift += 7
			if c&0x80 == 0 {
				break
			}
		}
		if k == 1 {
			return v, nil
		}
	}
	return 0, nil
}
