package builder_test

// Equivalence of builder.Rewrite with nix-instantiate: for generated graphs
// (package graphgen) and the hand-written graphs in testdata/graphs, every
// .drv path, every output path and every rewritten file must equal what Nix
// writes when the poisoned derivations carry the attribute; rewriting Nix's
// result again with the same lock changes nothing; an empty lock restores
// the clean closure.
//
//	go test ./builder -run Equiv                        # 3 seeds × 300 nodes + testdata
//	go test ./builder -run Equiv -long                  # 12 seeds × 800 nodes (also POISON_EQUIV_LONG=1)
//	POISON_EQUIV_SEEDS=40,41 go test ./builder -run Equiv   # chosen seeds, 300 nodes
//	POISON_EQUIV_DUMP=/tmp/d go test ...   # write mismatching rewritten files there
//	POISON_EQUIV_NOTWINS=1 go test ...      # graphs without twins (shared output paths)
//
// A failing generated case logs the command that writes its graph.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/internal/graphgen"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/registry/lock"
)

var equivLong = flag.Bool("long", false, "equivalence tests on more seeds and larger graphs (also POISON_EQUIV_LONG=1)")

// equivNix is the Nix a fixture is checked against: the system's (Nix 2.8,
// through PATH) or another one writing into a chroot store
// (equiv_modern_test.go).
type equivNix struct {
	bin       string   // directory of nix-instantiate and nix-store; "" for PATH
	env       []string // added to the environment of its processes (NIX_CONFIG)
	realStore string   // where its /nix/store is on disk; "" for /nix/store
}

// systemNix is the Nix on PATH with env added to its environment.
func systemNix(env []string) equivNix { return equivNix{env: env} }

// command returns a Nix tool of n with n's environment.
func (n equivNix) command(name string, args ...string) *exec.Cmd {
	if n.bin != "" {
		name = filepath.Join(n.bin, name)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), n.env...)
	return cmd
}

// eval is graphgen.Eval (writing the .drv files) with n's nix-instantiate.
func (n equivNix) eval(file, poison string) (map[string]graphgen.Paths, error) {
	if n.bin == "" {
		return graphgen.Eval(context.Background(), n.env, file, poison, true)
	}
	cmd := n.command("nix-instantiate", "--eval", "--strict", "--json", "--read-write-mode", "-E", graphgen.EvalExpr(file, poison))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s with poison %s: %v: %s", cmd.Path, file, poison, err, stderr.String())
	}
	var m map[string]graphgen.Paths
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, fmt.Errorf("%s %s: decode output: %w", cmd.Path, file, err)
	}
	return m, nil
}

// real returns where the store path p is on disk.
func (n equivNix) real(p string) string {
	if n.realStore == "" {
		return p
	}
	return filepath.Join(n.realStore, strings.TrimPrefix(p, "/nix/store/"))
}

// loadOptions returns the LoadOptions that read n's store.
func (n equivNix) loadOptions() builder.LoadOptions {
	if n.realStore == "" {
		return builder.LoadOptions{}
	}
	return builder.LoadOptions{StoreDir: "/nix/store", RealStoreDir: n.realStore}
}

// equivFixture is one graph expression instantiated clean into the store.
type equivFixture struct {
	file  string
	attrs []string // node attributes in graph order
	graph *graphgen.Graph
	clean map[string]graphgen.Paths
	names map[string]string // attr → derivation name
	nix   equivNix          // the Nix that instantiates it
	// refusable: Rewrite may refuse the closure (floating CA, impure) with
	// an error naming a derivation instead of reproducing Nix.
	refusable bool

	mu    sync.Mutex
	evals map[string]map[string]graphgen.Paths // poison literal → result
}

func newFixture(t *testing.T, file string, g *graphgen.Graph, nix equivNix) *equivFixture {
	t.Helper()
	clean, err := nix.eval(file, "")
	if err != nil {
		t.Fatal(err)
	}
	f := &equivFixture{file: file, graph: g, clean: clean, names: map[string]string{}, nix: nix}
	if g != nil {
		for _, n := range g.Nodes {
			f.attrs = append(f.attrs, n.Attr)
		}
	} else {
		for a := range clean {
			f.attrs = append(f.attrs, a)
		}
		sort.Strings(f.attrs)
	}
	for a, p := range clean {
		f.names[a] = equivDrvName(p.Drv)
	}
	return f
}

// eval instantiates the expression with poison, writing the .drv files.
func (f *equivFixture) eval(t *testing.T, poison map[string]int) map[string]graphgen.Paths {
	t.Helper()
	if len(poison) == 0 {
		return f.clean
	}
	var b strings.Builder
	b.WriteString("{")
	keys := slices.Sorted(maps.Keys(poison))
	for _, k := range keys {
		fmt.Fprintf(&b, " %s = %d;", strconv.Quote(k), poison[k])
	}
	b.WriteString(" }")
	f.mu.Lock()
	defer f.mu.Unlock()
	if m, ok := f.evals[b.String()]; ok {
		return m
	}
	m, err := f.nix.eval(f.file, b.String())
	if err != nil {
		t.Fatal(err)
	}
	if f.evals == nil {
		f.evals = map[string]map[string]graphgen.Paths{}
	}
	f.evals[b.String()] = m
	return m
}

// equivLockSpec names lock entries by node: serials for a node's canonical .drv
// path, for one of its canonical outputs ("n17.dev"), or for a name.
type equivLockSpec struct {
	drvs  map[string]int
	outs  map[string]int
	names map[string]int
}

func (f *equivFixture) lock(t *testing.T, s equivLockSpec) *lock.File {
	t.Helper()
	env := lock.DefaultEnv
	if f.graph != nil {
		env = f.graph.Params.Attr
	}
	lk := lock.New(lock.Source{URL: "file:///registry", Ref: "main"}, env)
	for a, v := range s.drvs {
		lk.Derivations[filepath.Base(f.clean[a].Drv)] = v
	}
	for ao, v := range s.outs {
		a, o, _ := strings.Cut(ao, ".")
		p, ok := f.clean[a].Outs[o]
		if !ok {
			t.Fatalf("lock spec: no output %s", ao)
		}
		lk.Outputs[filepath.Base(p)] = v
	}
	for n, v := range s.names {
		lk.Names[n] = v
	}
	// Entries for derivations outside the closure change nothing.
	lk.Derivations["00000000000000000000000000000000-absent.drv"] = 3
	lk.Outputs["00000000000000000000000000000000-absent"] = 4
	lk.Names["absent-name"] = 5
	if err := lk.Validate(); err != nil {
		t.Fatal(err)
	}
	return lk
}

// expected returns the serial of every node under lk (docs/rewrite.md),
// computed from the canonical paths Nix gave the clean graph.
func (f *equivFixture) expected(lk *lock.File, byName bool) map[string]int {
	m := map[string]int{}
	for _, a := range f.attrs {
		c := f.clean[a]
		var outs []string
		for _, p := range c.Outs {
			outs = append(outs, filepath.Base(p))
		}
		s := lk.Serial(filepath.Base(c.Drv), outs)
		if byName {
			s = max(s, lk.NameSerial(f.names[a]))
		}
		if s > 0 {
			m[a] = s
		}
	}
	return m
}

func equivIsStorePath(p string) bool { return strings.HasPrefix(p, "/nix/store/") }

func equivDrvName(p string) string {
	b := strings.TrimSuffix(filepath.Base(p), ".drv")
	if len(b) > 33 {
		return b[33:]
	}
	return b
}

// equivCase is one rewrite checked against Nix.
type equivCase struct {
	name   string
	pre    map[string]int // poison of the closure that is loaded (nil: clean)
	spec   equivLockSpec
	byName bool
	noop   bool // the lock poisons nothing (guards against vacuous cases)
	// sinks: the roots are only the nodes no edge leads to; LoadClosure
	// must find the rest through inputDrvs and inputSrcs.
	sinks bool
}

// sinks returns the nodes of a generated graph that no edge (inputDrvs or
// inputSrcs) leads to: every other node is in their closure. A node only
// mentioned textually is a root too, as it would be outside the closure.
func (f *equivFixture) sinks() []string {
	in := make([]bool, len(f.graph.Nodes))
	for _, n := range f.graph.Nodes {
		for _, r := range n.Refs {
			if r.Kind.Edge() {
				in[r.Node] = true
			}
		}
	}
	var out []string
	for i, n := range f.graph.Nodes {
		if !in[i] {
			out = append(out, n.Attr)
		}
	}
	return out
}

// rewrite loads the closure of roots and rewrites it.
func equivRewrite(t *testing.T, nix equivNix, roots []string, lk *lock.File, byName bool) (*builder.Result, []builder.Warning) {
	t.Helper()
	res, warns, err := equivTryRewrite(nix, roots, lk, byName)
	if err != nil {
		t.Fatal(err)
	}
	if res.diff != nil {
		t.Fatal(res.diff)
	}
	return res.Result, warns
}

// equivResult is a Result and how the general path's differs from it.
type equivResult struct {
	*builder.Result
	diff error
}

func equivTryRewrite(nix equivNix, roots []string, lk *lock.File, byName bool) (equivResult, []builder.Warning, error) {
	ctx := context.Background()
	c, err := builder.LoadClosure(ctx, nix.loadOptions(), roots)
	if err != nil {
		return equivResult{}, nil, fmt.Errorf("LoadClosure: %w", err)
	}
	var warns []builder.Warning
	res, err := builder.Rewrite(ctx, c, builder.Options{Lock: lk, ByName: byName, Warn: func(w builder.Warning) { warns = append(warns, w) }})
	if err != nil {
		return equivResult{}, nil, fmt.Errorf("Rewrite: %w", err)
	}
	// The general path (every changed derivation re-serialised) must give
	// the same result as the in-place patching most derivations take.
	r := equivResult{Result: res}
	if gen, err := builder.RewriteGeneral(ctx, c, builder.Options{Lock: lk, ByName: byName}); err != nil {
		r.diff = fmt.Errorf("Rewrite without patching failed: %w", err)
	} else if err := sameResult(res, gen); err != nil {
		r.diff = fmt.Errorf("Rewrite with and without patching differ: %w", err)
	}
	return r, warns, nil
}

// sameResult reports the first difference between two Results.
func sameResult(a, b *builder.Result) error {
	switch {
	case !slices.Equal(a.Roots, b.Roots):
		return fmt.Errorf("roots %v and %v", a.Roots, b.Roots)
	case !maps.Equal(a.DrvPaths, b.DrvPaths):
		return errors.New("the .drv path maps differ")
	case !maps.Equal(a.OutPaths, b.OutPaths):
		return errors.New("the output path maps differ")
	case len(a.Changed) != len(b.Changed):
		return fmt.Errorf("%d and %d changed derivations", len(a.Changed), len(b.Changed))
	}
	for i := range a.Changed {
		x, y := a.Changed[i], b.Changed[i]
		if x.Path != y.Path || x.OldPath != y.OldPath || x.Name != y.Name || !bytes.Equal(x.ATerm, y.ATerm) ||
			!slices.Equal(x.References, y.References) || !maps.Equal(x.Outputs, y.Outputs) {
			return fmt.Errorf("%s: rewritten to %s and %s (or other fields differ)\n%s\n%s", x.OldPath, x.Path, y.Path, x.ATerm, y.ATerm)
		}
	}
	return nil
}

// runCase checks one case: Rewrite of the loaded closure equals Nix's
// instantiation of the expected poison, file for file; then rewriting Nix's
// result again with the same lock changes nothing (idempotence).
func (f *equivFixture) runCase(t *testing.T, c equivCase) {
	t.Helper()
	lk := f.lock(t, c.spec)
	want := f.expected(lk, c.byName)
	if c.noop != (len(want) == 0) {
		t.Fatalf("case %s: lock poisons %v, want noop=%v", c.name, want, c.noop)
	}
	loaded := f.eval(t, c.pre)
	expect := f.eval(t, want)
	rootAttrs := f.attrs
	if c.sinks {
		rootAttrs = f.sinks()
		t.Logf("%d roots of %d nodes", len(rootAttrs), len(f.attrs))
	}
	roots := make([]string, len(rootAttrs), len(rootAttrs)+1)
	for i, a := range rootAttrs {
		roots[i] = loaded[a].Drv
	}
	// A root given twice comes back twice, in argument order.
	mid := len(roots) / 2
	roots = append(roots, roots[mid])
	res, warns, err := equivTryRewrite(f.nix, roots, lk, c.byName)
	if err != nil {
		if !f.refusable {
			t.Fatal(err)
		}
		// Refusing is allowed; the error must name a derivation and not
		// span lines.
		if !strings.Contains(err.Error(), ".drv") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("refusal does not name the derivation on one line: %v", err)
		}
		t.Logf("refused (allowed): %v", err)
		return
	}
	if res.diff != nil {
		t.Fatal(res.diff)
	}
	if len(res.Roots) == len(roots) {
		if a, b := res.Roots[mid], res.Roots[len(roots)-1]; a != b {
			t.Errorf("root %s given twice: rewritten to %s and %s", roots[mid], a, b)
		}
		res.Roots = res.Roots[:len(rootAttrs)]
	}
	f.check(t, rootAttrs, loaded, expect, want, res.Result, warns)

	if t.Failed() {
		return
	}
	// Idempotence: Nix's poisoned closure rewritten with the same lock.
	roots = make([]string, len(f.attrs))
	for i, a := range f.attrs {
		roots[i] = expect[a].Drv
	}
	res2, _ := equivRewrite(t, f.nix, roots, lk, c.byName)
	for i, a := range f.attrs {
		if res2.Roots[i] != expect[a].Drv {
			t.Errorf("idempotence: %s: rewriting Nix's poisoned %s gives %s", a, expect[a].Drv, res2.Roots[i])
		}
	}
	for _, d := range res2.Changed {
		if d.Path != d.OldPath {
			t.Errorf("idempotence: %s rewritten to %s", d.OldPath, d.Path)
		}
	}
}

// check compares a Result with Nix's instantiation.
func (f *equivFixture) check(t *testing.T, rootAttrs []string, loaded, expect map[string]graphgen.Paths, serials map[string]int, res *builder.Result, warns []builder.Warning) {
	t.Helper()
	const maxErrs = 15
	probs := f.problems(t, rootAttrs, loaded, expect, serials, res, warns)
	for i, p := range probs {
		if i == maxErrs {
			t.Errorf("... and %d more mismatches", len(probs)-maxErrs)
			break
		}
		t.Error(p)
	}
}

// problems lists every difference between a Result and Nix's
// instantiation, root causes (topologically first) first.
func (f *equivFixture) problems(t *testing.T, rootAttrs []string, loaded, expect map[string]graphgen.Paths, serials map[string]int, res *builder.Result, warns []builder.Warning) []string {
	t.Helper()
	var probs []string
	errorf := func(format string, args ...any) {
		probs = append(probs, fmt.Sprintf(format, args...))
	}
	byOld := map[string]string{} // loaded .drv → attr
	for _, a := range f.attrs {
		byOld[loaded[a].Drv] = a
	}
	if len(res.Roots) != len(rootAttrs) {
		errorf("Roots has %d paths, want %d", len(res.Roots), len(rootAttrs))
		return probs
	}
	for i, a := range rootAttrs {
		if res.Roots[i] != expect[a].Drv {
			errorf("%s: root %d: rewrite gives %s, nix-instantiate %s", a, i, res.Roots[i], expect[a].Drv)
		}
	}
	// OutPaths maps an old output path to one new path, which cannot
	// express twins (fixed-output groups and their dependents share output
	// paths) that Nix gives different new outputs.
	ambiguous := map[string]bool{}
	newOut := map[string]string{}
	for _, a := range f.attrs {
		for o, lp := range loaded[a].Outs {
			if n, ok := newOut[lp]; ok && n != expect[a].Outs[o] {
				ambiguous[lp] = true
			}
			newOut[lp] = expect[a].Outs[o]
		}
	}
	wantChanged := map[string]bool{}
	for _, a := range f.attrs {
		if loaded[a].Drv != expect[a].Drv {
			wantChanged[loaded[a].Drv] = true
		}
	}
	// Changed: exactly the nodes whose path moved, in topological order,
	// each file byte for byte what Nix wrote.
	pos := map[string]int{}
	var refPaths []string
	for i, d := range res.Changed {
		pos[d.Path] = i
		a, ok := byOld[d.OldPath]
		if !ok {
			errorf("Changed[%d]: %s is not a node of the graph", i, d.OldPath)
			continue
		}
		if !wantChanged[d.OldPath] {
			if d.Path != d.OldPath {
				errorf("%s: rewritten to %s, Nix leaves it at %s", a, d.Path, d.OldPath)
			}
			continue
		}
		delete(wantChanged, d.OldPath)
		e := expect[a]
		nixBytes, err := os.ReadFile(f.nix.real(e.Drv))
		if err != nil {
			errorf("%s: %v", a, err)
			continue
		}
		if !bytes.Equal(d.ATerm, nixBytes) {
			errorf("%s: ATerm of %s differs from Nix's file %s: %s", a, d.Path, e.Drv, equivFirstDiff(d.ATerm, nixBytes))
			if dir := os.Getenv("POISON_EQUIV_DUMP"); dir != "" {
				// for diffing by hand: <dir>/<nix base>.rewrite next to the store file
				_ = os.WriteFile(filepath.Join(dir, filepath.Base(e.Drv)+".rewrite"), d.ATerm, 0o644)
			}
		}
		if d.Path != e.Drv {
			errorf("%s: Changed path %s, nix-instantiate %s", a, d.Path, e.Drv)
			continue
		}
		if want := equivDrvName(e.Drv); d.Name != want { // a name may change (hash-in-name.nix)
			errorf("%s: Changed name %q, want %q", a, d.Name, want)
		}
		if len(d.Outputs) != len(e.Outs) && !f.refusable {
			errorf("%s: Changed outputs %v, nix-instantiate %v", a, d.Outputs, e.Outs)
		}
		for o, p := range e.Outs {
			if !equivIsStorePath(p) {
				continue // floating CA or deferred: Nix knows no path yet
			}
			if d.Outputs[o] != p {
				errorf("%s.%s: Changed output %s, nix-instantiate %s", a, o, d.Outputs[o], p)
			}
		}
		refPaths = append(refPaths, d.Path)
	}
	for _, a := range f.attrs {
		l, e := loaded[a], expect[a]
		if got, ok := res.DrvPaths[l.Drv]; !ok {
			errorf("%s: DrvPaths has no entry for %s", a, l.Drv)
		} else if got != e.Drv {
			errorf("%s: DrvPaths[%s] = %s, nix-instantiate %s", a, l.Drv, got, e.Drv)
		}
		for o, lp := range l.Outs {
			if ambiguous[lp] {
				continue // checked through Changed[].Outputs
			}
			if !equivIsStorePath(lp) {
				continue // a placeholder: floating CA or deferred
			}
			if got, ok := res.OutPaths[lp]; !ok {
				errorf("%s.%s: OutPaths has no entry for %s", a, o, lp)
			} else if got != e.Outs[o] {
				errorf("%s.%s: OutPaths[%s] = %s, nix-instantiate %s", a, o, lp, got, e.Outs[o])
			}
		}
	}
	for old := range wantChanged {
		errorf("%s: Nix rewrites %s to %s, Changed does not list it", byOld[old], old, expect[byOld[old]].Drv)
	}
	if len(refPaths) > 0 {
		nixRefs := nixReferences(t, f.nix, refPaths)
		for i, d := range res.Changed {
			if _, ok := nixRefs[d.Path]; !ok {
				continue
			}
			if !slices.Equal(d.References, nixRefs[d.Path]) {
				errorf("%s: References %v, Nix registered %v", d.Path, d.References, nixRefs[d.Path])
			}
			for _, r := range d.References {
				if j, ok := pos[r]; ok && j >= i {
					errorf("Changed not in topological order: %s (#%d) before its input %s (#%d)", d.Path, i, r, j)
				}
			}
		}
	}
	// Poisoned: exactly the nodes with a serial, with the right details.
	gotPoison := map[string]builder.Poison{}
	for _, p := range res.Poisoned {
		gotPoison[p.DrvPath] = p
	}
	for _, a := range f.attrs {
		l := loaded[a]
		p, ok := gotPoison[l.Drv]
		s := serials[a]
		switch {
		case s == 0 && ok:
			errorf("%s: Poisoned with serial %d, want none", a, p.Serial)
		case s > 0 && !ok:
			errorf("%s: not in Poisoned, want serial %d", a, s)
		case s > 0:
			if p.Serial != s || p.CanonicalDrvPath != f.clean[a].Drv || p.NewDrvPath != expect[a].Drv ||
				(p.Name != f.names[a] && p.Name != equivDrvName(expect[a].Drv)) {
				errorf("%s: Poisoned %+v, want serial %d, canonical %s, new %s, name %s", a, p, s, f.clean[a].Drv, expect[a].Drv, f.names[a])
			}
			if f.graph != nil {
				fixed := f.graph.Node(a).Kind.FixedOutput()
				if p.FixedOutput != fixed {
					errorf("%s: Poisoned.FixedOutput = %v, want %v", a, p.FixedOutput, fixed)
				}
				if fixed && !slices.ContainsFunc(warns, func(w builder.Warning) bool { return w.DrvPath == l.Drv }) {
					errorf("%s: poisoned fixed-output derivation %s without a warning", a, l.Drv)
				}
			}
		}
	}
	return probs
}

// references returns the references nix registered for each path.
func nixReferences(t *testing.T, nix equivNix, paths []string) map[string][]string {
	t.Helper()
	cmd := nix.command("nix-store", append([]string{"--dump-db"}, paths...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix-store --dump-db: %v: %s", err, stderr.String())
	}
	// Per path: path, hash, size, deriver, count, count references.
	m := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	for i := 0; i+4 < len(lines); {
		p := lines[i]
		n, err := strconv.Atoi(lines[i+4])
		if err != nil || i+5+n > len(lines) {
			t.Fatalf("nix-store --dump-db: malformed output at line %d", i+1)
		}
		refs := slices.Clone(lines[i+5 : i+5+n])
		sort.Strings(refs)
		m[p] = refs
		i += 5 + n
	}
	return m
}

// firstDiff describes where got and want differ: the first differing
// comma-separated fields (up to three) when both have as many fields, else
// the first differing byte.
func equivFirstDiff(got, want []byte) string {
	g, w := bytes.Split(got, []byte(",")), bytes.Split(want, []byte(","))
	if len(g) == len(w) {
		var b strings.Builder
		n := 0
		for i := range g {
			if !bytes.Equal(g[i], w[i]) {
				if n++; n > 3 {
					b.WriteString("\n  ...")
					break
				}
				fmt.Fprintf(&b, "\n  field %d: rewrite %q, nix %q", i, equivTrunc(g[i]), equivTrunc(w[i]))
			}
		}
		return b.String()
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(0, i-60)
	return fmt.Sprintf("at byte %d:\n  rewrite: %q\n  nix:     %q", i, got[lo:min(len(got), i+60)], want[lo:min(len(want), i+60)])
}

func equivTrunc(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

func equivSeeds(t *testing.T) (seeds []uint64, nodes int) {
	if s := os.Getenv("POISON_EQUIV_SEEDS"); s != "" {
		for _, f := range strings.Split(s, ",") {
			v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil {
				t.Fatalf("POISON_EQUIV_SEEDS: %v", err)
			}
			seeds = append(seeds, v)
		}
		return seeds, 300
	}
	if *equivLong || os.Getenv("POISON_EQUIV_LONG") == "1" {
		for s := uint64(1); s <= 12; s++ {
			seeds = append(seeds, s)
		}
		return seeds, 800
	}
	return []uint64{1, 2, 3}, 300
}

// TestEquivGenerated runs every case kind on generated graphs.
func TestEquivGenerated(t *testing.T) {
	nixtest.Need(t)
	seeds, nodes := equivSeeds(t)
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			t.Parallel()
			equivGenerated(t, seed, nodes, systemNix(nixtest.Environ()), nil)
		})
	}
}

// equivPrep returns the file to instantiate in place of a graph file (a
// variant a Nix accepts); nil keeps every file.
type equivPrep func(t *testing.T, file string) string

// equivGenerated runs every case of equivGeneratedCases on the graph of
// seed, instantiated by nix.
func equivGenerated(t *testing.T, seed uint64, nodes int, nix equivNix, prep equivPrep) {
	p := graphgen.Default(seed, nodes)
	p.NoTwins = os.Getenv("POISON_EQUIV_NOTWINS") == "1"
	switch seed % 3 {
	case 2:
		// Other attribute names, sorting elsewhere among env keys
		// and JSON keys: 'Z' < '_' < 'a'; after every key but é.
		p.Attr = "ZZ_POISON"
	case 0:
		p.Attr = "zzz_poison"
	}
	g, err := graphgen.Generate(p)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "graph.nix")
	if err := os.WriteFile(file, g.Expr(), 0o644); err != nil {
		t.Fatal(err)
	}
	if prep != nil {
		file = prep(t, file)
	}
	f := newFixture(t, file, g, nix)
	for _, c := range equivGeneratedCases(g, seed) {
		t.Run(c.name, func(t *testing.T) {
			f.runCase(t, c)
			if t.Failed() {
				t.Logf("reproduce: go run ./builder/internal/graphgen/cmd/graphgen gen -seed %d -nodes %d -attr %s -notwins=%v > graph.nix; lock %+v, pre-poisoned %v, byName %v",
					seed, nodes, p.Attr, p.NoTwins, c.spec, c.pre, c.byName)
			}
		})
	}
}

// equivGeneratedCases picks the nodes of each case from the graph.
func equivGeneratedCases(g *graphgen.Graph, seed uint64) []equivCase {
	rng := rand.New(rand.NewPCG(seed, 42))
	deps := g.Dependents()
	byKind := map[graphgen.Kind][]int{}
	var twins, multi, groupOut, leaves []int
	deep := -1
	for i, n := range g.Nodes {
		byKind[n.Kind] = append(byKind[n.Kind], i)
		if n.Twin > i {
			twins = append(twins, i)
		}
		if len(n.Outputs) > 1 {
			multi = append(multi, i)
		}
		if n.Group >= 0 && i > 0 && slices.ContainsFunc(g.Nodes[:i], func(m graphgen.Node) bool { return m.Group == n.Group }) {
			groupOut = append(groupOut, i)
		}
		if len(deps[i]) == 0 {
			leaves = append(leaves, i)
		}
		if n.Layer <= 2 && (deep < 0 || len(deps[i]) > len(deps[deep])) && !n.Kind.FixedOutput() {
			deep = i
		}
	}
	pick := func(xs []int) string {
		if len(xs) == 0 {
			return g.Nodes[0].Attr
		}
		return g.Nodes[xs[rng.IntN(len(xs))]].Attr
	}
	attr := func(i int) string { return g.Nodes[i].Attr }
	several := map[string]int{}
	for i, k := range []graphgen.Kind{graphgen.Plain, graphgen.Multi, graphgen.Structured, graphgen.StructuredMulti, graphgen.FixedRecursive} {
		several[pick(byKind[k])] = []int{1, 2, 3, 7, 12}[i]
	}
	many := map[string]int{}
	for range len(g.Nodes) / 10 {
		many[attr(rng.IntN(len(g.Nodes)))] = 1 + rng.IntN(3)
	}
	multiNode := g.Nodes[multi[rng.IntN(len(multi))]]
	nonDefault := multiNode.Attr + "." + multiNode.Outputs[len(multiNode.Outputs)-1]
	var dupName, twinName string
	names := map[string]int{}
	for _, n := range g.Nodes {
		names[n.Name]++
	}
	for _, n := range g.Nodes {
		if names[n.Name] > 1 && n.Group < 0 && n.Twin < 0 && dupName == "" {
			dupName = n.Name
		}
		if n.Twin >= 0 && twinName == "" {
			twinName = n.Name
		}
	}
	byNameSpec := map[string]int{dupName: 2}
	if twinName != "" {
		byNameSpec[twinName] = 1
	}
	if len(groupOut) > 0 {
		byNameSpec[g.Node(pick(groupOut)).Name] = 4 // a fixed-output group's shared name
	}
	pre := map[string]int{pick(byKind[graphgen.Structured]): 4, pick(byKind[graphgen.Plain]): 1, attr(deep): 2}
	cases := []equivCase{
		{name: "deep", spec: equivLockSpec{drvs: map[string]int{attr(deep): 1}}},
		{name: "leaf", spec: equivLockSpec{drvs: map[string]int{pick(leaves): 2}}},
		{name: "several-kinds", spec: equivLockSpec{drvs: several}},
		{name: "several-kinds-sink-roots", spec: equivLockSpec{drvs: several}, sinks: true},
		{name: "many", spec: equivLockSpec{drvs: many}},
		{name: "output", spec: equivLockSpec{outs: map[string]int{nonDefault: 3}}},
		{name: "fixed-output-collision", spec: equivLockSpec{outs: map[string]int{pick(groupOut) + ".out": 1}}},
		{name: "fixed-output-drv", spec: equivLockSpec{drvs: map[string]int{pick(byKind[graphgen.FixedFlat]): 2}}},
		{name: "by-name", byName: true, spec: equivLockSpec{names: byNameSpec, drvs: map[string]int{attr(deep): 5}}},
		{name: "by-name-off", spec: equivLockSpec{names: byNameSpec}, noop: true},
		{name: "repoison", pre: pre, spec: equivLockSpec{drvs: map[string]int{attr(deep): 3, pick(byKind[graphgen.StructuredMulti]): 1}}},
		{name: "canonicalise", pre: pre, noop: true},
	}
	if len(twins) > 0 {
		cases = append(cases, equivCase{name: "twin", spec: equivLockSpec{drvs: map[string]int{pick(twins): 1}}})
	}
	return cases
}

// TestEquivTestdata runs the hand-written graphs of testdata/graphs: each
// node poisoned alone, then all at once with serial 2.
func TestEquivTestdata(t *testing.T) {
	nixtest.Need(t)
	equivFiles(t, filepath.Join("..", "testdata", "graphs", "*.nix"), systemNix(nixtest.Environ()), false, nil)
}

// TestEquivFloatingCA runs testdata/graphs/ca: floating content-addressed
// and impure derivations, which Nix 2.8 supports as experimental features.
// The rewrite must reproduce Nix (placeholders, deferred outputs) or refuse
// with an error naming the derivation.
func TestEquivFloatingCA(t *testing.T) {
	nixtest.Need(t)
	env := append(nixtest.Environ(), "NIX_CONFIG="+nixtest.Config+"experimental-features = ca-derivations impure-derivations\n")
	equivFiles(t, filepath.Join("..", "testdata", "graphs", "ca", "*.nix"), systemNix(env), true, nil)
}

// TestEquivAmbiguous runs testdata/graphs/ambiguous: closures where a
// reference cannot be traced to one derivation. The rewrite must reproduce
// Nix or refuse with an error naming the derivation.
func TestEquivAmbiguous(t *testing.T) {
	nixtest.Need(t)
	equivFiles(t, filepath.Join("..", "testdata", "graphs", "ambiguous", "*.nix"), systemNix(nixtest.Environ()), true, nil)
}

// equivFiles runs the graphs matching glob, instantiated by nix.
func equivFiles(t *testing.T, glob string, nix equivNix, refusable bool, prep equivPrep) {
	files, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no graphs match %s", glob)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".nix"), func(t *testing.T) {
			t.Parallel()
			abs, err := filepath.Abs(file)
			if err != nil {
				t.Fatal(err)
			}
			if prep != nil {
				abs = prep(t, abs)
			}
			f := newFixture(t, abs, nil, nix)
			f.refusable = refusable
			all := map[string]int{}
			for _, a := range f.attrs {
				all[a] = 2
				t.Run(a, func(t *testing.T) {
					f.runCase(t, equivCase{name: a, spec: equivLockSpec{drvs: map[string]int{a: 1}}})
				})
			}
			t.Run("all", func(t *testing.T) {
				f.runCase(t, equivCase{name: "all", spec: equivLockSpec{drvs: all}})
			})
			t.Run("canonicalise", func(t *testing.T) {
				f.runCase(t, equivCase{name: "canonicalise", pre: all, noop: true})
			})
		})
	}
}

// TestEquivTwinsLoadStable loads closures with twins (members sharing output
// paths) many times: each twin mentions its own outputs, which are also the
// other twin's, and that must never look like a cycle, whatever the parse
// order (notes/rewrite-bugs.md B4).
func TestEquivTwinsLoadStable(t *testing.T) {
	nixtest.Need(t)
	abs, err := filepath.Abs(filepath.Join("..", "testdata", "graphs", "r6-merge.nix"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, abs, nil, systemNix(nixtest.Environ()))
	for _, poison := range []map[string]int{nil, {"f1": 1}, {"x1": 1}} {
		loaded := f.eval(t, poison)
		var roots []string
		for _, a := range f.attrs {
			roots = append(roots, loaded[a].Drv)
		}
		for i := range 40 {
			// roots in a different order each time
			r := rand.New(rand.NewPCG(uint64(i), 1))
			r.Shuffle(len(roots), func(a, b int) { roots[a], roots[b] = roots[b], roots[a] })
			if _, err := builder.LoadClosure(context.Background(), builder.LoadOptions{}, roots); err != nil {
				t.Fatalf("poison %v, attempt %d: %v", poison, i, err)
			}
		}
	}
}

// TestEquivHarnessCatchesMutations checks the checker: a Result that is
// right must pass, and each way of being wrong must be reported.
func TestEquivHarnessCatchesMutations(t *testing.T) {
	nixtest.Need(t)
	abs, err := filepath.Abs(filepath.Join("..", "testdata", "graphs", "r1-edges.nix"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, abs, nil, systemNix(nixtest.Environ()))
	lk := f.lock(t, equivLockSpec{drvs: map[string]int{"a": 2}})
	want := f.expected(lk, false)
	expect := f.eval(t, want)
	roots := make([]string, len(f.attrs))
	for i, a := range f.attrs {
		roots[i] = f.clean[a].Drv
	}
	res, warns := equivRewrite(t, f.nix, roots, lk, false)
	if p := f.problems(t, f.attrs, f.clean, expect, want, res, warns); len(p) > 0 {
		t.Fatalf("the rewrite under test is wrong, fix it first: %v", p)
	}
	if len(res.Changed) < 3 {
		t.Fatalf("only %d derivations changed; the mutations need more", len(res.Changed))
	}
	clone := func() *builder.Result {
		r := *res
		r.Roots = slices.Clone(res.Roots)
		r.DrvPaths = maps.Clone(res.DrvPaths)
		r.OutPaths = maps.Clone(res.OutPaths)
		r.Changed = slices.Clone(res.Changed)
		r.Poisoned = slices.Clone(res.Poisoned)
		return &r
	}
	anyOut := func(r *builder.Result) string {
		for o, n := range r.OutPaths {
			if o != n {
				return o
			}
		}
		t.Fatal("no output path changed")
		return ""
	}
	for _, m := range []struct {
		name   string
		mutate func(r *builder.Result)
	}{
		{"root left unchanged", func(r *builder.Result) { r.Roots[0] = roots[0] }},
		{"root missing", func(r *builder.Result) { r.Roots = r.Roots[1:] }},
		{"drv path missing", func(r *builder.Result) { delete(r.DrvPaths, r.Changed[1].OldPath) }},
		{"drv path wrong", func(r *builder.Result) { r.DrvPaths[r.Changed[1].OldPath] = r.Changed[1].OldPath }},
		{"output path wrong", func(r *builder.Result) { o := anyOut(r); r.OutPaths[o] = o }},
		{"one byte of a file", func(r *builder.Result) {
			d := &r.Changed[len(r.Changed)-1]
			d.ATerm = slices.Clone(d.ATerm)
			d.ATerm[len(d.ATerm)/2] ^= 1
		}},
		{"changed derivation not listed", func(r *builder.Result) { r.Changed = r.Changed[:len(r.Changed)-1] }},
		{"not in topological order", func(r *builder.Result) { slices.Reverse(r.Changed) }},
		{"references", func(r *builder.Result) {
			d := &r.Changed[len(r.Changed)-1]
			d.References = d.References[1:]
		}},
		{"outputs", func(r *builder.Result) {
			d := &r.Changed[0]
			d.Outputs = map[string]string{"out": "/nix/store/00000000000000000000000000000000-x"}
		}},
		{"poisoned missing", func(r *builder.Result) { r.Poisoned = nil }},
		{"serial wrong", func(r *builder.Result) { r.Poisoned[0].Serial++ }},
	} {
		r := clone()
		m.mutate(r)
		if p := f.problems(t, f.attrs, f.clean, expect, want, r, warns); len(p) == 0 {
			t.Errorf("mutation %q not detected", m.name)
		}
	}
}
