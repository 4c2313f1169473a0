package builder

import "math/bits"

// ownerTable maps the 32-character hash parts of the closure's store paths
// to their owners. Every window of hash characters in every rewritten or
// scanned string is looked up, so it is an open-addressing table keyed by
// the first 8 bytes (hash parts are uniformly distributed nixbase32) that
// compares the rest only when those match; it replaces a
// map[string]owner that cost more than the SHA-256 passes.
type ownerTable struct {
	slots []ownerSlot
	shift uint
	n     int
}

type ownerSlot struct {
	// key holds the 32 characters, 8 to a word; key[0] is the tag, 0 for
	// an empty slot (hash characters are never 0). Keeping them in the
	// slot compares a hit without reading the path it came from.
	key    [4]uint64
	o      owner
	shared bool // several members have this output hash (twins)
}

func newOwnerTable(capacity int) *ownerTable {
	size := 16
	for size < 2*capacity {
		size <<= 1
	}
	return &ownerTable{slots: make([]ownerSlot, size), shift: uint(64 - bits.TrailingZeros(uint(size)))}
}

func word(w string) uint64 {
	_ = w[7]
	return uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
}

func keyOf(w string) [4]uint64 {
	_ = w[31]
	return [4]uint64{word(w[0:8]), word(w[8:16]), word(w[16:24]), word(w[24:32])}
}

// find returns the slot of w (32 characters), or the empty slot where it
// would go.
func (t *ownerTable) find(w string) *ownerSlot {
	return t.findKey(keyOf(w))
}

func (t *ownerTable) findKey(k [4]uint64) *ownerSlot {
	mask := len(t.slots) - 1
	i := int((k[0] * 0x9E3779B97F4A7C15) >> t.shift)
	for {
		s := &t.slots[i]
		if s.key[0] == 0 || s.key == k {
			return s
		}
		i = (i + 1) & mask
	}
}

// get returns the owner of the hash part w (32 characters).
func (t *ownerTable) get(w string) (owner, bool) {
	s := t.find(w)
	return s.o, s.key[0] != 0
}

// lookup is get that also says whether w is shared by twins.
func (t *ownerTable) lookup(w string) (o owner, shared, ok bool) {
	s := t.find(w)
	return s.o, s.shared, s.key[0] != 0
}

// put sets the owner of w, growing the table when it is half full.
func (t *ownerTable) put(w string, o owner) {
	if 2*(t.n+1) > len(t.slots) {
		old := t.slots
		*t = *newOwnerTable(len(old))
		for i := range old {
			if old[i].key[0] != 0 {
				*t.findKey(old[i].key) = old[i]
				t.n++
			}
		}
	}
	s := t.find(w)
	if s.key[0] == 0 {
		s.key = keyOf(w)
		t.n++
	}
	s.o = o
}

// markShared flags w (present) as shared by twins.
func (t *ownerTable) markShared(w string) {
	if s := t.find(w); s.key[0] != 0 {
		s.shared = true
	}
}
