package builder

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/sourcegraph/conc/pool"

	"github.com/poison-nix/poison/builder/internal/aterm"
	"github.com/poison-nix/poison/builder/internal/refscan"
	"github.com/poison-nix/poison/builder/internal/structattrs"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/storepath"
)

// vnode is the state of one derivation in a view (canonical or final).
type vnode struct {
	changed bool
	path    string   // new .drv path
	name    string   // new derivation name (changes if it contains a hash part)
	outs    []string // new output paths, aligned with drv.Outputs
	hm      [32]byte // hash-modulo of the rewritten derivation
	refs    []string // references of the new .drv, sorted
	text    []byte   // the new .drv file, when the view keeps it
}

// view is one rewrite of the whole closure: attr[i] is the attribute value
// node i gets ("" = none).
type view struct {
	c        *Closure
	attr     string
	nodes    []vnode
	keepText bool
	// cur is the attribute state of every original derivation.
	cur []attrState
	// noSplice disables rewriteSpliced (tests compare both paths).
	noSplice bool
	// spliced counts the derivations rewriteSpliced rewrote.
	spliced atomic.Int64
	// emit, when set, receives each node run rewrites, once it is
	// rewritten (see Options.emit).
	emit func(int32)
}

// attrState is the attribute as found in the original derivation.
type attrState struct {
	present bool
	value   string // env value, or raw JSON value for structured attrs
}

// attrOf returns the attribute state of node i. scratch is a buffer the
// caller reuses across calls.
func (c *Closure) attrOf(i int32, attr string, scratch *[]byte) (attrState, error) {
	n := &c.nodes[i]
	if n.drv.HasOutput(attr) {
		return attrState{}, fmt.Errorf("derivation %s has an output named %s, the lock's attribute name: poison cannot tell the two apart; use another attribute name (registry.toml env)", n.path, attr)
	}
	if n.structured {
		j, _ := n.drv.EnvIndex("__json")
		js := n.drv.Env[j].Value
		escaped := n.drv.Escaped && strings.IndexByte(js, '\\') >= 0
		if !mayHaveKey(js, attr, escaped) {
			return attrState{}, nil
		}
		// Lookup reads up to the attribute only (Nix sorts the keys, and
		// an upper-case name comes early); a derivation whose attribute
		// changes is edited, which reads all of it. LookupEscaped reads
		// the escaped value in place.
		var raw string
		var ok bool
		var err error
		if escaped {
			raw, ok, err = structattrs.LookupEscaped(js, attr, scratch)
		} else {
			raw, ok, err = structattrs.Lookup(js, attr)
		}
		if err != nil {
			return attrState{}, fmt.Errorf("derivation %s: %v", n.path, err)
		}
		return attrState{present: ok, value: strings.Clone(raw)}, nil
	}
	j, ok := n.drv.EnvIndex(attr)
	if !ok {
		return attrState{}, nil
	}
	v := n.drv.Env[j].Value
	if n.drv.Escaped {
		v = aterm.Unescape(v)
	}
	return attrState{present: true, value: v}, nil
}

// wanted is the attribute state that serial gives a node.
func (c *Closure) wanted(i int32, serial int) attrState {
	if serial <= 0 {
		return attrState{}
	}
	v := strconv.Itoa(serial)
	if c.nodes[i].structured {
		v = structattrs.Quote(v)
	}
	return attrState{present: true, value: v}
}

// hmOf returns the hash-modulo of node i in view v.
func (v *view) hmOf(i int32) [32]byte {
	if v.nodes[i].changed {
		return v.nodes[i].hm
	}
	return v.c.hm[i]
}

func (v *view) drvPath(i int32) string {
	if v.nodes[i].changed {
		return v.nodes[i].path
	}
	return v.c.nodes[i].path
}

func (v *view) outPath(i int32, k int) string {
	if v.nodes[i].changed {
		return v.nodes[i].outs[k]
	}
	return v.c.nodes[i].drv.Outputs[k].Path
}

// run rewrites every node with changed[i] set, in dependency order. want
// gives the attribute state each changed node must end with.
func (v *view) run(ctx context.Context, want func(int32) attrState) error {
	c := v.c
	var set, seeds []int32
	for i := range v.nodes {
		if !v.nodes[i].changed {
			continue
		}
		set = append(set, int32(i))
		for _, x := range c.nodes[i].inputs {
			if !v.nodes[x].changed {
				seeds = append(seeds, x)
			}
		}
	}
	if len(set) == 0 {
		return nil
	}
	if err := c.ensureHashes(ctx, seeds); err != nil {
		return err
	}
	return c.runDAG(ctx, set, func(i int32, fn func(int32)) {
		c.edges(&c.nodes[i], func(x int32) {
			if v.nodes[x].changed {
				fn(x)
			}
		})
	}, func(i int32) error {
		if err := v.rewriteNode(i, want(i)); err != nil {
			return err
		}
		if v.emit != nil {
			v.emit(i)
		}
		return nil
	})
}

// rewriteNode computes the rewritten derivation i (docs/rewrite.md).
func (v *view) rewriteNode(i int32, want attrState) error {
	if want == v.cur[i] && !v.noSplice && v.rewriteSpliced(i) {
		v.spliced.Add(1)
		return nil
	}
	c := v.c
	n := &c.nodes[i]
	// The closure keeps escaped values escaped (ParseLazy): unescape them
	// into a scratch buffer that lives as long as this call.
	full := n.drv
	if full.Escaped {
		ap := arenaPool.Get().(*[]byte)
		defer arenaPool.Put(ap)
		full = unescapeValues(full, ap)
	}
	d := *full // shallow copy; slices are copied before modification
	d.InputDrvsStart, d.InputDrvsEnd = 0, 0

	// R4: hash parts and placeholders of changed dependencies. Hash parts
	// are looked up in the closure's owner index (every window that names
	// a member is an edge of n, found by the same scan at load); twins'
	// shared output hashes and placeholders go through the map.
	r := refscan.Replacer{Lookup: func(w string) (string, bool) {
		o, sh, ok := c.owners.lookup(w)
		if !ok || o.node == i || !v.nodes[o.node].changed {
			return "", false
		}
		if sh {
			return "", false // decided below, per dependent
		}
		if o.out < 0 {
			return c.hashOf(v.nodes[o.node].path), true
		}
		return c.hashOf(v.nodes[o.node].outs[o.out]), true
	}}
	var shared []string
	if n.hasDeferredEdge || len(c.shared) > 0 {
		c.edges(n, func(x int32) {
			if !v.nodes[x].changed {
				return
			}
			xn := &c.nodes[x]
			newHash := c.hashOf(v.nodes[x].path)
			for _, o := range xn.drv.Outputs {
				if o.Path != "" {
					if h := c.hashOf(o.Path); c.shared[h] != nil {
						shared = append(shared, h)
					}
				}
				if xn.deferred {
					r.Add(storepath.DownstreamPlaceholder(xn.hashPart, xn.name, o.Name)[1:],
						storepath.DownstreamPlaceholder(newHash, v.nodes[x].name, o.Name)[1:])
				}
			}
		})
	}
	slices.Sort(shared)
	for _, h := range slices.Compact(shared) {
		if !textContains(n.name, full, h) || ownOutputHash(c, n, h) {
			// Nothing to decide. n's own output hash (n is one of the
			// twins) is no mention (mentionsOf), and n's new outputs are
			// not known yet.
			continue
		}
		nh, err := v.resolveShared(n, h)
		if err != nil {
			return err
		}
		r.Add(h, nh)
	}
	// A name that contains a hash part changes with it (the name is
	// computed from the same string Nix re-evaluates).
	name, renamed := r.Replace(n.name)
	if renamed {
		if err := storepath.CheckName(name + ".drv"); err != nil {
			return fmt.Errorf("rewrite %s: new name: %v", n.path, err)
		}
	}
	{
		d.Builder, _ = r.Replace(d.Builder)
		argsCopied := false
		for k, a := range d.Args {
			if na, ok := r.Replace(a); ok {
				if !argsCopied {
					d.Args = slices.Clone(d.Args)
					argsCopied = true
				}
				d.Args[k] = na
			}
		}
		envCopied, keysChanged := false, false
		for k, e := range d.Env {
			if d.HasOutput(e.Key) {
				continue // recomputed below
			}
			nv, okv := r.Replace(e.Value)
			valueHits := r.Hits
			r.Hits = nil
			nk, okk := r.Replace(e.Key)
			if !okv && !okk {
				continue
			}
			if !envCopied {
				d.Env = slices.Clone(d.Env)
				envCopied = true
			}
			if okv && e.Key == "__json" && inJSONKey(nv, valueHits) {
				// A hash part inside an object key moves the member to
				// its new sorted place.
				sorted, err := structattrs.SortObjects(nv)
				if err != nil {
					return fmt.Errorf("rewrite %s: %v", n.path, err)
				}
				nv = sorted
			}
			d.Env[k] = aterm.EnvVar{Key: nk, Value: nv}
			keysChanged = keysChanged || okk
		}
		if keysChanged {
			slices.SortStableFunc(d.Env, func(a, b aterm.EnvVar) int { return strings.Compare(a.Key, b.Key) })
		}
		srcsChanged := false
		srcs := slices.Clone(d.InputSrcs)
		for k, s := range srcs {
			if ns, ok := r.Replace(s); ok {
				srcs[k] = ns
				srcsChanged = true
			}
		}
		if srcsChanged {
			slices.Sort(srcs)
			d.InputSrcs = slices.Compact(srcs)
		}
	}

	// R2: the attribute, unless it is already as wanted (then there is
	// nothing to edit, as in rewriteSpliced).
	if want != v.cur[i] {
		if err := v.setAttr(n, &d, want); err != nil {
			return err
		}
	}

	// R5: inputDrvs re-keyed.
	d.InputDrvs = v.newInputs(nil, n)

	// R6/R7: outputs and hash-modulo. The ATerm is written once, with the
	// old output paths; the masked and modulo hashes are computed by
	// splicing the written text, then the new paths (same length) are put
	// in place.
	vn := &v.nodes[i]
	vn.outs = make([]string, len(d.Outputs))
	for k, o := range d.Outputs {
		vn.outs[k] = o.Path
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	var ins []byte
	hmInputs := func() []byte {
		if ins == nil {
			sc.hm = appendModuloInputs(sc.hm[:0], &sc.es, full, func(j int) [32]byte { return v.hmOf(n.inputs[j]) })
			ins = sc.hm
		}
		return ins
	}
	var lay aterm.Layout
	var text []byte
	if v.keepText {
		text = make([]byte, 0, len(n.raw)+64)
	} else {
		tp := bufPool.Get().(*[]byte)
		defer func() { *tp = text[:0]; bufPool.Put(tp) }()
		text = (*tp)[:0]
	}
	text = aterm.AppendLayout(text, &d, &lay)
	switch n.kind {
	case kindInputAddressed:
		// Masked: output paths and the env values named after outputs
		// blank, inputs replaced by their hash-modulo.
		var masked [32]byte
		asNix := true // every output has its env variable, set to its path
		for _, o := range d.Outputs {
			j, ok := d.EnvIndex(o.Name)
			asNix = asNix && ok && d.Env[j].Value == o.Path
		}
		if asNix {
			sp := []splice{{lay.InputsStart, lay.InputsEnd, hmInputs()}}
			for k, o := range d.Outputs {
				sp = append(sp, splice{lay.OutPath[k], lay.OutPath[k] + len(o.Path), nil},
					splice{lay.EnvOut[k], lay.EnvOut[k] + len(o.Path), nil})
			}
			masked = hashSpliced(sc.h, text, sp)
		} else {
			// Nix masks by setting env[o] = "" (adding it when absent).
			m := d
			m.Outputs = slices.Clone(d.Outputs)
			for k, o := range d.Outputs {
				m.Outputs[k].Path = ""
				setEnv(&m, o.Name, "")
			}
			var ml aterm.Layout
			mt := aterm.AppendLayout(nil, &m, &ml)
			masked = hashSpliced(sc.h, mt, []splice{{ml.InputsStart, ml.InputsEnd, hmInputs()}})
		}
		inPlace := asNix
		for k, o := range d.Outputs {
			p := storepath.Output(c.storeDir, name, o.Name, masked)
			vn.outs[k] = p
			j, ok := d.EnvIndex(o.Name)
			if len(p) != len(o.Path) || !ok || d.Env[j].Value != o.Path {
				inPlace = false
			}
		}
		if inPlace {
			for k := range d.Outputs {
				copy(text[lay.OutPath[k]:], vn.outs[k])
				copy(text[lay.EnvOut[k]:], vn.outs[k])
			}
		} else {
			// Not as Nix writes it (an env output value differs from the
			// output path): set them and write again.
			d.Outputs = slices.Clone(d.Outputs)
			for k := range d.Outputs {
				d.Outputs[k].Path = vn.outs[k]
				setEnv(&d, d.Outputs[k].Name, vn.outs[k])
			}
			text = aterm.AppendLayout(text[:0], &d, &lay)
		}
		if c.isInput[i] { // only dependents use it
			vn.hm = hashSpliced(sc.h, text, []splice{{lay.InputsStart, lay.InputsEnd, hmInputs()}})
		}
	case kindFixed:
		vn.hm = fixedHash(d.Outputs[0])
	case kindImpure:
		vn.hm = impureHash
	default: // floating, deferred: outputs stay as they are
		if c.isInput[i] {
			vn.hm = hashSpliced(sc.h, text, []splice{{lay.InputsStart, lay.InputsEnd, hmInputs()}})
		}
	}

	// R8: the .drv path.
	refs := make([]string, 0, len(d.InputSrcs)+len(d.InputDrvs))
	refs = append(refs, d.InputSrcs...)
	for _, in := range d.InputDrvs {
		refs = append(refs, in.Path)
	}
	slices.Sort(refs)
	refs = slices.Compact(refs)
	vn.path = storepath.Text(c.storeDir, name+".drv", sha256.Sum256(text), refs)
	vn.name = name
	vn.refs = refs
	if v.keepText {
		vn.text = text
	}
	return nil
}

var arenaPool = sync.Pool{New: func() any { return new([]byte) }}

// unescapeValues returns a copy of d (parsed by ParseLazy) with its
// builder, args and env values as Nix reads them. The unescaped strings
// live in *arena, which is reused by the next call: nothing returned may
// outlive the caller's use of the arena.
func unescapeValues(d *aterm.Derivation, arena *[]byte) *aterm.Derivation {
	esc := func(v string) bool { return strings.IndexByte(v, '\\') >= 0 }
	size := 0
	if esc(d.Builder) {
		size += len(d.Builder)
	}
	for _, a := range d.Args {
		if esc(a) {
			size += len(a)
		}
	}
	for _, e := range d.Env {
		if esc(e.Value) {
			size += len(e.Value)
		}
	}
	if cap(*arena) < size {
		*arena = make([]byte, 0, size+size/4)
	}
	buf := (*arena)[:0]
	// Unescaping never lengthens a value, so buf never moves.
	unesc := func(v string) string {
		if !esc(v) {
			return v
		}
		start := len(buf)
		if buf = aterm.AppendUnescaped(buf, v); len(buf) == start {
			return ""
		}
		return unsafe.String(&buf[start], len(buf)-start)
	}
	u := *d
	u.Escaped = false
	u.Builder = unesc(d.Builder)
	if slices.ContainsFunc(d.Args, esc) {
		u.Args = make([]string, len(d.Args))
		for k, a := range d.Args {
			u.Args[k] = unesc(a)
		}
	}
	u.Env = make([]aterm.EnvVar, len(d.Env))
	for k, e := range d.Env {
		u.Env[k] = aterm.EnvVar{Key: e.Key, Value: unesc(e.Value)}
	}
	*arena = buf[:0]
	return &u
}

// splice replaces text[start:end] by repl while hashing.
type splice struct {
	start, end int
	repl       []byte
}

// hashSpliced returns sha256 of text with the splices applied, with h
// (a SHA-256 it resets).
func hashSpliced(h hash.Hash, text []byte, sp []splice) [32]byte {
	slices.SortFunc(sp, func(a, b splice) int { return a.start - b.start })
	h.Reset()
	at := 0
	for _, s := range sp {
		h.Write(text[at:s.start])
		h.Write(s.repl)
		at = s.end
	}
	h.Write(text[at:])
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// mayHaveKey is a fast pre-check for a JSON key in a JSON text, ATerm-escaped
// when escaped: attr between two quotes that delimit a JSON string (not
// escaped in the JSON), the second followed by ':'. attr needs no escaping.
func mayHaveKey(js, attr string, escaped bool) bool {
	for from := 0; ; {
		k := strings.Index(js[from:], attr)
		if k < 0 {
			return false
		}
		k += from
		from = k + 1
		if k == 0 || js[k-1] != '"' {
			continue
		}
		bs := 0 // backslashes before the opening quote
		for j := k - 2; j >= 0 && js[j] == '\\'; j-- {
			bs++
		}
		rest := js[k+len(attr):]
		if escaped {
			// m JSON backslashes before a JSON quote are written as
			// 2m+1 backslashes: the quote delimits when m is even.
			if bs%4 == 1 && strings.HasPrefix(rest, `\":`) {
				return true
			}
		} else if bs%2 == 0 && strings.HasPrefix(rest, `":`) {
			return true
		}
	}
}

// inJSONKey reports whether one of the replaced ranges of the compact JSON
// text js lies in an object key: the string around it is followed by ':'.
func inJSONKey(js string, hits [][2]int) bool {
	for _, h := range hits {
		for j := h[1]; j < len(js); j++ {
			if js[j] == '\\' {
				j++
				continue
			}
			if js[j] == '"' {
				if j+1 < len(js) && js[j+1] == ':' {
					return true
				}
				break
			}
		}
	}
	return false
}

// textContains reports whether the rewritable text of n contains h.
func textContains(name string, d *aterm.Derivation, h string) bool {
	if strings.Contains(name, h) || strings.Contains(d.Builder, h) {
		return true
	}
	for _, a := range d.Args {
		if strings.Contains(a, h) {
			return true
		}
	}
	for _, e := range d.Env {
		if !d.HasOutput(e.Key) && (strings.Contains(e.Value, h) || strings.Contains(e.Key, h)) {
			return true
		}
	}
	for _, src := range d.InputSrcs {
		if strings.Contains(src, h) {
			return true
		}
	}
	return false
}

// ownOutputHash reports whether h is the hash part of one of n's outputs.
func ownOutputHash(c *Closure, n *node, h string) bool {
	for _, o := range n.drv.Outputs {
		if o.Path != "" && c.hashOf(o.Path) == h {
			return true
		}
	}
	return false
}

// hashOf returns the hash part of a store path.
func (c *Closure) hashOf(p string) string { return p[len(c.storeDir)+1:][:storepath.HashLen] }

// resolveShared decides what an output hash part shared by twins (several
// members with the same output path) becomes in derivation n: the owners
// must agree, or n's inputDrvs must say which twin provides it. Otherwise
// the origin is undecidable and the rewrite fails closed.
func (v *view) resolveShared(n *node, h string) (string, error) {
	c := v.c
	owners := c.shared[h]
	valueOf := func(o int32, outName string) (string, bool) {
		for k, out := range c.nodes[o].drv.Outputs {
			if out.Path != "" && c.hashOf(out.Path) == h && (outName == "" || out.Name == outName) {
				return c.hashOf(v.outPath(o, k)), true
			}
		}
		return "", false
	}
	agree := func(vals []string) (string, bool) {
		if len(vals) == 0 {
			return "", false
		}
		for _, x := range vals[1:] {
			if x != vals[0] {
				return "", false
			}
		}
		return vals[0], true
	}
	var all []string
	for _, o := range owners {
		if x, ok := valueOf(o, ""); ok {
			all = append(all, x)
		}
	}
	if x, ok := agree(all); ok {
		return x, nil
	}
	var cands []string
	for j, in := range n.drv.InputDrvs {
		t := n.inputs[j]
		if !slices.Contains(owners, t) {
			continue
		}
		for _, o := range in.Outputs {
			if x, ok := valueOf(t, o); ok {
				cands = append(cands, x)
			}
		}
	}
	if x, ok := agree(cands); ok {
		return x, nil
	}
	var names []string
	for _, o := range owners {
		names = append(names, c.nodes[o].path)
	}
	return "", fmt.Errorf("rewrite %s: it refers to an output hash %s that derivations %s share and that changes for only some of them; which one it means cannot be decided, so poison refuses to guess (poison all of them, or none)",
		n.path, h, strings.Join(names, ", "))
}

// setEnv sets key in d.Env (sorted), copying the slice first.
func setEnv(d *aterm.Derivation, key, value string) {
	j, ok := d.EnvIndex(key)
	env := make([]aterm.EnvVar, 0, len(d.Env)+1)
	env = append(env, d.Env[:j]...)
	if ok {
		env = append(env, aterm.EnvVar{Key: key, Value: value})
		env = append(env, d.Env[j+1:]...)
	} else {
		env = append(env, aterm.EnvVar{Key: key, Value: value})
		env = append(env, d.Env[j:]...)
	}
	d.Env = env
}

// setAttr gives d the wanted attribute state (R2, R3).
func (v *view) setAttr(n *node, d *aterm.Derivation, want attrState) error {
	if n.structured {
		j, _ := d.EnvIndex("__json")
		js := d.Env[j].Value
		var err error
		if want.present {
			js, err = structattrs.Set(js, v.attr, want.value)
		} else {
			js, _, err = structattrs.Remove(js, v.attr)
		}
		if err != nil {
			return fmt.Errorf("rewrite %s: %v", n.path, err)
		}
		if js != d.Env[j].Value {
			setEnv(d, "__json", js)
		}
		return nil
	}
	j, ok := d.EnvIndex(v.attr)
	switch {
	case want.present && (!ok || d.Env[j].Value != want.value):
		if n.drv.HasOutput(v.attr) {
			return fmt.Errorf("rewrite %s: the attribute %s is also an output name", n.path, v.attr)
		}
		setEnv(d, v.attr, want.value)
	case !want.present && ok:
		env := make([]aterm.EnvVar, 0, len(d.Env)-1)
		env = append(env, d.Env[:j]...)
		d.Env = append(env, d.Env[j+1:]...)
	}
	return nil
}

// Rewrite computes the closure Nix would have produced had every poisoned
// derivation carried its serial attribute (docs/rewrite.md).
//
// Every derivation is first canonicalised (the attribute removed, with the
// effect propagated downstream), its serial looked up by its canonical
// .drv and output base names, then the attribute is set to the serial (or
// left out for serial 0). Derivations whose result equals the original
// keep their paths and are not re-serialised.
func Rewrite(ctx context.Context, c *Closure, opts Options) (*Result, error) {
	lk := opts.Lock
	if lk == nil {
		lk = lock.New(lock.Source{}, lock.DefaultEnv)
	}
	attr := lk.Env
	if attr == "" {
		attr = lock.DefaultEnv
	}
	if err := lock.ValidateEnv(attr); err != nil {
		// It is written unescaped into env and __json, and removed from
		// every derivation that has it when canonicalising.
		return nil, fmt.Errorf("rewrite: attribute name: %w", err)
	}
	if lk.Store() != c.storeDir && (len(lk.Derivations) > 0 || len(lk.Outputs) > 0) {
		return nil, fmt.Errorf("rewrite: the lock is for store %s but the derivations are in %s", lk.Store(), c.storeDir)
	}
	n := len(c.nodes)
	cur := make([]attrState, n)
	p := pool.New().WithMaxGoroutines(c.par).WithContext(ctx).WithCancelOnError().WithFirstError()
	const chunk = 512
	for start := 0; start < n; start += chunk {
		end := min(start+chunk, n)
		p.Go(func(ctx context.Context) error {
			var scratch []byte
			for i := start; i < end; i++ {
				s, err := c.attrOf(int32(i), attr, &scratch)
				if err != nil {
					return fmt.Errorf("rewrite: %v", err)
				}
				cur[i] = s
			}
			return ctx.Err()
		})
	}
	if err := p.Wait(); err != nil {
		return nil, err
	}
	anyAttr := slices.ContainsFunc(cur, func(s attrState) bool { return s.present })

	// Canonical view: every attribute removed.
	canon := &view{c: c, attr: attr, nodes: make([]vnode, n), cur: cur, noSplice: opts.noSplice}
	if anyAttr {
		propagate(c, canon, func(i int32) bool { return cur[i].present })
		if err := canon.run(ctx, func(int32) attrState { return attrState{} }); err != nil {
			return nil, err
		}
	}

	// Serials by canonical paths.
	serials := make([]int, n)
	byName := make([]bool, n)
	var outBases []string
	canonName := func(i int32) string {
		if canon.nodes[i].changed {
			return canon.nodes[i].name
		}
		return c.nodes[i].name
	}
	for i := range c.nodes {
		nd := &c.nodes[i]
		outBases = outBases[:0]
		for k := range nd.drv.Outputs {
			if p := canon.outPath(int32(i), k); p != "" {
				outBases = append(outBases, p[len(c.storeDir)+1:])
			}
		}
		s := lk.Serial(canon.drvPath(int32(i))[len(c.storeDir)+1:], outBases)
		if opts.ByName {
			if ns := lk.NameSerial(canonName(int32(i))); ns > s {
				s, byName[i] = ns, true
			}
		}
		serials[i] = s
	}
	entries := func(i int32) []string {
		var es []string
		if b := canon.drvPath(i)[len(c.storeDir)+1:]; lk.Derivations[b] == serials[i] {
			es = append(es, "derivations/"+b)
		}
		for k := range c.nodes[i].drv.Outputs {
			if p := canon.outPath(i, k); p != "" && lk.Outputs[p[len(c.storeDir)+1:]] == serials[i] {
				es = append(es, "outputs/"+p[len(c.storeDir)+1:])
			}
		}
		if opts.ByName && lk.NameSerial(canonName(i)) == serials[i] {
			es = append(es, "names/"+canonName(i))
		}
		slices.Sort(es)
		return slices.Compact(es)
	}

	final := &view{c: c, attr: attr, nodes: make([]vnode, n), keepText: !opts.NoATerm, cur: cur, noSplice: opts.noSplice}
	if opts.emit != nil {
		final.emit = func(i int32) { opts.emit(final.drv(i)) }
	}
	propagate(c, final, func(i int32) bool { return c.wanted(i, serials[i]) != cur[i] })
	if err := final.run(ctx, func(i int32) attrState { return c.wanted(i, serials[i]) }); err != nil {
		return nil, err
	}

	res := &Result{DrvPaths: make(map[string]string, n), spliced: int(final.spliced.Load())}
	res.Roots = make([]string, 0, len(c.roots))
	for _, r := range c.roots {
		res.Roots = append(res.Roots, final.drvPath(r))
	}
	var changed []int32 // in topological order
	for _, i := range c.order {
		if final.nodes[i].changed {
			changed = append(changed, i)
		}
	}
	if len(changed) > 0 {
		res.Changed = make([]Drv, len(changed))
	}
	// The two maps and the changed derivations are filled concurrently
	// (map inserts are most of the serial time of a large rewrite).
	var wg sync.WaitGroup
	wg.Go(func() {
		for k, i := range changed {
			res.Changed[k] = final.drv(i)
		}
	})
	wg.Go(func() {
		outs := 0
		for i := range c.nodes {
			outs += len(c.nodes[i].drv.Outputs)
		}
		res.OutPaths = make(map[string]string, outs)
		for i := range c.nodes {
			for k, o := range c.nodes[i].drv.Outputs {
				if o.Path != "" {
					res.OutPaths[o.Path] = final.outPath(int32(i), k)
				}
			}
		}
	})
	for i := range c.nodes {
		res.DrvPaths[c.nodes[i].path] = final.drvPath(int32(i))
	}
	wg.Wait()
	for _, i := range c.order {
		nd := &c.nodes[i]
		if serials[i] > 0 {
			p := Poison{
				DrvPath:          nd.path,
				CanonicalDrvPath: canon.drvPath(i),
				NewDrvPath:       final.drvPath(i),
				Name:             nd.name,
				Serial:           serials[i],
				ByName:           byName[i],
				FixedOutput:      nd.kind == kindFixed,
				Entries:          entries(i),
			}
			res.Poisoned = append(res.Poisoned, p)
			if p.FixedOutput && opts.Warn != nil {
				opts.Warn(Warning{DrvPath: nd.path, Message: fmt.Sprintf(
					"fixed-output derivation %s poisoned with serial %d: its output path does not change, so nothing will rebuild; delete the path %s from the store and fetch it again",
					nd.path, serials[i], nd.drv.Outputs[0].Path)})
			}
		}
	}
	return res, nil
}

// drv returns the rewritten derivation of changed node i.
func (v *view) drv(i int32) Drv {
	vn := &v.nodes[i]
	outs := make(map[string]string, len(vn.outs))
	for k, o := range v.c.nodes[i].drv.Outputs { // outputs keep their names
		outs[o.Name] = vn.outs[k]
	}
	return Drv{
		Path:       vn.path,
		OldPath:    v.c.nodes[i].path,
		Name:       vn.name,
		ATerm:      vn.text,
		References: vn.refs,
		Outputs:    outs,
	}
}

// propagate marks self-changed nodes and everything depending on them.
func propagate(c *Closure, v *view, self func(int32) bool) {
	changed := func(xs []int32) bool {
		for _, x := range xs {
			if v.nodes[x].changed {
				return true
			}
		}
		return false
	}
	for _, i := range c.order {
		n := &c.nodes[i]
		v.nodes[i].changed = self(i) || changed(n.inputs) || changed(n.srcDrvs) || changed(n.mentions)
	}
}

// rewriteSpliced is rewriteNode for the common case, by patching the file
// bytes instead of re-serialising the derivation: an input-addressed
// derivation written as Nix writes it (see mentionsOf) whose attribute
// stays as it is and whose changed dependencies show only in its
// builder, args, env values and inputDrvs. Every replaced hash part has the
// same length and the inputDrvs section is rewritten whole, so the result
// is byte for byte what rewriteNode writes. It returns false, having
// changed nothing, when the derivation needs the general path: placeholders,
// a changed hash in its name, an env key or an input source, or in a key
// of its __json.
func (v *view) rewriteSpliced(i int32) bool {
	c := v.c
	n := &c.nodes[i]
	if !n.spliceable || n.hasDeferredEdge {
		return false
	}
	// The hash windows to patch, as refscan.Replacer picks them: left to
	// right, a replaced window hides the windows overlapping it.
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	sp := sc.sp[:0]
	defer func() { sc.sp = sp[:0] }()
	last := int32(-1)
	srcsChanged := false
	for _, cd := range n.cands {
		if !v.nodes[cd.owner.node].changed || (cd.off >= 0 && cd.off < last) {
			continue
		}
		if cd.off < 0 || cd.where == inJSON && jsonKeyAt(n.raw, int(cd.off)+storepath.HashLen) {
			return false
		}
		srcsChanged = srcsChanged || cd.where == inSrc
		var p string
		if cd.owner.out < 0 {
			p = v.nodes[cd.owner.node].path
		} else {
			p = v.nodes[cd.owner.node].outs[cd.owner.out]
		}
		sp = append(sp, splice{int(cd.off), int(cd.off) + storepath.HashLen, unsafe.Slice(unsafe.StringData(c.hashOf(p)), storepath.HashLen)})
		last = cd.off + storepath.HashLen
	}
	d := n.drv
	inputs := v.newInputs(sc.inputs[:0], n)
	sc.inputs = inputs
	inText := aterm.AppendInputs(sc.inText[:0], inputs)
	sc.inText = inText
	sp = append(sp, splice{d.InputDrvsStart, d.InputDrvsEnd, inText})
	slices.SortFunc(sp, func(a, b splice) int { return a.start - b.start })

	// The new text, with the old output paths for now.
	vn := &v.nodes[i]
	var text []byte
	if v.keepText {
		text = make([]byte, 0, len(n.raw)+len(inText)-(d.InputDrvsEnd-d.InputDrvsStart))
	} else {
		tp := bufPool.Get().(*[]byte)
		defer func() { *tp = text[:0]; bufPool.Put(tp) }()
		text = (*tp)[:0]
	}
	at := 0
	for _, s := range sp {
		text = append(text, n.raw[at:s.start]...)
		text = append(text, s.repl...)
		at = s.end
	}
	text = append(text, n.raw[at:]...)
	inStart := d.InputDrvsStart
	inEnd := inStart + len(inText)
	srcs := d.InputSrcs
	if srcsChanged {
		// Input sources are sorted: sort the patched list again, in place
		// (every path kept its length). The paths are cut out by their
		// lengths: the store directory may hold ']' or `,`.
		start := inEnd + len(`],["`)
		srcs = make([]string, len(d.InputSrcs))
		at := start
		for k, s := range d.InputSrcs {
			srcs[k] = string(text[at : at+len(s)])
			at += len(s) + len(`","`)
		}
		slices.Sort(srcs)
		if len(slices.Compact(slices.Clone(srcs))) != len(srcs) {
			return false // two sources became one: the general path drops it
		}
		copy(text[start:], strings.Join(srcs, `","`))
	}
	// moved maps an offset of the file to the new text.
	moved := func(off int) int {
		for _, s := range sp {
			if s.end > off {
				break
			}
			off += len(s.repl) - (s.end - s.start)
		}
		return off
	}
	if n.kind == kindFixed {
		// The output path depends on the content hash alone (R7).
		vn.outs = make([]string, 1)
		vn.outs[0] = d.Outputs[0].Path
		vn.hm = fixedHash(d.Outputs[0])
		v.finishSpliced(i, text, srcs, inputs)
		return true
	}
	outPos := slices.Grow(sc.outPos[:0], 2*len(d.Outputs))[:2*len(d.Outputs)]
	sc.outPos = outPos
	base := uintptr(unsafe.Pointer(unsafe.StringData(n.raw)))
	for k, o := range d.Outputs {
		j, _ := d.EnvIndex(o.Name)
		outPos[2*k] = moved(int(uintptr(unsafe.Pointer(unsafe.StringData(o.Path))) - base))
		outPos[2*k+1] = moved(int(uintptr(unsafe.Pointer(unsafe.StringData(d.Env[j].Value))) - base))
	}

	// R6/R7, as rewriteNode: the masked hash with the output paths blank.
	hm := appendModuloInputs(sc.hm[:0], &sc.es, d, func(j int) [32]byte { return v.hmOf(n.inputs[j]) })
	sc.hm = hm
	msp := append(sc.msp[:0], splice{inStart, inEnd, hm})
	for k, o := range d.Outputs {
		msp = append(msp, splice{outPos[2*k], outPos[2*k] + len(o.Path), nil},
			splice{outPos[2*k+1], outPos[2*k+1] + len(o.Path), nil})
	}
	sc.msp = msp
	masked := hashSpliced(sc.h, text, msp)
	outs := make([]string, len(d.Outputs))
	for k, o := range d.Outputs {
		outs[k] = storepath.Output(c.storeDir, n.name, o.Name, masked)
		if len(outs[k]) != len(o.Path) {
			return false // cannot happen: same name, same store
		}
	}
	for k := range d.Outputs {
		copy(text[outPos[2*k]:], outs[k])
		copy(text[outPos[2*k+1]:], outs[k])
	}
	if c.isInput[i] { // only dependents use it
		vn.hm = hashSpliced(sc.h, text, append(msp[:0], splice{inStart, inEnd, hm}))
	}

	vn.outs = outs
	v.finishSpliced(i, text, srcs, inputs)
	return true
}

// finishSpliced sets the .drv path (R8) and the rest of v.nodes[i] from
// the new text, input sources and inputs.
func (v *view) finishSpliced(i int32, text []byte, srcs []string, inputs []aterm.InputDrv) {
	n := &v.c.nodes[i]
	vn := &v.nodes[i]
	refs := make([]string, 0, len(srcs)+len(inputs))
	refs = append(refs, srcs...)
	for _, in := range inputs {
		refs = append(refs, in.Path)
	}
	slices.Sort(refs)
	refs = slices.Compact(refs)
	vn.path = storepath.Text(v.c.storeDir, n.name+".drv", sha256.Sum256(text), refs)
	vn.name = n.name
	vn.refs = refs
	if v.keepText {
		vn.text = text
	}
}

// newInputs returns n's inputDrvs re-keyed with the view's paths (R5),
// sorted, in dst (a new slice when nil).
func (v *view) newInputs(dst []aterm.InputDrv, n *node) []aterm.InputDrv {
	ins := slices.Grow(dst[:0], len(n.drv.InputDrvs))[:len(n.drv.InputDrvs)]
	changed := false // some input is rewritten in this view
	for k, in := range n.drv.InputDrvs {
		ins[k] = aterm.InputDrv{Path: v.drvPath(n.inputs[k]), Outputs: in.Outputs}
		if v.nodes[n.inputs[k]].changed {
			changed = true
		}
	}
	if changed {
		slices.SortFunc(ins, func(a, b aterm.InputDrv) int { return strings.Compare(a.Path, b.Path) })
	}
	return ins
}

// jsonKeyAt reports whether offset end of the ATerm text s, inside the
// escaped __json value and just after a hash window, lies in a JSON object
// key: the JSON string around it is followed by ':'. It reads the JSON
// through the ATerm escapes, as inJSONKey does on the unescaped value.
func jsonKeyAt(s string, end int) bool {
	j := end
	next := func() (byte, bool) {
		if j >= len(s) || s[j] == '"' { // an unescaped quote ends the ATerm string
			return 0, false
		}
		ch := s[j]
		j++
		if ch == '\\' && j < len(s) {
			ch = s[j]
			j++
			switch ch {
			case 'n':
				ch = '\n'
			case 'r':
				ch = '\r'
			case 't':
				ch = '\t'
			}
		}
		return ch, true
	}
	for {
		ch, ok := next()
		if !ok {
			return false
		}
		if ch == '\\' {
			if _, ok := next(); !ok {
				return false
			}
			continue
		}
		if ch == '"' {
			after, ok := next()
			return ok && after == ':'
		}
	}
}
