package builder

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/poison-nix/poison/builder/internal/aterm"
)

var impureHash = sha256.Sum256([]byte("impure"))

func writeString(h hash.Hash, s string) {
	if len(s) > 0 {
		h.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
	}
}

// fixedHash is the hash-modulo of a fixed-output derivation (R7).
func fixedHash(o aterm.Output) [32]byte {
	h := sha256.New()
	writeString(h, "fixed:out:")
	writeString(h, o.HashAlgo)
	writeString(h, ":")
	writeString(h, o.Hash)
	writeString(h, ":")
	writeString(h, o.Path)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// modEntry is one input of appendModuloInputs.
type modEntry struct {
	h    [32]byte
	outs []string
}

// appendModuloInputs appends the inputDrvs section hashDerivationModulo
// hashes (as AppendInputs writes a list): each input's hash-modulo in hex,
// mapped to the SET of output names used, merged when two inputs have the
// same hash (R6, Nix ≥ 2.8). es is scratch space the caller reuses.
func appendModuloInputs(b []byte, es *[]modEntry, d *aterm.Derivation, hmOf func(j int) [32]byte) []byte {
	// Sorted by the raw hashes: lowercase hex keeps their order, and equal
	// hashes (merged) end up next to each other.
	e := (*es)[:0]
	for j, in := range d.InputDrvs {
		e = append(e, modEntry{hmOf(j), in.Outputs})
	}
	*es = e
	slices.SortFunc(e, func(a, b modEntry) int { return compareHash(&a.h, &b.h) })
	for k := 0; k < len(e); {
		m := k + 1
		for m < len(e) && e[m].h == e[k].h {
			m++
		}
		outs := e[k].outs
		if m > k+1 {
			var merged []string
			for _, x := range e[k:m] {
				merged = append(merged, x.outs...)
			}
			slices.Sort(merged)
			outs = slices.Compact(merged)
		}
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, `("`...)
		b = hex.AppendEncode(b, e[k].h[:])
		b = append(b, `",[`...)
		for x, o := range outs {
			if x > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, o...)
			b = append(b, '"')
		}
		b = append(b, "])"...)
		k = m
	}
	return b
}

// compareHash orders two hashes as bytes.Compare does, a word at a time.
func compareHash(a, b *[32]byte) int {
	for i := 0; i < 32; i += 8 {
		x, y := binary.BigEndian.Uint64(a[i:]), binary.BigEndian.Uint64(b[i:])
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// scratch is the memory a worker reuses from one derivation to the next
// while hashing or rewriting it: taken from scratchPool for one node, put
// back after; nothing in it outlives that.
type scratch struct {
	h      hash.Hash // SHA-256
	es     []modEntry
	hm     []byte // the inputDrvs section of the hash-modulo
	inText []byte // the new inputDrvs section
	inputs []aterm.InputDrv
	sp     []splice
	msp    []splice
	outPos []int
}

var scratchPool = sync.Pool{New: func() any { return &scratch{h: sha256.New()} }}

// origHash returns the hash-modulo of an unchanged derivation, given those
// of its inputs. For input-addressed and floating derivations it hashes the
// file bytes with the inputDrvs section replaced: the parser guarantees the
// file is exactly what Nix's unparse writes.
func (c *Closure) origHash(i int32) [32]byte {
	n := &c.nodes[i]
	switch n.kind {
	case kindFixed:
		return fixedHash(n.drv.Outputs[0])
	case kindImpure:
		return impureHash
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	sc.hm = appendModuloInputs(sc.hm[:0], &sc.es, n.drv, func(j int) [32]byte { return c.hm[n.inputs[j]] })
	h := sc.h
	h.Reset()
	writeString(h, n.raw[:n.drv.InputDrvsStart])
	h.Write(sc.hm)
	writeString(h, n.raw[n.drv.InputDrvsEnd:])
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// ensureHashes computes the original hash-modulo of every node in seeds and
// of their inputs, recursively, that is not known yet.
func (c *Closure) ensureHashes(ctx context.Context, seeds []int32) error {
	c.hmMu.Lock()
	defer c.hmMu.Unlock()
	inSet := make([]bool, len(c.nodes))
	var set []int32
	stack := append([]int32(nil), seeds...)
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if c.hmDone[i] || inSet[i] {
			continue
		}
		inSet[i] = true
		set = append(set, i)
		if k := c.nodes[i].kind; k == kindFixed || k == kindImpure {
			continue
		}
		stack = append(stack, c.nodes[i].inputs...)
	}
	if len(set) == 0 {
		return nil
	}
	err := c.runDAG(ctx, set, func(i int32, fn func(int32)) {
		if k := c.nodes[i].kind; k == kindFixed || k == kindImpure {
			return
		}
		for _, x := range c.nodes[i].inputs {
			fn(x)
		}
	}, func(i int32) error {
		c.hm[i] = c.origHash(i)
		return nil
	})
	if err != nil {
		return err
	}
	for _, i := range set {
		c.hmDone[i] = true
	}
	return nil
}

// runDAG runs fn on every node of set after it has run on the node's deps
// that are in set, with up to c.par goroutines. Small sets run in order.
func (c *Closure) runDAG(ctx context.Context, set []int32, deps func(int32, func(int32)), fn func(int32) error) error {
	slices.SortFunc(set, func(a, b int32) int { return int(c.pos[a] - c.pos[b]) })
	if c.par <= 1 || len(set) < 64 {
		for _, i := range set {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(i); err != nil {
				return err
			}
		}
		return nil
	}
	idx := make([]int32, len(c.nodes)) // node → position in set + 1, 0 = not in set
	for k, i := range set {
		idx[i] = int32(k) + 1
	}
	pending := make([]atomic.Int32, len(set))
	dependents := make([][]int32, len(set))
	for k, i := range set {
		deps(i, func(d int32) {
			if dk := idx[d] - 1; dk >= 0 {
				pending[k].Add(1)
				dependents[dk] = append(dependents[dk], int32(k))
			}
		})
	}
	ready := make(chan int32, len(set))
	for k := range set {
		if pending[k].Load() == 0 {
			ready <- int32(k)
		}
	}
	var (
		wg       sync.WaitGroup
		remain   atomic.Int64
		errOnce  sync.Once
		firstErr error
		stop     = make(chan struct{})
	)
	remain.Store(int64(len(set)))
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; close(stop) })
	}
	for w := 0; w < c.par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					fail(ctx.Err())
					return
				case k := <-ready:
					if err := fn(set[k]); err != nil {
						fail(err)
						return
					}
					for _, dk := range dependents[k] {
						if pending[dk].Add(-1) == 0 {
							ready <- dk
						}
					}
					if remain.Add(-1) == 0 {
						fail(nil)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}
