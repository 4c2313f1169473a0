package builder

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/sourcegraph/conc/pool"

	"github.com/poison-nix/poison/builder/internal/aterm"
	"github.com/poison-nix/poison/builder/internal/refscan"
	"github.com/poison-nix/poison/storepath"
)

// kind is the derivation type of Nix 2.8 (DerivationType), from its outputs.
type kind uint8

const (
	kindInputAddressed kind = iota // every output has a path
	kindDeferred                   // input-addressed, paths unknown until inputs are built
	kindFixed                      // fixed-output
	kindFloating                   // floating content-addressed
	kindImpure                     // __impure
)

// node is one derivation of a closure.
type node struct {
	path     string // full .drv path
	hashPart string
	name     string // derivation name (without .drv)
	raw      string // file content; drv refers to it
	drv      *aterm.Derivation
	kind     kind
	deferred bool // its hash-modulo is deferred (R7)

	structured bool // __structuredAttrs: the attribute lives in __json
	// hasDeferredEdge: some dependency is referenced through placeholders.
	hasDeferredEdge bool
	inputs          []int32 // aligned with drv.InputDrvs
	srcDrvs         []int32 // .drv paths among inputSrcs
	mentions        []int32 // closure members whose hash parts appear in the text
	// cands are the windows of the text that name another member, in
	// text order: what the hash replacement of a rewrite looks at (R4).
	cands []cand
	// spliceable: the rewrite may patch the file bytes in place of
	// re-serialising it (see rewriteSpliced).
	spliceable bool
}

// cand is a 32-character window of a derivation's text that is the hash
// part of another closure member.
type cand struct {
	off   int32 // offset of the window in the file, -1 when not in it
	owner owner
	where where
}

// where is the part of a derivation's text a cand lies in.
type where uint8

const (
	inValue where = iota // builder, an arg or an env value
	inJSON               // the __json env value
	inSrc                // an input source
	inOther              // the name or an env key
)

// owner is the closure member a hash part belongs to.
type owner struct {
	node int32
	out  int32 // output index, -1 for the .drv path
}

// Closure is the parsed derivation closure of a set of roots. It is
// immutable once loaded and safe for concurrent Rewrite calls.
type Closure struct {
	storeDir string
	par      int
	roots    []int32
	nodes    []node
	order    []int32 // topological: inputs first
	pos      []int32 // node → position in order

	// owners maps the hash part of every .drv path (out -1) and of every
	// output path but fixed ones to its member.
	owners *ownerTable
	// shared lists the owners of output hash parts that several members
	// have (twins: same outputs, different .drv paths, e.g. built from two
	// fixed-output derivations with the same result).
	shared map[string][]int32

	// isInput[i]: some member lists node i in its inputDrvs, so its
	// hash-modulo is needed (R7); a rewrite skips it for the others.
	isInput []bool

	hmMu   sync.Mutex
	hm     [][32]byte // hash-modulo of the original derivations, computed lazily
	hmDone []bool
}

// StoreDir returns the store directory of the closure.
func (c *Closure) StoreDir() string { return c.storeDir }

// Len returns the number of derivations in the closure.
func (c *Closure) Len() int { return len(c.nodes) }

// Roots returns the root .drv paths in argument order.
func (c *Closure) Roots() []string {
	out := make([]string, len(c.roots))
	for i, r := range c.roots {
		out[i] = c.nodes[r].path
	}
	return out
}

// Paths returns every .drv path of the closure in topological order
// (inputs first).
func (c *Closure) Paths() []string {
	out := make([]string, len(c.order))
	for i, n := range c.order {
		out[i] = c.nodes[n].path
	}
	return out
}

type loaded struct {
	path, parent string
	n            node
	inputs       []int32 // nodes of inputDrvs then .drv inputSrcs; -1 while not known
	unseen       []unseenInput
}

// unseenInput is an input path not seen before the level it was found in.
type unseenInput struct {
	at   int32 // position in loaded.inputs
	path string
}

// LoadClosure reads and parses every derivation reachable from roots
// (.drv paths) through inputDrvs and .drv paths in inputSrcs, each once.
func LoadClosure(ctx context.Context, opts LoadOptions, roots []string) (*Closure, error) {
	storeDir, realDir := storepath.Dirs(opts.StoreDir, opts.RealStoreDir)
	if !strings.HasPrefix(storeDir, "/") || (len(storeDir) > 1 && strings.HasSuffix(storeDir, "/")) {
		return nil, fmt.Errorf("load closure: store directory %q must be absolute without a trailing slash", storeDir)
	}
	par := opts.Parallelism
	if par <= 0 {
		par = runtime.GOMAXPROCS(0)
	}
	if len(roots) == 0 {
		return nil, errors.New("load closure: no derivations given")
	}
	c := &Closure{storeDir: storeDir, par: par}
	frontier := make([]loaded, 0, len(roots))
	// seen gives every .drv path found so far its node: nodes are
	// appended level by level in the order they were found, so the index
	// is known when the path is, and each input path is looked up once.
	seen := make(map[string]int32, len(roots))
	for _, r := range roots {
		if !strings.HasSuffix(r, ".drv") {
			return nil, fmt.Errorf("load closure: %s is not a .drv path", r)
		}
		if _, _, _, err := storepath.Split(storeDir, r); err != nil {
			return nil, fmt.Errorf("load closure: %v", err)
		}
		if _, ok := seen[r]; !ok {
			seen[r] = int32(len(frontier))
			frontier = append(frontier, loaded{path: r})
		}
	}
	var inputs [][]int32
	// One reader per worker: each keeps its own file arena.
	maxSize := opts.MaxDrvSize
	if maxSize <= 0 {
		maxSize = DefaultMaxDrvSize
	}
	readers := make([]reader, par)
	for i := range readers {
		readers[i].max = maxSize
	}
	for len(frontier) > 0 {
		p := pool.New().WithMaxGoroutines(par).WithContext(ctx).WithCancelOnError().WithFirstError()
		var claimed atomic.Int64
		for w := range min(par, len(frontier)) {
			rd := &readers[w]
			p.Go(func(ctx context.Context) error {
				for {
					i := int(claimed.Add(1)) - 1
					if i >= len(frontier) {
						return nil
					}
					if err := ctx.Err(); err != nil {
						return err
					}
					l := &frontier[i]
					if err := loadOne(rd, storeDir, realDir, !opts.NoVerify, l); err != nil {
						return err
					}
					// seen is only written between levels: resolve here, in
					// parallel, what was found before; the serial loop below
					// resolves the rest.
					l.inputs = make([]int32, len(rd.inputPaths))
					for j, in := range rd.inputPaths {
						if x, ok := seen[in]; ok {
							l.inputs[j] = x
						} else {
							l.inputs[j] = -1
							l.unseen = append(l.unseen, unseenInput{int32(j), in})
						}
					}
				}
			})
		}
		if err := p.Wait(); err != nil {
			return nil, err
		}
		var next []loaded
		// The nodes of this level take len(c.nodes) onwards, in frontier
		// order; those of the next level follow them.
		nextBase := int32(len(c.nodes) + len(frontier))
		c.nodes = slices.Grow(c.nodes, len(frontier))
		for i := range frontier {
			l := &frontier[i]
			c.nodes = append(c.nodes, l.n)
			for _, u := range l.unseen {
				in, j := u.path, u.at
				x, ok := seen[in]
				if !ok {
					x = nextBase + int32(len(next))
					seen[in] = x
					next = append(next, loaded{path: in, parent: l.path})
				}
				l.inputs[j] = x
			}
			inputs = append(inputs, l.inputs)
		}
		frontier = next
	}
	c.roots = make([]int32, 0, len(roots))
	for _, r := range roots {
		c.roots = append(c.roots, seen[r])
	}
	for i := range c.nodes {
		n := &c.nodes[i]
		k := len(n.drv.InputDrvs)
		n.inputs = inputs[i][:k:k]
		if len(inputs[i]) > k {
			n.srcDrvs = inputs[i][k:]
		}
	}
	c.isInput = make([]bool, len(c.nodes))
	for i := range c.nodes {
		for _, x := range c.nodes[i].inputs {
			c.isInput[x] = true
		}
	}
	if err := c.findMentions(ctx); err != nil {
		return nil, err
	}
	if err := c.sort(); err != nil {
		return nil, err
	}
	anyDeferred := false
	for _, i := range c.order {
		n := &c.nodes[i]
		dependsOnDeferred := false
		for _, in := range n.inputs {
			if c.nodes[in].deferred {
				dependsOnDeferred = true
			}
		}
		switch n.kind {
		case kindFloating, kindImpure, kindDeferred:
			n.deferred = true
			anyDeferred = true
		case kindInputAddressed:
			if dependsOnDeferred {
				return nil, fmt.Errorf("load derivation %s: it has output paths but depends on a derivation whose outputs are not known in advance (Nix would have deferred them)", n.path)
			}
		}
		if n.kind == kindDeferred && !dependsOnDeferred {
			return nil, fmt.Errorf("load derivation %s: its output paths are empty but none of its inputs is content-addressed or impure", n.path)
		}
	}
	for i := range c.nodes {
		if !anyDeferred {
			break
		}
		n := &c.nodes[i]
		c.edges(n, func(x int32) { n.hasDeferredEdge = n.hasDeferredEdge || c.nodes[x].deferred })
	}
	c.hm = make([][32]byte, len(c.nodes))
	c.hmDone = make([]bool, len(c.nodes))
	return c, nil
}

// loadOne reads, parses and validates one .drv file.
func loadOne(rd *reader, storeDir, realDir string, verify bool, l *loaded) error {
	fail := func(err error) error {
		if l.parent != "" {
			return fmt.Errorf("load derivation %s (input of %s): %w", l.path, l.parent, err)
		}
		return fmt.Errorf("load derivation %s: %w", l.path, err)
	}
	base, hashPart, name, err := storepath.Split(storeDir, l.path)
	if err != nil {
		return fail(err)
	}
	file := filepath.Join(realDir, base)
	data, err := rd.readFile(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fail(errors.New("no such file in the store; instantiate it first (nix-instantiate) or check the path"))
		}
		return fail(err)
	}
	// The bytes are never modified after this point; the parsed strings
	// share them.
	raw := unsafe.String(unsafe.SliceData(data), len(data))
	d, err := aterm.ParseLazy(raw)
	if err != nil {
		// readFile took one read for the whole file. On a filesystem
		// that reads short anyway (some network ones), read it again to
		// the end before calling it malformed.
		if full, rerr := rd.readAgain(file); rerr == nil && len(full) != len(data) {
			data = full
			raw = unsafe.String(unsafe.SliceData(data), len(data))
			d, err = aterm.ParseLazy(raw)
		}
		if err != nil {
			return fail(fmt.Errorf("malformed .drv file: %w", err))
		}
	}
	l.n = node{path: l.path, hashPart: hashPart, name: strings.TrimSuffix(name, ".drv"), raw: raw, drv: d}
	if err := validate(storeDir, &l.n); err != nil {
		return fail(err)
	}
	if verify {
		// A .drv is content-addressed (R8): a file whose bytes do not give
		// its own path was altered, and would give wrong paths downstream.
		refs := append(rd.refs[:0], d.InputSrcs...)
		for _, in := range d.InputDrvs {
			refs = append(refs, in.Path)
		}
		slices.Sort(refs)
		rd.refs = refs
		if p := storepath.Text(storeDir, name, sha256.Sum256(data), slices.Compact(refs)); p != l.path {
			return fail(fmt.Errorf("its content does not match its store path (it hashes to %s): the file was altered; delete it and instantiate it again", p))
		}
	}
	rd.inputPaths = rd.inputPaths[:0]
	for _, in := range d.InputDrvs {
		rd.inputPaths = append(rd.inputPaths, in.Path)
	}
	for _, src := range d.InputSrcs {
		if strings.HasSuffix(src, ".drv") {
			rd.inputPaths = append(rd.inputPaths, src)
		}
	}
	return nil
}

// reader reads .drv files into an arena: most files take one open, one
// read and one close, and share large allocations that the garbage
// collector never scans. The closure keeps every file (it is immutable),
// so the arena is never reused.
type reader struct {
	free []byte // unused tail of the current chunk
	max  int64  // the largest file read; DefaultMaxDrvSize when 0

	// Scratch of the file last read, reused by the next.
	refs       []string // its references, to check its path
	inputPaths []string // inputDrvs then .drv inputSrcs
}

// TooLargeError is the refusal of a .drv file larger than the limit.
type TooLargeError struct {
	Size, Max int64
}

func (e *TooLargeError) Error() string {
	limit := fmt.Sprintf("%d bytes", e.Max)
	if e.Max%(1<<20) == 0 {
		limit = fmt.Sprintf("%d MiB", e.Max>>20)
	}
	return fmt.Sprintf(".drv file of %d bytes, more than the %s a derivation may have: not a real derivation (delete it and instantiate it again)", e.Size, limit)
}

// readAgain reads path whole, to the limit, without the arena.
func (rd *reader) readAgain(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, rd.max+1))
	if err == nil && int64(len(b)) > rd.max {
		return nil, &TooLargeError{Size: int64(len(b)), Max: rd.max}
	}
	return b, err
}

const (
	arenaChunk = 1 << 20
	arenaSlack = 64 << 10 // a new chunk when less than this is left
)

// readFile returns the content of path. A read that does not fill the
// space offered has reached the end of the file: for regular files Linux
// returns short only at the end. A file read short anyway is a prefix
// of a derivation, which never parses (nothing may follow its closing
// bracket), so it cannot pass for another one.
func (rd *reader) readFile(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	if rd.max <= 0 {
		rd.max = DefaultMaxDrvSize
	}
	if len(rd.free) < arenaSlack {
		rd.free = make([]byte, arenaChunk)
	}
	n, err := readFull(fd, rd.free)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	if n < len(rd.free) {
		if int64(n) > rd.max {
			return nil, &TooLargeError{Size: int64(n), Max: rd.max}
		}
		data := rd.free[:n:n]
		rd.free = rd.free[n:]
		return data, nil
	}
	// Larger than the space left: a buffer of its own.
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, &fs.PathError{Op: "read", Path: path, Err: errors.New("not a regular file")}
	}
	if st.Size > rd.max {
		return nil, &TooLargeError{Size: st.Size, Max: rd.max}
	}
	buf := make([]byte, max(int(st.Size), n)+1)
	copy(buf, rd.free[:n])
	for {
		m, err := readFull(fd, buf[n:])
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			return buf[:n:n], nil
		}
		n += m
		if int64(n) > rd.max {
			// It grew while being read.
			return nil, &TooLargeError{Size: int64(n), Max: rd.max}
		}
		if n == len(buf) {
			buf = append(buf, make([]byte, min(len(buf), int(rd.max)+1-n+1))...)
		}
	}
}

// readFull is one read(2) retried on EINTR.
func readFull(fd int, b []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return 0, errors.New("not a regular file (it would block)")
		}
		return n, err
	}
}

var knownAlgos = map[string]bool{"md5": true, "sha1": true, "sha256": true, "sha512": true}

// validate checks what Nix checks when it reads a derivation, plus what the
// rewrite relies on, and sets n.kind and n.structured.
func validate(storeDir string, n *node) error {
	d := n.drv
	if n.name == "" {
		return errors.New("the derivation name is empty")
	}
	if len(d.Outputs) == 0 {
		return errors.New("the derivation has no outputs")
	}
	for i, o := range d.Outputs {
		if o.Name == "drv" {
			return errors.New("invalid output name \"drv\"")
		}
		if err := storepath.CheckName(storepath.OutputPathName(n.name, o.Name)); err != nil {
			return fmt.Errorf("output %q: %v", o.Name, err)
		}
		var k kind
		switch {
		case o.HashAlgo == "" && o.Hash != "":
			return fmt.Errorf("output %q has a hash but no hash algorithm", o.Name)
		case o.HashAlgo == "" && o.Path == "":
			k = kindDeferred
		case o.HashAlgo == "":
			k = kindInputAddressed
			if _, _, _, err := storepath.Split(storeDir, o.Path); err != nil {
				return fmt.Errorf("output %q: %v", o.Name, err)
			}
		case o.Hash == "impure" || o.Hash == "":
			k = kindFloating
			if o.Hash == "impure" {
				k = kindImpure
			}
			if !knownAlgos[strings.TrimPrefix(o.HashAlgo, "r:")] {
				return fmt.Errorf("output %q: unknown hash algorithm %q", o.Name, o.HashAlgo)
			}
			if o.Path != "" {
				return fmt.Errorf("output %q: a content-addressed output without a fixed hash must have an empty path", o.Name)
			}
		default:
			k = kindFixed
			want, err := storepath.Fixed(storeDir, o.HashAlgo, o.Hash, storepath.OutputPathName(n.name, o.Name))
			if err != nil {
				return fmt.Errorf("output %q: %v", o.Name, err)
			}
			if o.Path != want {
				return fmt.Errorf("fixed output %q: path %s does not match its hash (want %s): %w", o.Name, o.Path, want, aterm.ErrNotCanonical)
			}
		}
		if i == 0 {
			n.kind = k
		} else if k != n.kind {
			return errors.New("the derivation mixes output types (input-addressed, fixed, floating, impure)")
		}
	}
	if n.kind == kindFixed && (len(d.Outputs) != 1 || d.Outputs[0].Name != "out") {
		return errors.New("a fixed-output derivation must have exactly one output, named \"out\"")
	}
	for _, in := range d.InputDrvs {
		if !strings.HasSuffix(in.Path, ".drv") {
			return fmt.Errorf("input %s is not a .drv path", in.Path)
		}
		if _, _, _, err := storepath.Split(storeDir, in.Path); err != nil {
			return fmt.Errorf("input: %v", err)
		}
	}
	for _, src := range d.InputSrcs {
		if _, _, _, err := storepath.Split(storeDir, src); err != nil {
			return fmt.Errorf("input source: %v", err)
		}
	}
	if j, ok := d.EnvIndex("__json"); ok {
		_ = j
		n.structured = true
		for _, e := range d.Env {
			if e.Key != "__json" && !d.HasOutput(e.Key) {
				n.structured = false
				break
			}
		}
	}
	return nil
}

// findMentions records, for every derivation, the other closure members
// whose .drv or output hash parts appear in its name, builder, args, env values
// or input sources (R1). Fixed output paths never change, so mentions of
// them are no edges.
func (c *Closure) findMentions(ctx context.Context) error {
	c.owners = newOwnerTable(len(c.nodes) * 3)
	c.shared = make(map[string][]int32)
	for i := range c.nodes {
		n := &c.nodes[i]
		c.owners.put(n.hashPart, owner{int32(i), -1})
		if n.kind == kindFixed {
			continue
		}
		for k, o := range n.drv.Outputs {
			if o.Path == "" {
				continue
			}
			h := o.Path[len(c.storeDir)+1:][:storepath.HashLen]
			if prev, ok := c.owners.get(h); ok && prev.node != int32(i) {
				if len(c.shared[h]) == 0 {
					c.shared[h] = []int32{prev.node}
				}
				if !slices.Contains(c.shared[h], int32(i)) {
					c.shared[h] = append(c.shared[h], int32(i))
				}
				continue
			}
			c.owners.put(h, owner{int32(i), int32(k)})
		}
	}
	for h := range c.shared {
		c.owners.markShared(h)
	}
	p := pool.New().WithMaxGoroutines(c.par).WithContext(ctx).WithCancelOnError().WithFirstError()
	const chunk = 256
	for start := 0; start < len(c.nodes); start += chunk {
		end := min(start+chunk, len(c.nodes))
		p.Go(func(ctx context.Context) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var scratch []cand
			for i := start; i < end; i++ {
				mentionsOf(&c.nodes[i], int32(i), c.owners, c.shared, &scratch)
			}
			return nil
		})
	}
	return p.Wait()
}

// mentionsOf finds the windows of n's rewritable text (name, builder,
// args, env keys and values but those named after outputs, input sources)
// that are another member's hash part, and sets n.cands, n.mentions and
// n.spliceable. Builder, args and env values may be kept escaped
// (ParseLazy): a window that starts on the letter of an escape sequence
// (`\n`, `\r`) is not one of the value as Nix reads it and is skipped, so
// the windows found are exactly those of the unescaped values.
//
// scratch is space for the cands the caller reuses: they are copied out at
// their exact size.
func mentionsOf(n *node, self int32, owners *ownerTable, shared map[string][]int32, scratch *[]cand) {
	cands := (*scratch)[:0]
	n.spliceable = n.kind == kindInputAddressed || n.kind == kindFixed
	d := n.drv
	// seen is only made for a derivation that mentions many members (a
	// system's top-level one can mention thousands): a linear search
	// each would be quadratic.
	var seen map[int32]bool
	add := func(o int32) {
		switch {
		case o == self:
		case seen != nil:
			if !seen[o] {
				seen[o] = true
				n.mentions = append(n.mentions, o)
			}
		case !slices.Contains(n.mentions, o):
			n.mentions = append(n.mentions, o)
			if len(n.mentions) > 32 {
				seen = make(map[int32]bool, 2*len(n.mentions))
				for _, m := range n.mentions {
					seen[m] = true
				}
			}
		}
	}
	// own: w is the hash part of one of n's outputs.
	own := func(w string) bool {
		for _, o := range d.Outputs {
			if o.Path != "" && strings.HasPrefix(o.Path[len(o.Path)-len(path.Base(o.Path)):], w) {
				return true
			}
		}
		return false
	}
	base := uintptr(unsafe.Pointer(unsafe.StringData(n.raw)))
	// offset returns where s lies in the file, or -1.
	offset := func(s string) int {
		if s == "" {
			return -1
		}
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		if p < base || p+uintptr(len(s)) > base+uintptr(len(n.raw)) {
			return -1
		}
		return int(p - base)
	}
	scan := func(s string, wh where) {
		value := wh == inValue || wh == inJSON
		off := -2 // not looked up yet
		for i := refscan.Next(s, 0); i >= 0; i = refscan.Next(s, i+1) {
			if value && escapedAt(s, i) {
				continue
			}
			w := s[i : i+storepath.HashLen]
			o, sh, ok := owners.lookup(w)
			if !ok || own(w) {
				continue
			}
			if sh {
				n.spliceable = false // twins: decided per dependent
			}
			if o.node != self {
				c := cand{off: -1, owner: o, where: wh}
				if wh != inOther {
					if off == -2 {
						if off = offset(s); off < 0 {
							n.spliceable = false // a copy: cannot be patched in place
						}
					}
					if off >= 0 {
						c.off = int32(off + i)
					}
				}
				cands = append(cands, c)
			}
			add(o.node)
			for _, x := range shared[w] {
				add(x)
			}
		}
	}
	// The name is rewritten, so a member it names is an edge (env "name"
	// names it too in a derivation Nix wrote; one that does not must not
	// be rewritten before that member).
	scan(n.name, inOther)
	scan(d.Builder, inValue)
	for _, a := range d.Args {
		scan(a, inValue)
	}
	for _, e := range d.Env {
		if !d.HasOutput(e.Key) { // recomputed, never rewritten
			scan(e.Key, inOther)
			if e.Key == "__json" {
				scan(e.Value, inJSON)
			} else {
				scan(e.Value, inValue)
			}
		}
	}
	for _, s := range d.InputSrcs {
		scan(s, inSrc)
	}
	// Text order (input sources come before the builder).
	slices.SortStableFunc(cands, func(a, b cand) int { return int(a.off - b.off) })
	if len(cands) > 0 {
		n.cands = slices.Clone(cands)
	}
	*scratch = cands
	if !n.spliceable || n.kind == kindFixed {
		return
	}
	// In-place patching also needs every output's path and env value in
	// the file, as Nix writes them.
	for _, o := range d.Outputs {
		j, ok := d.EnvIndex(o.Name)
		if !ok || d.Env[j].Value != o.Path || offset(o.Path) < 0 || offset(d.Env[j].Value) < 0 {
			n.spliceable = false
			return
		}
	}
}

// escapedAt reports whether s[i] is the letter of an escape sequence of
// the ATerm string s (preceded by an odd number of backslashes).
func escapedAt(s string, i int) bool {
	bs := 0
	for j := i - 1; j >= 0 && s[j] == '\\'; j-- {
		bs++
	}
	return bs%2 == 1
}

// edges calls fn for every node n depends on.
func (c *Closure) edges(n *node, fn func(int32)) {
	for _, x := range n.inputs {
		fn(x)
	}
	for _, x := range n.srcDrvs {
		fn(x)
	}
	for _, x := range n.mentions {
		fn(x)
	}
}

// sort computes a topological order (inputs first) and rejects cycles.
func (c *Closure) sort() error {
	const (
		white = iota
		grey
		black
	)
	color := make([]uint8, len(c.nodes))
	c.order = make([]int32, 0, len(c.nodes))
	// A frame walks the edges of its node as edges lists them: inputs,
	// then srcDrvs, then mentions (next counts through all three).
	type frame struct {
		n    int32
		next int
	}
	var stack []frame
	// dep returns the k-th edge of node i, or false past the last.
	dep := func(i int32, k int) (int32, bool) {
		n := &c.nodes[i]
		if k < len(n.inputs) {
			return n.inputs[k], true
		}
		k -= len(n.inputs)
		if k < len(n.srcDrvs) {
			return n.srcDrvs[k], true
		}
		k -= len(n.srcDrvs)
		if k < len(n.mentions) {
			return n.mentions[k], true
		}
		return 0, false
	}
	visit := func(r int32) error {
		if color[r] != white {
			return nil
		}
		color[r] = grey
		stack = append(stack[:0], frame{n: r})
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			d, ok := dep(f.n, f.next)
			if !ok {
				color[f.n] = black
				c.order = append(c.order, f.n)
				stack = stack[:len(stack)-1]
				continue
			}
			f.next++
			switch color[d] {
			case grey:
				return fmt.Errorf("load closure: derivation %s depends on itself through %s (a cycle; the derivation files are corrupt)", c.nodes[d].path, c.nodes[f.n].path)
			case white:
				color[d] = grey
				stack = append(stack, frame{n: d})
			}
		}
		return nil
	}
	for _, r := range c.roots {
		if err := visit(r); err != nil {
			return err
		}
	}
	for i := range c.nodes {
		if err := visit(int32(i)); err != nil {
			return err
		}
	}
	c.pos = make([]int32, len(c.nodes))
	for p, i := range c.order {
		c.pos[i] = int32(p)
	}
	return nil
}
