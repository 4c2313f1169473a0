// Package graphgen generates Nix expressions for random derivation graphs,
// deterministically from a seed, to test and benchmark the rewrite of
// package builder against nix-instantiate.
//
// A generated expression uses no nixpkgs, only builtins.derivation with
// builder /bin/sh (nothing is ever built), and has the form
//
//	{ poison ? {} }: rec { n0 = derivation {...}; n1 = ...; }
//
// Passing poison = { n17 = 2; } adds the attribute Params.Attr = "2" to
// node n17, in env or in __json for structured attrs, exactly as a user
// adding the attribute by hand would. Instantiating the expression twice,
// with and without poison, gives the ground truth a rewrite must reproduce.
//
// The graphs mix every feature the rewrite must handle (docs/rewrite.md R1–R8):
// plain, multi-output and __structuredAttrs derivations; fixed-output
// derivations (flat and recursive; groups with the same name and hash but
// different builders, so their hash modulo collides; "twin" dependents of
// two colliding fixed-output derivations, so a common dependent has merged
// input sets); references by output path, non-default output, drvPath,
// unsafeDiscardOutputDependency, unsafeDiscardStringContext (text without
// an edge), baseNameOf and the bare 32-character hash; builtins.toFile
// sources; env keys and values that need escaping (quotes, backslashes,
// newlines, tabs, control bytes, UTF-8 and invalid UTF-8); JSON keys that
// sort around the attribute name; derivation names shared by several nodes.
package graphgen

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Params configures Generate. The zero value is not valid; start from
// Default or Bench.
type Params struct {
	Seed  uint64
	Nodes int // number of derivations
	Depth int // number of layers; a node of layer L depends on a node of layer L-1
	// MinInputs and MaxInputs bound the number of references (fan-in) of a
	// node outside layer 0.
	MinInputs, MaxInputs int
	// PadMin and PadMax bound a padding attribute that makes derivations
	// realistic in size; 0 means no padding.
	PadMin, PadMax int
	// DrvPathRefs allows "${dep.drvPath}" references. Nix resolves them by
	// reading the closure of dep's .drv from the store, so an expression
	// with them cannot be evaluated with --readonly-mode once dep changed.
	DrvPathRefs bool
	// Attr is the poison attribute, "POISON_SERIAL" when empty.
	Attr string
	// NoTwins leaves out twin pairs (nodes sharing output paths). Poisoning
	// one twin is the one case where a hash-part substitution over the
	// closure is ambiguous; graphs without twins isolate other failures.
	NoTwins bool
	// Kinds weighs the kinds of the nodes that are not twins, indexed by
	// Kind (plain, multi, structured, structured-multi, fixed-flat,
	// fixed-recursive); all zero means DefaultKinds.
	Kinds [numKinds]int
}

// DefaultKinds is the mix of kinds when Params.Kinds is all zero, in
// percent.
var DefaultKinds = [numKinds]int{35, 20, 17, 10, 9, 9}

// Default returns parameters for a test graph of n nodes.
func Default(seed uint64, n int) Params {
	return Params{
		Seed: seed, Nodes: n, Depth: max(1, min(12, n)),
		MinInputs: 1, MaxInputs: 6,
		DrvPathRefs: true,
		Attr:        "POISON_SERIAL",
	}
}

// Bench returns the parameters of the benchmark closure of issue 3: n
// derivations (20,000 in the issue) of 2–10 KB, 3–15 inputs, depth 40. It
// has no drvPath references so that nix-instantiate --readonly-mode can
// evaluate the poisoned variant, and no twins.
func Bench(seed uint64, n int) Params {
	return Params{
		Seed: seed, Nodes: n, Depth: 40,
		MinInputs: 3, MaxInputs: 15,
		PadMin: 1500, PadMax: 5500,
		Attr: "POISON_SERIAL",
		// Twins are a correctness corner (tested by the equivalence
		// tests), not a shape that matters for speed.
		NoTwins: true,
	}
}

// Kind is the shape of a generated derivation.
type Kind int

// The kinds of derivation a graph mixes.
const (
	Plain           Kind = iota // one output, attributes in env
	Multi                       // several outputs
	Structured                  // __structuredAttrs, one output
	StructuredMulti             // __structuredAttrs, several outputs
	FixedFlat                   // fixed-output, flat
	FixedRecursive              // fixed-output, recursive
	numKinds
)

// ParseKind returns the kind named s ("plain", "structured-multi", ...).
func ParseKind(s string) (Kind, error) {
	for i, n := range kindNames {
		if n == s {
			return Kind(i), nil
		}
	}
	return 0, fmt.Errorf("graphgen: unknown kind %q (want one of %s)", s, strings.Join(kindNames[:], ", "))
}

var kindNames = [...]string{"plain", "multi", "structured", "structured-multi", "fixed-flat", "fixed-recursive"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind" + strconv.Itoa(int(k))
}

// FixedOutput reports whether k is a fixed-output kind.
func (k Kind) FixedOutput() bool { return k == FixedFlat || k == FixedRecursive }

// RefKind is how a node refers to one of its dependencies.
type RefKind int

// The ways a node mentions a dependency.
const (
	RefOut        RefKind = iota // "${dep}": default output, an inputDrvs edge
	RefOutput                    // "${dep.<o>}": a named output
	RefBaseName                  // baseNameOf "${dep}": no store dir, keeps the edge
	RefText                      // unsafeDiscardStringContext "${dep}": text, no edge
	RefTextDrv                   // unsafeDiscardStringContext dep.drvPath: text, no edge
	RefHash                      // the 32-character hash part alone, no edge
	RefDiscardOut                // unsafeDiscardOutputDependency dep.drvPath: inputSrcs only
	RefDrvPath                   // "${dep.drvPath}": the whole closure of dep in inputDrvs and inputSrcs
	RefBuilder                   // builder = "${dep}/bin/sh"
	numRefKinds
)

var refNames = [...]string{"out", "output", "basename", "text", "text-drv", "hash", "discard-out", "drvpath", "builder"}

func (r RefKind) String() string {
	if int(r) < len(refNames) {
		return refNames[r]
	}
	return "ref" + strconv.Itoa(int(r))
}

// Edge reports whether Nix records a dependency for r (in inputDrvs or
// inputSrcs).
func (r RefKind) Edge() bool { return r != RefText && r != RefTextDrv && r != RefHash }

// Ref is one mention of a dependency.
type Ref struct {
	Node   int // index into Graph.Nodes
	Kind   RefKind
	Output string // for RefOutput
}

// Node is one generated derivation.
type Node struct {
	Attr    string   // attribute of the generated set and key of poison: "n17"
	Name    string   // derivation name; several nodes may share one
	Kind    Kind     // shape
	Outputs []string // declared outputs; the first is the default one
	Layer   int
	Refs    []Ref
	// Group is the collision group of a fixed-output node: nodes of one
	// group share name and output path. -1 otherwise.
	Group int
	// Twin is the index of the node this one is identical to except for
	// depending on a different member of the same fixed-output group (so
	// both have the same hash modulo); -1 otherwise.
	Twin int
}

// Graph is a generated derivation graph.
type Graph struct {
	Params Params
	Nodes  []Node
	expr   []byte
}

// Expr returns the Nix expression of g:
// { poison ? {} }: rec { <attr> = derivation ...; ... }.
func (g *Graph) Expr() []byte { return g.expr }

// Node returns the node with attribute attr, or nil.
func (g *Graph) Node(attr string) *Node {
	if !strings.HasPrefix(attr, "n") {
		return nil
	}
	i, err := strconv.Atoi(attr[1:])
	if err != nil || i < 0 || i >= len(g.Nodes) {
		return nil
	}
	return &g.Nodes[i]
}

// Dependents returns, for each node, the nodes that refer to it (by any
// reference kind).
func (g *Graph) Dependents() [][]int {
	out := make([][]int, len(g.Nodes))
	for i, n := range g.Nodes {
		for _, r := range n.Refs {
			out[r.Node] = append(out[r.Node], i)
		}
	}
	return out
}

// Deep returns a node deep in the graph, the one to poison in a benchmark:
// the input-addressed node of the layer at one eighth of the depth with
// the most transitive dependents, and that number. It returns -1 when that
// layer has no input-addressed node.
func (g *Graph) Deep() (node, downstream int) {
	layer := g.Params.Depth / 8
	deps := g.Dependents()
	node, downstream = -1, -1
	for i, n := range g.Nodes {
		if n.Layer != layer || n.Kind.FixedOutput() {
			continue
		}
		if c := reach(deps, i); c > downstream {
			node, downstream = i, c
		}
	}
	return node, downstream
}

// Victim is a node to poison in a benchmark and how many nodes depend on
// it.
type Victim struct {
	Node, Downstream int
}

// Victims returns up to k input-addressed nodes of the layer Deep looks
// at, most transitive dependents first (ties by index): different nodes
// to poison in the runs of one benchmark, each rewriting new .drv files.
func (g *Graph) Victims(k int) []Victim {
	layer := g.Params.Depth / 8
	deps := g.Dependents()
	var out []Victim
	for i, n := range g.Nodes {
		if n.Layer == layer && !n.Kind.FixedOutput() {
			out = append(out, Victim{i, reach(deps, i)})
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Downstream > out[b].Downstream })
	return out[:min(k, len(out))]
}

// reach counts the nodes that reach i through references.
func reach(deps [][]int, i int) int {
	seen := make([]bool, len(deps))
	stack := []int{i}
	n := 0
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, d := range deps[x] {
			if !seen[d] {
				seen[d] = true
				n++
				stack = append(stack, d)
			}
		}
	}
	return n
}

var attrRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (p *Params) validate() error {
	switch {
	case p.Nodes < 1:
		return fmt.Errorf("graphgen: Nodes = %d, want at least 1", p.Nodes)
	case p.Depth < 1 || p.Depth > p.Nodes:
		return fmt.Errorf("graphgen: Depth = %d, want 1..Nodes", p.Depth)
	case p.MinInputs < 1 || p.MaxInputs < p.MinInputs:
		return fmt.Errorf("graphgen: inputs %d..%d, want 1 <= MinInputs <= MaxInputs", p.MinInputs, p.MaxInputs)
	case p.PadMin < 0 || p.PadMax < p.PadMin:
		return fmt.Errorf("graphgen: padding %d..%d, want 0 <= PadMin <= PadMax", p.PadMin, p.PadMax)
	}
	for k, w := range p.Kinds {
		if w < 0 {
			return fmt.Errorf("graphgen: weight %d of kind %s, want >= 0", w, Kind(k))
		}
	}
	if p.Attr == "" {
		p.Attr = "POISON_SERIAL"
	}
	if !attrRE.MatchString(p.Attr) {
		return fmt.Errorf("graphgen: Attr %q is not an attribute name", p.Attr)
	}
	return nil
}

// Generate returns the graph for p. The same Params always give the same
// bytes.
func Generate(p Params) (*Graph, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	g := &gen{
		p:   p,
		rng: rand.New(rand.NewPCG(p.Seed, 0x9e3779b97f4a7c15)),
		out: &Graph{Params: p},
	}
	g.plan()
	g.write()
	return g.out, nil
}

type fodGroup struct {
	name    string
	mode    string // flat or recursive
	digest  []byte // 32 bytes
	members []int
}

type gen struct {
	p       Params
	rng     *rand.Rand
	out     *Graph
	groups  []fodGroup
	byLayer [][]int
	pending [][2]int // twin pairs waiting for a common dependent
	dupName string   // a name given to two unrelated nodes
	dupUsed int
	pad     string
}

func (g *gen) intn(n int) int { return g.rng.IntN(n) }

func (g *gen) chance(pct int) bool { return g.rng.IntN(100) < pct }

var words = []string{"zlib", "openssl", "glibc", "bash", "perl", "python", "curl", "expat", "libffi", "ncurses", "readline", "gmp", "mpfr", "xz", "bzip2", "sqlite", "libxml2", "pcre", "attr", "acl"}

func (g *gen) layerOf(i int) int { return i * g.p.Depth / g.p.Nodes }

// plan decides every node's kind, name, outputs and references.
func (g *gen) plan() {
	n := g.p.Nodes
	g.byLayer = make([][]int, g.p.Depth)
	g.dupName = "dup-" + words[g.intn(len(words))]
	nodes := make([]Node, 0, n)
	for i := 0; i < n; i++ {
		layer := g.layerOf(i)
		// A twin pair: two identical nodes depending on different members of
		// one fixed-output group.
		if gi := g.twinGroup(layer); !g.p.NoTwins && gi >= 0 && i+1 < n && g.layerOf(i+1) == layer && g.chance(6) {
			a, b := g.twinNodes(i, layer, gi, nodes)
			nodes = append(nodes, a, b)
			g.byLayer[layer] = append(g.byLayer[layer], i, i+1)
			g.pending = append(g.pending, [2]int{i, i + 1})
			i++
			continue
		}
		nd := g.node(i, layer, nodes)
		nodes = append(nodes, nd)
		g.byLayer[layer] = append(g.byLayer[layer], i)
	}
	g.out.Nodes = nodes
}

// twinGroup returns a fixed-output group with two members below layer, or -1.
func (g *gen) twinGroup(layer int) int {
	for gi := len(g.groups) - 1; gi >= 0; gi-- {
		m := g.groups[gi].members
		if len(m) >= 2 && g.layerOf(m[1]) < layer {
			return gi
		}
	}
	return -1
}

func (g *gen) twinNodes(i, layer, gi int, nodes []Node) (Node, Node) {
	grp := g.groups[gi]
	kind := Multi
	if g.chance(50) {
		kind = StructuredMulti
	}
	outs := []string{"out", "dev", "lib"}
	a := Node{
		Attr: "n" + strconv.Itoa(i), Name: fmt.Sprintf("twin-%d", i), Kind: kind,
		Outputs: outs, Layer: layer, Group: -1, Twin: i + 1,
		Refs: []Ref{{Node: grp.members[0], Kind: RefOut}},
	}
	// Shared references, identical in both twins.
	for _, r := range g.refs(layer, nodes, 1+g.intn(3)) {
		if r.Kind == RefBuilder || r.Kind == RefDrvPath || r.Kind == RefDiscardOut || r.Kind == RefTextDrv {
			r.Kind = RefOut // these mention the .drv, which differs between twins' inputs only
		}
		a.Refs = append(a.Refs, r)
	}
	a.Refs = decidable(a.Refs, nodes)
	b := a
	b.Attr = "n" + strconv.Itoa(i+1)
	b.Twin = i
	b.Refs = append([]Ref{{Node: grp.members[1], Kind: RefOut}}, a.Refs[1:]...)
	return a, b
}

func (g *gen) node(i, layer int, nodes []Node) Node {
	nd := Node{Attr: "n" + strconv.Itoa(i), Layer: layer, Group: -1, Twin: -1}
	weights, total := g.p.Kinds, 0
	for _, w := range weights {
		total += w
	}
	if total == 0 {
		weights, total = DefaultKinds, 100
	}
	w := g.intn(total)
	for k, kw := range weights {
		if w < kw {
			nd.Kind = Kind(k)
			break
		}
		w -= kw
	}
	// every character a store path name may hold: [A-Za-z0-9+-._?=]
	nd.Name = fmt.Sprintf("%s-%d.%d%s", words[g.intn(len(words))], i%7, i, []string{"", "", "", "+", "_x", "?q=1", "-1.0rc2"}[g.intn(7)])
	switch nd.Kind {
	case Multi, StructuredMulti:
		switch g.intn(4) {
		case 0:
			nd.Outputs = []string{"lib", "out"} // default output is not "out"
		case 1:
			nd.Outputs = []string{"out", "bin", "dev", "doc"}
		default:
			nd.Outputs = []string{"out", "dev", "lib"}
		}
	default:
		nd.Outputs = []string{"out"}
	}
	if nd.Kind.FixedOutput() {
		g.fixed(&nd)
	} else if (g.dupUsed == 0 && i >= g.p.Nodes/3) || (g.dupUsed == 1 && i >= 2*g.p.Nodes/3) {
		nd.Name = g.dupName
		g.dupUsed++
	}
	if layer > 0 {
		k := g.p.MinInputs + g.intn(g.p.MaxInputs-g.p.MinInputs+1)
		nd.Refs = g.refs(layer, nodes, k)
		// A waiting twin pair gets its common dependent: two outputs of two
		// derivations with the same hash modulo, merged by Nix.
		if len(g.pending) > 0 && !nd.Kind.FixedOutput() {
			tw := g.pending[0]
			if nodes[tw[0]].Layer < layer {
				g.pending = g.pending[1:]
				nd.Refs = append(nd.Refs,
					Ref{Node: tw[0], Kind: RefOutput, Output: "dev"},
					Ref{Node: tw[1], Kind: RefOutput, Output: "lib"})
				if g.chance(50) {
					nd.Refs = append(nd.Refs, Ref{Node: tw[1], Kind: RefOut})
				}
			}
		}
		nd.Refs = decidable(nd.Refs, nodes)
	}
	return nd
}

// decidable adjusts the references to twins so that every mention of a
// twin's output path can be traced to one twin: Nix records which one in
// inputDrvs, but only if no other listed input has the same output. A
// textual mention (no edge) of a twin's output, the same output of both
// twins, or an output of a twin next to a drvPath reference (which lists
// whole closures with all outputs) would leave a rewrite that poisons one
// twin nothing to go by: it must refuse, which testdata/graphs/ambiguous
// tests. Such references become references to the twin's .drv.
func decidable(refs []Ref, nodes []Node) []Ref {
	drvPath := false
	for _, r := range refs {
		drvPath = drvPath || r.Kind == RefDrvPath
	}
	mentioned := map[[2]int]bool{} // (node, output index) of twin outputs mentioned
	for i, r := range refs {
		n := nodes[r.Node]
		if n.Twin < 0 {
			continue
		}
		switch r.Kind {
		case RefText, RefHash:
			r.Kind = RefOut
		}
		out := ""
		switch r.Kind {
		case RefOut, RefBaseName, RefBuilder:
			out = n.Outputs[0]
		case RefOutput:
			out = r.Output
		}
		if out != "" {
			oi := slices.Index(n.Outputs, out)
			if drvPath || mentioned[[2]int{n.Twin, oi}] {
				r.Kind, r.Output = RefDiscardOut, ""
			} else {
				mentioned[[2]int{r.Node, oi}] = true
			}
		}
		refs[i] = r
	}
	return refs
}

// fixed makes nd a member of a new or existing fixed-output group.
func (g *gen) fixed(nd *Node) {
	mode := "flat"
	if nd.Kind == FixedRecursive {
		mode = "recursive"
	}
	for gi := range g.groups {
		grp := &g.groups[gi]
		if grp.mode == mode && len(grp.members) < 3 && g.chance(60) {
			grp.members = append(grp.members, nodeIndex(nd))
			nd.Group = gi
			nd.Name = grp.name
			return
		}
	}
	d := make([]byte, 32)
	for i := range d {
		d[i] = byte(g.intn(256))
	}
	name := fmt.Sprintf("src-%s-%d.tar.gz", words[g.intn(len(words))], len(g.groups))
	g.groups = append(g.groups, fodGroup{name: name, mode: mode, digest: d, members: []int{nodeIndex(nd)}})
	nd.Group = len(g.groups) - 1
	nd.Name = name
}

func nodeIndex(nd *Node) int {
	i, _ := strconv.Atoi(nd.Attr[1:])
	return i
}

// refs picks k references of a node in layer, the first to layer-1.
func (g *gen) refs(layer int, nodes []Node, k int) []Ref {
	if layer == 0 {
		return nil
	}
	prev := g.byLayer[layer-1]
	var below int // nodes in layers < layer
	for l := 0; l < layer; l++ {
		below += len(g.byLayer[l])
	}
	var out []Ref
	builder := false
	for j := 0; j < k; j++ {
		var d int
		switch {
		case j == 0:
			d = prev[g.intn(len(prev))]
		case g.chance(50):
			// one of the last three layers, uniformly over their nodes
			lo := max(0, layer-3)
			n := 0
			for l := lo; l < layer; l++ {
				n += len(g.byLayer[l])
			}
			k := g.intn(n)
			for l := lo; l < layer; l++ {
				if k < len(g.byLayer[l]) {
					d = g.byLayer[l][k]
					break
				}
				k -= len(g.byLayer[l])
			}
		default:
			d = g.intn(below)
		}
		r := Ref{Node: d, Kind: g.refKind()}
		if r.Kind == RefBuilder {
			if builder {
				r.Kind = RefOut
			}
			builder = true
		}
		if r.Kind == RefDrvPath && !g.p.DrvPathRefs {
			r.Kind = RefDiscardOut
		}
		if j == 0 && !r.Kind.Edge() {
			r.Kind = RefOut // keep the depth
		}
		if r.Kind == RefOutput {
			outs := nodes[d].Outputs
			r.Output = outs[g.intn(len(outs))]
		}
		out = append(out, r)
	}
	return out
}

func (g *gen) refKind() RefKind {
	w := g.intn(100)
	switch {
	case w < 38:
		return RefOut
	case w < 60:
		return RefOutput
	case w < 66:
		return RefBaseName
	case w < 72:
		return RefText
	case w < 75:
		return RefTextDrv
	case w < 81:
		return RefHash
	case w < 88:
		return RefDiscardOut
	case w < 93:
		return RefDrvPath
	default:
		return RefBuilder
	}
}

// ---- writing the expression ----

const prelude = `{ poison ? {} }:
let
  sys = builtins.currentSystem;
  nd = builtins.unsafeDiscardStringContext;
  dod = builtins.unsafeDiscardOutputDependency;
  # the 32-character hash part of a store path, without string context
  hashOf = p: builtins.substring (builtins.stringLength builtins.storeDir + 1) 32 (nd p);
  pad = off: len: builtins.substring off len padSrc;
  mk = n: a: derivation ({ builder = "/bin/sh"; system = sys; } // a
    // (if builtins.hasAttr n poison then { %s = toString poison.${n}; } else { }));
`

// tricky strings for env values and JSON strings: every byte class the
// ATerm and JSON writers treat specially.
var tricky = []string{
	`q"uote`, `back\slash`, "nl\nnext", "tab\there", "cr\rx", "é ü 日本 ✓",
	"ctl\x01\x1f\x7f", "latin1 \xe9\xff raw", `"POISON_SERIAL":"5"`, "POISON_SERIAL=9",
	"${notinterp} $HOME", "end\\", "\"\\\"\\\\", "",
}

// odd env keys: the ATerm writer escapes them, sort order is bytewise on
// the unescaped key.
var oddKeys = []string{`k!`, `k"q`, `K\b`, `a b`, `é`, `k#`, "k\ttab", `POISON_SERIAL_`, `POISON_SERIA`, `_x`, `PATH`}

// JSON keys placed around the attribute name in bytewise order.
var jsonKeys = []string{"PATH", "POISON", "POISONS", "POISON_SERIA", "POISON_SERIAL_", "POISON_SERIALZ", "POISON_SERIAM", "_", "_x", "a", "Z", "zz", "lowercase", "é"}

var floats = []string{"3.14159265", "2.5", "0.1", "1.0e-7", "1.0e20", "100000.0", "1234567.0", "0.000123456789", "42.0"}

// nixStr quotes s as a Nix string literal. Control bytes and non-UTF-8
// bytes go in raw, as a hand-written file could contain them.
func nixStr(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	b.WriteString(nixLit(s))
	b.WriteByte('"')
	return b.String()
}

// nixLit escapes s for the inside of a Nix "..." string.
func nixLit(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '$' && i+1 < len(s) && s[i+1] == '{':
			b.WriteString(`\$`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\r':
			b.WriteString(`\r`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// key returns s as a Nix attribute name, quoted when needed.
func key(s string) string {
	if attrRE.MatchString(s) && s != "rec" && s != "let" && s != "in" && s != "if" && s != "then" && s != "else" && s != "with" && s != "or" && s != "inherit" && s != "assert" {
		return s
	}
	return nixStr(s)
}

// refExpr is the Nix expression (a string) mentioning dependency r.
func (g *gen) refExpr(r Ref) string {
	dep := g.out.Nodes[r.Node].Attr
	switch r.Kind {
	case RefOut, RefBuilder:
		return `"${` + dep + `}"`
	case RefOutput:
		return `"${` + dep + `.` + r.Output + `}"`
	case RefBaseName:
		return `(baseNameOf "${` + dep + `}")`
	case RefText:
		return `(nd "${` + dep + `}")`
	case RefTextDrv:
		return `(nd ` + dep + `.drvPath)`
	case RefHash:
		return `(hashOf "${` + dep + `}")`
	case RefDiscardOut:
		return `(dod ` + dep + `.drvPath)`
	case RefDrvPath:
		return `"${` + dep + `.drvPath}"`
	}
	panic("graphgen: unknown RefKind " + r.Kind.String())
}

// wrap embeds a string expression in literal text: "pre${e}post".
func wrap(pre, e, post string) string {
	return `"` + nixLit(pre) + `${` + e + `}` + nixLit(post) + `"`
}

func (g *gen) write() {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# generated by graphgen: seed=%d nodes=%d depth=%d inputs=%d..%d pad=%d..%d drvPathRefs=%v\n",
		g.p.Seed, g.p.Nodes, g.p.Depth, g.p.MinInputs, g.p.MaxInputs, g.p.PadMin, g.p.PadMax, g.p.DrvPathRefs)
	fmt.Fprintf(&b, prelude, g.p.Attr)
	g.pad = g.padSource(g.p.PadMax + 4096)
	fmt.Fprintf(&b, "  padSrc = %s;\n", nixStr(g.pad))
	// a few toFile sources shared by several nodes
	for i := 0; i < 4; i++ {
		fmt.Fprintf(&b, "  cfg%d = builtins.toFile \"cfg-%d.conf\" %s;\n", i, i, nixStr(fmt.Sprintf("option %d = \"%s\"\n", i, tricky[i])))
	}
	b.WriteString("in rec {\n")
	for i := range g.out.Nodes {
		g.writeNode(&b, i)
	}
	b.WriteString("}\n")
	g.out.expr = b.Bytes()
}

func (g *gen) padSource(n int) string {
	const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n\t\"\\.,-=/"
	b := make([]byte, n)
	for i := range b {
		b[i] = alpha[g.intn(len(alpha))]
	}
	return string(b)
}

// nodeRNG is a per-node generator, so that twins get identical attributes.
func (g *gen) nodeRNG(i int) *rand.Rand {
	return rand.New(rand.NewPCG(g.p.Seed^0x5eed, uint64(i)))
}

func (g *gen) writeNode(b *bytes.Buffer, i int) {
	nd := &g.out.Nodes[i]
	seedIdx := i
	if nd.Twin >= 0 && nd.Twin < i {
		seedIdx = nd.Twin // the second twin copies the first
	}
	r := g.nodeRNG(seedIdx)
	chance := func(pct int) bool { return r.IntN(100) < pct }
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }

	var attrs []string // "key = value;" lines
	add := func(k, v string) { attrs = append(attrs, key(k)+" = "+v+";") }
	add("name", nixStr(nd.Name))
	if len(nd.Outputs) > 1 || chance(10) {
		var q []string
		for _, o := range nd.Outputs {
			q = append(q, nixStr(o))
		}
		add("outputs", "[ "+strings.Join(q, " ")+" ]")
	}
	structured := nd.Kind == Structured || nd.Kind == StructuredMulti
	if structured {
		add("__structuredAttrs", "true")
	}
	var args []string
	args = append(args, nixStr("-c"), nixStr(fmt.Sprintf("echo node %d", seedIdx)))
	hasBuilder := false
	if nd.Kind.FixedOutput() {
		grp := g.groups[nd.Group]
		add("outputHashMode", nixStr(grp.mode))
		// The members of a group differ in builder and hash notation, not in
		// name or digest: their hash modulo and output path collide.
		switch r.IntN(3) {
		case 0:
			add("outputHashAlgo", nixStr("sha256"))
			add("outputHash", nixStr(fmt.Sprintf("%x", grp.digest)))
		case 1:
			add("outputHashAlgo", nixStr("sha256"))
			add("outputHash", nixStr(nixBase32(grp.digest)))
		default:
			add("outputHash", nixStr("sha256-"+base64.StdEncoding.EncodeToString(grp.digest)))
		}
		args = append(args, nixStr(fmt.Sprintf("fetch variant %d", i)))
		if chance(50) {
			add("builder", nixStr(pick([]string{"/bin/bash", "/bin//sh", "/usr/bin/env"})))
			hasBuilder = true
		}
	}
	// references
	var joined []string
	for k, ref := range nd.Refs {
		e := g.refExpr(ref)
		switch {
		case ref.Kind == RefBuilder && !hasBuilder:
			add("builder", wrap("", e, "/bin/sh"))
			hasBuilder = true
		case structured:
			switch r.IntN(4) {
			case 0:
				add(fmt.Sprintf("d%d", k), e)
			case 1:
				add(fmt.Sprintf("dl%d", k), "[ "+e+" 1 null ]")
			case 2:
				add(fmt.Sprintf("dn%d", k), fmt.Sprintf("{ %s = { x = [ %s ]; }; s = %s; }", key(pick(jsonKeys)), e, wrap(pick(tricky), e, "")))
			default:
				joined = append(joined, e)
			}
		default:
			switch r.IntN(4) {
			case 0:
				add(fmt.Sprintf("d%d", k), e)
			case 1:
				args = append(args, wrap("--with=", e, ""))
			case 2:
				add(fmt.Sprintf("d%d", k), wrap(pick(tricky), e, pick(tricky)))
			default:
				joined = append(joined, e)
			}
		}
	}
	if len(joined) > 0 {
		add("deps", "[ "+strings.Join(joined, " ")+" ]")
	}
	if chance(20) {
		add("src", fmt.Sprintf("cfg%d", r.IntN(4)))
	}
	// values that need escaping, and values of every type
	if structured {
		ks := map[string]bool{}
		for j := 0; j < 2+r.IntN(4); j++ {
			k := pick(jsonKeys)
			if ks[k] || k == g.p.Attr {
				continue
			}
			ks[k] = true
			add(k, g.jsonValue(r, 2))
		}
		add("nested", fmt.Sprintf("{ %s = %s; inner = %s; }", key(g.p.Attr), nixStr("inner"), g.jsonValue(r, 3)))
		add("f", pick(floats))
		add("neg", "-7")
		add("big", "123456789012")
		add("flags", "[ true false null ]")
		add("text", nixStr(pick(tricky)+pick(tricky)))
	} else {
		if chance(60) {
			ks := map[string]bool{}
			for j := 0; j < 1+r.IntN(3); j++ {
				k := pick(oddKeys)
				if ks[k] || k == g.p.Attr {
					continue
				}
				ks[k] = true
				add(k, nixStr(pick(tricky)))
			}
		}
		add("v", nixStr(pick(tricky)+" "+pick(tricky)))
		switch r.IntN(5) {
		case 0:
			add("num", "42")
		case 1:
			add("fl", pick(floats))
		case 2:
			add("yes", "true")
			add("no", "false")
		case 3:
			add("nothing", "null")
		default:
			add("list", "[ 1 \"two\" 3.5 true ]")
		}
	}
	if g.p.PadMax > 0 {
		ln := g.p.PadMin + r.IntN(g.p.PadMax-g.p.PadMin+1)
		add("PAD", fmt.Sprintf("pad %d %d", r.IntN(4096), ln))
	}
	if chance(15) {
		// __ignoreNulls drops null attributes and is not in __json itself
		add("__ignoreNulls", "true")
		add("dropped", "null")
	}
	if len(args) > 0 {
		add("args", "[ "+strings.Join(args, " ")+" ]")
	}
	fmt.Fprintf(b, "  %s = mk %q {\n", nd.Attr, nd.Attr)
	for _, a := range attrs {
		b.WriteString("    ")
		b.WriteString(a)
		b.WriteByte('\n')
	}
	b.WriteString("  };\n")
}

// jsonValue returns a Nix value of nested attrsets, lists and scalars.
func (g *gen) jsonValue(r *rand.Rand, depth int) string {
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }
	w := r.IntN(9)
	if depth == 0 && w >= 7 {
		w = r.IntN(7)
	}
	switch w {
	case 0:
		return nixStr(pick(tricky))
	case 1:
		// parenthesised: a bare negative number is a syntax error in a list
		return "(" + strconv.Itoa(r.IntN(2000)-1000) + ")"
	case 2:
		return pick(floats)
	case 3:
		return pick([]string{"true", "false"})
	case 4:
		return "null"
	case 5:
		return nixStr("plain")
	case 6:
		return "[ ]"
	case 7:
		var xs []string
		for j := 0; j < 1+r.IntN(3); j++ {
			xs = append(xs, g.jsonValue(r, depth-1))
		}
		return "[ " + strings.Join(xs, " ") + " ]"
	default:
		keys := map[string]bool{}
		var kv []string
		for j := 0; j < 1+r.IntN(3); j++ {
			k := pick(jsonKeys)
			if keys[k] {
				continue
			}
			keys[k] = true
			kv = append(kv, key(k)+" = "+g.jsonValue(r, depth-1)+";")
		}
		sort.Strings(kv)
		return "{ " + strings.Join(kv, " ") + " }"
	}
}

const base32Chars = "0123456789abcdfghijklmnpqrsvwxyz"

// nixBase32 is Nix's base-32 encoding (least significant bits first).
func nixBase32(b []byte) string {
	n := (len(b)*8-1)/5 + 1
	out := make([]byte, n)
	for i := n - 1; i >= 0; i-- {
		bit := i * 5
		j, k := bit/8, bit%8
		c := b[j] >> k
		if j+1 < len(b) {
			c |= b[j+1] << (8 - k)
		}
		out[n-1-i] = base32Chars[c&0x1f]
	}
	return string(out)
}

// ErrNoNode is returned when a poison map names a node the graph lacks.
var ErrNoNode = errors.New("no such node")

// PoisonExpr returns the Nix attrset literal of a poison map, keys sorted:
// { n17 = 2; n3 = 1; }.
func (g *Graph) PoisonExpr(poison map[string]int) (string, error) {
	keys := make([]string, 0, len(poison))
	for k := range poison {
		if g.Node(k) == nil {
			return "", fmt.Errorf("poison %s: %w", k, ErrNoNode)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("{")
	for _, k := range keys {
		fmt.Fprintf(&b, " %s = %d;", k, poison[k])
	}
	b.WriteString(" }")
	return b.String(), nil
}
