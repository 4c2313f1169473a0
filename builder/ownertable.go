package builder

import "math/bits"

// ownerTable maps the 32-character hash parts of the closure's store paths
// to their owners. Every window of hash characters in every rewritten or
// scanned string is looked up, so it is an open-addressing table keyed by
// the first 8 bytes (hash parts are uniformly distributed nixbase32) that
// compares the full key only when those match; it replaces a
// map[string]owner that cost more than the SHA-256 passes.
type ownerTable struct {
	slots []ownerSlot
	shift uint
	n     int
}

type ownerSlot struct {
	tag    uint64 // first 8 bytes of key; 0 = empty (hash characters are never 0)
	key    string
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

func tagOf(w string) uint64 {
	_ = w[7]
	return uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
}

// find returns the slot of w, or the empty slot where it would go.
func (t *ownerTable) find(w string) *ownerSlot {
	tag := tagOf(w)
	mask := len(t.slots) - 1
	i := int((tag * 0x9E3779B97F4A7C15) >> t.shift)
	for {
		s := &t.slots[i]
		if s.tag == 0 || s.tag == tag && s.key == w {
			return s
		}
		i = (i + 1) & mask
	}
}

// get returns the owner of the hash part w (32 characters).
func (t *ownerTable) get(w string) (owner, bool) {
	s := t.find(w)
	return s.o, s.tag != 0
}

// lookup is get that also says whether w is shared by twins.
func (t *ownerTable) lookup(w string) (o owner, shared, ok bool) {
	s := t.find(w)
	return s.o, s.shared, s.tag != 0
}

// put sets the owner of w, growing the table when it is half full.
func (t *ownerTable) put(w string, o owner) {
	if 2*(t.n+1) > len(t.slots) {
		old := t.slots
		*t = *newOwnerTable(len(old))
		for i := range old {
			if old[i].tag != 0 {
				*t.find(old[i].key) = old[i]
				t.n++
			}
		}
	}
	s := t.find(w)
	if s.tag == 0 {
		s.tag, s.key = tagOf(w), w
		t.n++
	}
	s.o = o
}

// markShared flags w (present) as shared by twins.
func (t *ownerTable) markShared(w string) {
	if s := t.find(w); s.tag != 0 {
		s.shared = true
	}
}
