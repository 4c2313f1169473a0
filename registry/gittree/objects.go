package gittree

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// Objects reads the objects of one git directory, from its pack files and
// loose objects, never inflating more than the size asked for: an object
// whose header says it is larger is refused before anything is inflated,
// and one whose data holds more than its header says is refused at that
// header's size. Delta chains are resolved here, with a small cache of
// recent objects per reader, in memory that does not grow with the
// repository.
//
// Objects is safe for concurrent use.
type Objects struct {
	dir string

	mu     sync.Mutex
	opened bool
	packs  []*pack
	r      *reader // for Read, under mu
}

// OpenObjects returns the object reader of gitDir. Packs are opened on
// first use; Close releases them.
func OpenObjects(gitDir string) *Objects { return &Objects{dir: gitDir} }

// Close releases the pack files. Objects must not be used afterwards.
func (o *Objects) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range o.packs {
		p.close()
	}
	o.packs, o.r, o.opened = nil, nil, true
	return nil
}

// packList opens the packs on first use.
func (o *Objects) packList() []*pack {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.opened {
		o.opened = true
		o.packs = openPacks(o.dir)
	}
	return o.packs
}

// ErrNotFound is returned (wrapped) for an object in neither the packs
// nor the loose objects of the directory.
var ErrNotFound = errors.New("object not found")

// ObjectError is a refused or unreadable object: its id, its type, and why.
type ObjectError struct {
	ID   plumbing.Hash
	Kind string // "blob", "tree", "commit" or "tag"
	Err  error  // ErrNotFound, a limit, a corrupt object or a read failure
}

func (e *ObjectError) Error() string {
	return fmt.Sprintf("git %s %s: %v", e.Kind, e.ID, e.Err)
}
func (e *ObjectError) Unwrap() error { return e.Err }

// Read returns the content of object h, which must be of type kind
// ("blob", "tree", "commit" or "tag") and at most limit bytes. Errors are
// *ObjectError; errors.Is(err, ErrNotFound) for a missing object.
func (o *Objects) Read(h plumbing.Hash, kind string, limit int64) ([]byte, error) {
	return o.read(h, kind, limit, true)
}

// read is Read; without clone, the bytes may be shared with the cache and
// must not be changed.
func (o *Objects) read(h plumbing.Hash, kind string, limit int64, clone bool) ([]byte, error) {
	packs := o.packList()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.r == nil {
		o.r = newReader(o, packs)
	}
	b, shared, err := o.r.read(h, kind, limit)
	if shared && clone {
		b = bytes.Clone(b)
	}
	return b, err
}

// Size returns the size of object h, inflating no more than its header.
func (o *Objects) Size(h plumbing.Hash) (int64, error) {
	packs := o.packList()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.r == nil {
		o.r = newReader(o, packs)
	}
	return o.r.size(h)
}

// reader reads objects for one goroutine: its windows on the packs, its
// zlib state and its cache of recent objects (delta bases).
type reader struct {
	o     *Objects
	packs []*pack
	br    bytes.Reader
	zr    io.ReadCloser
	cache cache
	reads int // packed objects read since the pages were last dropped
}

func newReader(o *Objects, packs []*pack) *reader {
	return &reader{o: o, packs: packs, cache: cache{max: cacheBytes}}
}

const (
	// cacheBytes bounds the objects one reader keeps for later deltas.
	cacheBytes = 8 << 20
	// dropEvery is how many packed objects a reader reads between two
	// drops of the packs' pages from the process (dropPages).
	dropEvery = 1024
)

// stream returns a reader of pack k's data from pos: an io.ByteReader,
// so that zlib reads it without a buffer of its own.
func (r *reader) stream(k int, pos int64) *bytes.Reader {
	p := r.packs[k]
	r.br.Reset(p.data[min(pos, p.size):])
	return &r.br
}

// inflate reads the zlib stream of src, which must hold exactly n bytes:
// it never inflates more than n (+1 to see a lie).
func (r *reader) inflate(src io.Reader, n int64) ([]byte, error) {
	if err := r.zreset(src); err != nil {
		return nil, fmt.Errorf("inflate: %w", err)
	}
	return readExactly(r.zr, n)
}

// readExactly reads n bytes from zr and checks that it ends there.
func readExactly(zr io.Reader, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(zr, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, lie(n, false)
		}
		return nil, fmt.Errorf("inflate: %w", err)
	}
	var one [1]byte
	switch m, err := io.ReadFull(zr, one[:]); {
	case m > 0:
		return nil, lie(n, true)
	case err != io.EOF:
		return nil, fmt.Errorf("inflate: %w", err)
	}
	return b, nil
}

// location is an object in a pack.
type location struct {
	pack int
	off  int64
}

// read returns object h of type kind, at most limit bytes. shared is set
// when the bytes are also held by the cache (the caller must not change
// them).
func (r *reader) read(h plumbing.Hash, kind string, limit int64) (b []byte, shared bool, err error) {
	fail := func(err error) ([]byte, bool, error) {
		return nil, false, &ObjectError{ID: h, Kind: kind, Err: err}
	}
	if k, off, ok := findPacked(r.packs, h); ok {
		b, err := r.readAt(location{k, off}, kind, limit)
		if err != nil {
			return fail(err)
		}
		return b, true, nil
	}
	b, err = readLoose(r.o.dir, h, kind, limit)
	if err != nil {
		return fail(err)
	}
	return b, false, nil
}

// readAt reads the packed object at at, which must be of type kind. The
// bytes are shared with the cache.
func (r *reader) readAt(at location, kind string, limit int64) ([]byte, error) {
	if r.reads++; r.reads >= dropEvery {
		r.reads = 0
		for _, p := range r.packs {
			dropPages(p.data)
		}
	}
	typ, b, err := r.packed(at, limit)
	if err != nil {
		return nil, err
	}
	if typeNames[typ] != kind {
		return nil, fmt.Errorf("is a %s, not a %s", typeNames[typ], kind)
	}
	return b, nil
}

// packed reads the object at at, resolving its delta chain: every object
// of the chain (the base, each intermediate result) at most limit bytes,
// each checked before it is made.
func (r *reader) packed(at location, limit int64) (int, []byte, error) {
	var chain []header
	var locs []location
	typ := 0
	var base []byte
	for depth := 0; ; depth++ {
		if depth > maxDeltaChain {
			return 0, nil, fmt.Errorf("its delta chain is longer than %d", maxDeltaChain)
		}
		if e, ok := r.cache.get(at); ok {
			typ, base = e.typ, e.data
			break
		}
		p := r.packs[at.pack]
		hd, err := p.header(at.off)
		if err != nil {
			return 0, nil, err
		}
		if hd.typ != objOFSDelta && hd.typ != objREFDelta {
			if hd.size > limit {
				return 0, nil, &tooLarge{size: hd.size, base: depth > 0}
			}
			if base, err = r.inflate(r.stream(at.pack, hd.dataOff), hd.size); err != nil {
				return 0, nil, err
			}
			typ = hd.typ
			r.cache.put(at, hd.typ, base)
			break
		}
		// A delta of a result of at most limit bytes is hardly larger;
		// git writes at most about limit*128/127 + a few bytes.
		if hd.size > 2*limit+1024 {
			return 0, nil, fmt.Errorf("its delta data is %s, too much for an object of at most %s", size(hd.size), size(limit))
		}
		chain, locs = append(chain, hd), append(locs, at)
		if hd.typ == objOFSDelta {
			at = location{at.pack, hd.baseOff}
			continue
		}
		k, off, ok := findPacked(r.packs, hd.baseRef)
		if !ok {
			return 0, nil, fmt.Errorf("its delta base %s is missing", hd.baseRef)
		}
		at = location{k, off}
	}
	for i := len(chain) - 1; i >= 0; i-- {
		delta, err := r.inflate(r.stream(locs[i].pack, chain[i].dataOff), chain[i].size)
		if err != nil {
			return 0, nil, err
		}
		out, err := applyDelta(base, delta, limit)
		var big *tooLarge
		if errors.As(err, &big) {
			big.base = i > 0
			return 0, nil, big
		}
		if err != nil {
			return 0, nil, err
		}
		base = out
		r.cache.put(locs[i], typ, base)
	}
	return typ, base, nil
}

// size returns the size of object h without inflating more than a
// header.
func (r *reader) size(h plumbing.Hash) (int64, error) {
	if k, off, ok := findPacked(r.packs, h); ok {
		hd, err := r.packs[k].header(off)
		if err != nil {
			return 0, err
		}
		if hd.typ != objOFSDelta && hd.typ != objREFDelta {
			return hd.size, nil
		}
		if e, ok := r.cache.get(location{k, off}); ok {
			return int64(len(e.data)), nil
		}
		if err := r.zreset(r.stream(k, hd.dataOff)); err != nil {
			return 0, err
		}
		var hdr [20]byte
		n, err := io.ReadFull(r.zr, hdr[:])
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return 0, err
		}
		b := hdr[:n]
		var v [2]int64
		for j := range v {
			shift := 0
			for {
				if len(b) == 0 || shift > 56 {
					return 0, fmt.Errorf("pack %s: delta at %d has a malformed header", r.packs[k].name, off)
				}
				c := b[0]
				b = b[1:]
				v[j] |= int64(c&0x7f) << shift
				shift += 7
				if c&0x80 == 0 {
					break
				}
			}
		}
		return v[1], nil
	}
	f, err := os.Open(loosePath(r.o.dir, h))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, ErrNotFound
		}
		return 0, err
	}
	defer f.Close()
	zr, err := zlib.NewReader(f)
	if err != nil {
		return 0, err
	}
	_, n, err := looseHeader(zr)
	return n, err
}

func (r *reader) zreset(src io.Reader) error {
	var err error
	if r.zr == nil {
		r.zr, err = zlib.NewReader(src)
	} else {
		err = r.zr.(zlib.Resetter).Reset(src, nil)
	}
	if err != nil {
		r.zr = nil
	}
	return err
}

func loosePath(dir string, h plumbing.Hash) string {
	s := h.String()
	return filepath.Join(dir, "objects", s[:2], s[2:])
}

// readLoose reads a loose object: its header first, then exactly the
// size it states, at most limit.
func readLoose(dir string, h plumbing.Hash, kind string, limit int64) ([]byte, error) {
	f, err := os.Open(loosePath(dir, h))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	defer f.Close()
	zr, err := zlib.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("inflate: %w", err)
	}
	typ, n, err := looseHeader(zr)
	if err != nil {
		return nil, err
	}
	if typ != kind {
		return nil, fmt.Errorf("is a %s, not a %s", typ, kind)
	}
	if n > limit {
		return nil, &tooLarge{size: n}
	}
	return readExactly(zr, n)
}

// looseHeader reads "TYPE SIZE\x00", the header of a loose object.
func looseHeader(zr io.Reader) (string, int64, error) {
	var hdr []byte
	var c [1]byte
	for {
		if _, err := io.ReadFull(zr, c[:]); err != nil {
			return "", 0, fmt.Errorf("loose object header: %w", err)
		}
		if c[0] == 0 {
			break
		}
		if len(hdr) >= 32 {
			return "", 0, errors.New("loose object header is malformed")
		}
		hdr = append(hdr, c[0])
	}
	typ, num, ok := bytes.Cut(hdr, []byte(" "))
	n, err := strconv.ParseInt(string(num), 10, 64)
	if !ok || err != nil || n < 0 {
		return "", 0, errors.New("loose object header is malformed")
	}
	return string(typ), n, nil
}

// cache keeps recent packed objects for later deltas, as git's delta
// base cache does: direct-mapped by location (a newer object takes the
// slot of an older one), bounded in bytes.
type cache struct {
	max, used int64
	slots     []cached
}

type cached struct {
	at   location
	typ  int
	data []byte // nil: the slot is empty
}

const cacheSlots = 4096

func (c *cache) slot(at location) *cached {
	if c.slots == nil {
		c.slots = make([]cached, cacheSlots)
	}
	h := uint64(at.off)*0x9e3779b97f4a7c15 + uint64(at.pack)
	return &c.slots[h>>52] // the top 12 bits: cacheSlots = 1<<12
}

func (c *cache) get(at location) (*cached, bool) {
	e := c.slot(at)
	return e, e.data != nil && e.at == at
}

func (c *cache) put(at location, typ int, data []byte) {
	n := int64(len(data))
	if n > c.max/8 {
		return
	}
	e := c.slot(at)
	c.used -= int64(len(e.data))
	e.data = nil
	if c.used+n > c.max {
		return
	}
	*e = cached{at: at, typ: typ, data: data}
	c.used += n
}
