package gittree

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
)

// pack is one pack file of the repository, its content mapped into
// memory (read-only), and its index.
type pack struct {
	name  string
	data  []byte
	unmap func()
	idx   *idxfile.MemoryIndex
}

// openPacks opens every pack of gitDir. A pack that cannot be opened is
// skipped: its objects are then read through go-git.
func openPacks(gitDir string) []*pack {
	idxs, _ := filepath.Glob(filepath.Join(gitDir, "objects", "pack", "pack-*.idx"))
	var out []*pack
	for _, p := range idxs {
		idx, err := readIdx(p)
		if err != nil {
			continue
		}
		name := strings.TrimSuffix(p, ".idx") + ".pack"
		data, unmap, err := mapFile(name)
		if err != nil {
			continue
		}
		out = append(out, &pack{name: name, data: data, unmap: unmap, idx: idx})
	}
	return out
}

func readIdx(path string) (*idxfile.MemoryIndex, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	idx := idxfile.NewMemoryIndex()
	if err := idxfile.NewDecoder(bufio.NewReader(fh)).Decode(idx); err != nil {
		return nil, fmt.Errorf("read pack index %s: %w", path, err)
	}
	return idx, nil
}

// find returns the pack and offset of h.
func findPacked(packs []*pack, h plumbing.Hash) (int, int64, bool) {
	for i, p := range packs {
		if off, err := p.idx.FindOffset(h); err == nil {
			return i, off, true
		}
	}
	return -1, 0, false
}

// Pack object types.
const (
	objCommit   = 1
	objTree     = 2
	objBlob     = 3
	objTag      = 4
	objOFSDelta = 6
	objREFDelta = 7
)

// maxDeltaChain caps the delta chain followed for one object (git writes
// at most 50 by default, 4095 at most).
const maxDeltaChain = 4095

// header decodes the object header at off: type, size (the inflated size
// of the object, or of the delta data for deltas), the base of a delta,
// and the offset of the compressed data.
func (p *pack) header(off int64) (typ int, size int64, baseOff int64, baseRef plumbing.Hash, dataOff int64, err error) {
	d := p.data
	if off < 12 || off >= int64(len(d)) {
		return 0, 0, 0, baseRef, 0, fmt.Errorf("pack %s: offset %d out of range", filepath.Base(p.name), off)
	}
	i := off
	next := func() (byte, bool) {
		if i >= int64(len(d)) {
			return 0, false
		}
		c := d[i]
		i++
		return c, true
	}
	trunc := fmt.Errorf("pack %s: object at %d is truncated", filepath.Base(p.name), off)
	c, _ := next()
	typ = int(c>>4) & 7
	size = int64(c & 15)
	shift := 4
	for c&0x80 != 0 {
		var ok bool
		if c, ok = next(); !ok || shift > 56 {
			return 0, 0, 0, baseRef, 0, trunc
		}
		size |= int64(c&0x7f) << shift
		shift += 7
	}
	switch typ {
	case objOFSDelta:
		c, ok := next()
		if !ok {
			return 0, 0, 0, baseRef, 0, trunc
		}
		rel := int64(c & 0x7f)
		for c&0x80 != 0 {
			if c, ok = next(); !ok || rel > 1<<50 {
				return 0, 0, 0, baseRef, 0, trunc
			}
			rel = (rel+1)<<7 | int64(c&0x7f)
		}
		baseOff = off - rel
		if baseOff < 12 || baseOff >= off {
			return 0, 0, 0, baseRef, 0, fmt.Errorf("pack %s: delta at %d has a bad base offset", filepath.Base(p.name), off)
		}
	case objREFDelta:
		if i+20 > int64(len(d)) {
			return 0, 0, 0, baseRef, 0, trunc
		}
		copy(baseRef[:], d[i:i+20])
		i += 20
	case objCommit, objTree, objBlob, objTag:
	default:
		return 0, 0, 0, baseRef, 0, fmt.Errorf("pack %s: object at %d has unknown type %d", filepath.Base(p.name), off, typ)
	}
	return typ, size, baseOff, baseRef, i, nil
}

// sizer checks the sizes of packed objects for one goroutine. It
// remembers the largest object of every delta chain below a base it has
// checked, so that a base shared by many objects is inflated once.
type sizer struct {
	packs []*pack
	max   map[location]int64 // a checked delta base: the largest size of its chain
	zr    io.ReadCloser
	buf   bytes.Reader
}

type location struct {
	pack int
	off  int64
}

func newSizer(packs []*pack) *sizer {
	return &sizer{packs: packs, max: map[location]int64{}}
}

// deltaSizes inflates the start of a delta's data and returns the base
// and result sizes it declares.
func (z *sizer) deltaSizes(p *pack, dataOff int64) (int64, int64, error) {
	z.buf.Reset(p.data[dataOff:])
	var err error
	if z.zr == nil {
		z.zr, err = zlib.NewReader(&z.buf)
	} else {
		err = z.zr.(zlib.Resetter).Reset(&z.buf, nil)
	}
	if err != nil {
		z.zr = nil
		return 0, 0, fmt.Errorf("pack %s: delta at %d: %w", filepath.Base(p.name), dataOff, err)
	}
	var hdr [20]byte
	n, err := io.ReadFull(z.zr, hdr[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, 0, fmt.Errorf("pack %s: delta at %d: %w", filepath.Base(p.name), dataOff, err)
	}
	b := hdr[:n]
	varint := func() (int64, bool) {
		var v int64
		shift := 0
		for len(b) > 0 && shift < 63 {
			c := b[0]
			b = b[1:]
			v |= int64(c&0x7f) << shift
			shift += 7
			if c&0x80 == 0 {
				return v, true
			}
		}
		return 0, false
	}
	src, ok1 := varint()
	dst, ok2 := varint()
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("pack %s: delta at %d has a malformed header", filepath.Base(p.name), dataOff)
	}
	return src, dst, nil
}

// tooLarge reports an object of a delta chain over the limit.
type tooLarge struct {
	size int64
	base bool // the object is a delta base, not the object asked for
}

func (e *tooLarge) Error() string { return fmt.Sprintf("%d bytes", e.size) }

// check returns the size of the object at off in pack k without inflating
// more than delta headers, and refuses (*tooLarge) an object, or any base
// of its delta chain, larger than limit: resolving a delta inflates its
// base whole, so a small result on a huge base is a bomb too.
func (z *sizer) check(k int, off int64, limit int64) (int64, error) {
	type step struct {
		at   location
		size int64
	}
	var chain []step
	result := int64(-1)
	at := location{k, off}
	chainMax := int64(0)
	for depth := 0; ; depth++ {
		if depth > maxDeltaChain {
			return 0, fmt.Errorf("pack %s: the delta chain of the object at %d is longer than %d", filepath.Base(z.packs[k].name), off, maxDeltaChain)
		}
		if m, ok := z.max[at]; ok && depth > 0 {
			chainMax = m
			break
		}
		p := z.packs[at.pack]
		typ, size, baseOff, baseRef, dataOff, err := p.header(at.off)
		if err != nil {
			return 0, err
		}
		if typ != objOFSDelta && typ != objREFDelta {
			if result < 0 {
				result = size
			}
			chain = append(chain, step{at, size})
			break
		}
		src, dst, err := z.deltaSizes(p, dataOff)
		if err != nil {
			return 0, err
		}
		if result < 0 {
			result = dst
		}
		if dst > limit {
			return 0, &tooLarge{size: dst, base: depth > 0}
		}
		if src > limit {
			return 0, &tooLarge{size: src, base: true}
		}
		chain = append(chain, step{at, max(src, dst)})
		if typ == objOFSDelta {
			at = location{at.pack, baseOff}
			continue
		}
		i, o, ok := findPacked(z.packs, baseRef)
		if !ok {
			return 0, fmt.Errorf("pack %s: delta base %s is missing", filepath.Base(p.name), baseRef)
		}
		at = location{i, o}
	}
	// Remember the largest size below every base of the chain.
	for i := len(chain) - 1; i >= 0; i-- {
		chainMax = max(chainMax, chain[i].size)
		if i > 0 {
			z.max[chain[i].at] = chainMax
		}
	}
	if chainMax > limit {
		return 0, &tooLarge{size: chainMax, base: chainMax != result}
	}
	return result, nil
}

// reader returns a go-git pack reader over p's memory, for one goroutine.
// Without a file system, go-git reads every object into memory, which
// checkSize has bounded.
func (p *pack) reader() *packfile.Packfile {
	return packfile.NewPackfileWithCache(p.idx, nil, &memFile{Reader: bytes.NewReader(p.data), name: p.name}, cache.NewObjectLRU(8*cache.MiByte), 0)
}

// memFile is a read-only billy.File over bytes, for packfile.NewPackfile.
type memFile struct {
	*bytes.Reader
	name string
}

func (m *memFile) Name() string              { return m.name }
func (m *memFile) Write([]byte) (int, error) { return 0, errors.New("read-only") }
func (m *memFile) Close() error              { return nil }
func (m *memFile) Lock() error               { return nil }
func (m *memFile) Unlock() error             { return nil }
func (m *memFile) Truncate(int64) error      { return errors.New("read-only") }
