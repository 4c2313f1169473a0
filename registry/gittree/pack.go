package gittree

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// pack is one pack file of the repository and its index, both mapped
// into memory read-only: their pages belong to the page cache, and a
// reader drops them from the process now and then (dropPages), so that
// reading every object of a large pack does not keep it all resident.
type pack struct {
	name  string // base name, for messages
	data  []byte
	size  int64
	idx   []byte
	unmap []func()
	n     int    // objects
	names []byte // n object ids of 20 bytes, sorted
	offs  []byte // n 4-byte offsets
	large []byte // 8-byte offsets for offs entries with the top bit set
}

// openPacks opens every pack of gitDir whose index is of version 2. A
// pack that cannot be opened is skipped: its objects are then read
// through go-git.
func openPacks(gitDir string) []*pack {
	idxs, _ := filepath.Glob(filepath.Join(gitDir, "objects", "pack", "pack-*.idx"))
	var out []*pack
	for _, p := range idxs {
		if pk, err := openPack(strings.TrimSuffix(p, ".idx")); err == nil {
			out = append(out, pk)
		}
	}
	return out
}

// openPack opens base.pack and base.idx and checks the index's layout.
func openPack(base string) (*pack, error) {
	idx, unmap, err := mapFile(base + ".idx")
	if err != nil {
		return nil, err
	}
	p := &pack{name: filepath.Base(base) + ".pack", idx: idx, unmap: []func(){unmap}}
	if err := p.parseIdx(); err != nil {
		p.close()
		return nil, err
	}
	data, unmap, err := mapFile(base + ".pack")
	if err != nil {
		p.close()
		return nil, err
	}
	p.unmap = append(p.unmap, unmap)
	if len(data) < 32 || !bytes.Equal(data[:4], []byte("PACK")) || int(binary.BigEndian.Uint32(data[8:])) != p.n {
		p.close()
		return nil, fmt.Errorf("pack %s: not a pack of the %d objects its index lists", p.name, p.n)
	}
	p.data, p.size = data, int64(len(data))
	return p, nil
}

// parseIdx checks a version 2 pack index and slices its tables.
func (p *pack) parseIdx() error {
	d := p.idx
	const fan = 8 + 256*4
	if len(d) < fan+40 || !bytes.Equal(d[:8], []byte{0xff, 't', 'O', 'c', 0, 0, 0, 2}) {
		return fmt.Errorf("pack index of %s: not a version 2 index", p.name)
	}
	prev := uint32(0)
	for i := 0; i < 256; i++ {
		v := binary.BigEndian.Uint32(d[8+4*i:])
		if v < prev {
			return fmt.Errorf("pack index of %s: fan-out table not sorted", p.name)
		}
		prev = v
	}
	n := int64(prev)
	rest := int64(len(d)) - fan - 40 - 28*n
	if rest < 0 || rest%8 != 0 {
		return fmt.Errorf("pack index of %s: size does not match its %d objects", p.name, n)
	}
	p.n = int(n)
	p.names = d[fan : fan+20*n]
	p.offs = d[fan+24*n : fan+28*n] // after the CRC32 table
	p.large = d[fan+28*n : fan+28*n+rest]
	return nil
}

func (p *pack) close() {
	for _, u := range p.unmap {
		u()
	}
	p.unmap, p.data, p.idx = nil, nil, nil
}

// find returns the offset of h in the pack.
func (p *pack) find(h plumbing.Hash) (int64, bool) {
	lo := 0
	if h[0] > 0 {
		lo = int(binary.BigEndian.Uint32(p.idx[8+4*(int(h[0])-1):]))
	}
	hi := int(binary.BigEndian.Uint32(p.idx[8+4*int(h[0]):]))
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := bytes.Compare(p.names[20*m:20*m+20], h[:]); {
		case c == 0:
			off := int64(binary.BigEndian.Uint32(p.offs[4*m:]))
			if off&0x80000000 != 0 {
				j := off & 0x7fffffff
				if 8*j+8 > int64(len(p.large)) {
					return 0, false
				}
				off = int64(binary.BigEndian.Uint64(p.large[8*j:]))
			}
			if off < 12 || off >= p.size-20 {
				return 0, false
			}
			return off, true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return 0, false
}

// findPacked returns the pack and offset of h.
func findPacked(packs []*pack, h plumbing.Hash) (int, int64, bool) {
	for i, p := range packs {
		if off, ok := p.find(h); ok {
			return i, off, true
		}
	}
	return -1, 0, false
}

// Object types, as packs number them.
const (
	objCommit   = 1
	objTree     = 2
	objBlob     = 3
	objTag      = 4
	objOFSDelta = 6
	objREFDelta = 7
)

var typeNames = [...]string{objCommit: "commit", objTree: "tree", objBlob: "blob", objTag: "tag"}

// maxDeltaChain caps the delta chain followed for one object (git writes
// at most 50 by default, 4095 at most).
const maxDeltaChain = 4095

// header is the header of one packed object.
type header struct {
	typ     int
	size    int64 // of the object, or of the delta data for a delta
	baseOff int64 // of an offset delta
	baseRef plumbing.Hash
	dataOff int64 // where the compressed data starts
}

// header decodes the object header at off.
func (p *pack) header(off int64) (header, error) {
	var h header
	if off < 12 || off >= p.size-20 {
		return h, fmt.Errorf("pack %s: offset %d out of range", p.name, off)
	}
	s := bytes.NewReader(p.data[off : p.size-20])
	trunc := func(err error) (header, error) {
		return h, fmt.Errorf("pack %s: object at %d: truncated header: %w", p.name, off, err)
	}
	c, err := s.ReadByte()
	if err != nil {
		return trunc(err)
	}
	h.typ = int(c>>4) & 7
	h.size = int64(c & 15)
	shift := 4
	for c&0x80 != 0 {
		if shift > 56 {
			return h, fmt.Errorf("pack %s: object at %d: size overflows", p.name, off)
		}
		if c, err = s.ReadByte(); err != nil {
			return trunc(err)
		}
		h.size |= int64(c&0x7f) << shift
		shift += 7
	}
	switch h.typ {
	case objOFSDelta:
		if c, err = s.ReadByte(); err != nil {
			return trunc(err)
		}
		rel := int64(c & 0x7f)
		for c&0x80 != 0 {
			if rel > 1<<50 {
				return h, fmt.Errorf("pack %s: delta at %d has a bad base offset", p.name, off)
			}
			if c, err = s.ReadByte(); err != nil {
				return trunc(err)
			}
			rel = (rel+1)<<7 | int64(c&0x7f)
		}
		h.baseOff = off - rel
		if h.baseOff < 12 || h.baseOff >= off {
			return h, fmt.Errorf("pack %s: delta at %d has a bad base offset", p.name, off)
		}
	case objREFDelta:
		if _, err := io.ReadFull(s, h.baseRef[:]); err != nil {
			return trunc(err)
		}
	case objCommit, objTree, objBlob, objTag:
	default:
		return h, fmt.Errorf("pack %s: object at %d has unknown type %d", p.name, off, h.typ)
	}
	h.dataOff = p.size - 20 - int64(s.Len())
	return h, nil
}

// corrupt reports an object whose data does not match its header: more
// or fewer bytes than it states, or a delta that does not fit its base or
// its declared size.
type corrupt struct{ msg string }

func (e *corrupt) Error() string {
	return e.msg + "; the repository is corrupt or crafted (git fsck reports it)"
}

func lie(want int64, more bool) error {
	if more {
		return &corrupt{fmt.Sprintf("inflates to more than the %s its header says", size(want))}
	}
	return &corrupt{fmt.Sprintf("inflates to fewer than the %s its header says", size(want))}
}

// applyDelta applies a git delta to base, producing at most limit bytes:
// the result's size is read from the delta before anything is made, and
// every instruction is checked against it and against base.
func applyDelta(base, delta []byte, limit int64) ([]byte, error) {
	varint := func() (int64, bool) {
		var v int64
		for shift := 0; len(delta) > 0 && shift < 63; shift += 7 {
			c := delta[0]
			delta = delta[1:]
			v |= int64(c&0x7f) << shift
			if c&0x80 == 0 {
				return v, true
			}
		}
		return 0, false
	}
	src, ok1 := varint()
	dst, ok2 := varint()
	if !ok1 || !ok2 {
		return nil, &corrupt{"is a delta with a malformed header"}
	}
	if dst > limit {
		return nil, &tooLarge{size: dst}
	}
	if src != int64(len(base)) {
		return nil, &corrupt{fmt.Sprintf("is a delta of a base of %s, but its base is %s", size(src), size(int64(len(base))))}
	}
	out := make([]byte, 0, dst)
	for len(delta) > 0 {
		c := delta[0]
		delta = delta[1:]
		switch {
		case c&0x80 != 0:
			var off, n int64
			for i := 0; i < 7; i++ {
				if c&(1<<i) == 0 {
					continue
				}
				if len(delta) == 0 {
					return nil, &corrupt{"is a delta with a truncated copy instruction"}
				}
				if i < 4 {
					off |= int64(delta[0]) << (8 * i)
				} else {
					n |= int64(delta[0]) << (8 * (i - 4))
				}
				delta = delta[1:]
			}
			if n == 0 {
				n = 0x10000
			}
			if off+n > int64(len(base)) || int64(len(out))+n > dst {
				return nil, &corrupt{fmt.Sprintf("is a delta that copies beyond its base or its declared size of %s", size(dst))}
			}
			out = append(out, base[off:off+n]...)
		case c != 0:
			n := int(c)
			if n > len(delta) || int64(len(out)+n) > dst {
				return nil, &corrupt{fmt.Sprintf("is a delta that inserts beyond its data or its declared size of %s", size(dst))}
			}
			out = append(out, delta[:n]...)
			delta = delta[n:]
		default:
			return nil, &corrupt{"is a delta with the reserved instruction 0"}
		}
	}
	if int64(len(out)) != dst {
		return nil, &corrupt{fmt.Sprintf("is a delta that makes %s, not the %s it declares", size(int64(len(out))), size(dst))}
	}
	return out, nil
}

// tooLarge reports an object of a delta chain over the limit.
type tooLarge struct {
	size int64
	base bool // the object is a delta base, not the object asked for
}

func (e *tooLarge) Error() string { return fmt.Sprintf("%d bytes", e.size) }
