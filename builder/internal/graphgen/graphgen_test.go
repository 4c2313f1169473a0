package graphgen_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder/internal/graphgen"
	"github.com/poison-nix/poison/internal/nixtest"
)

func TestDeterministic(t *testing.T) {
	a, err := graphgen.Generate(graphgen.Default(7, 200))
	if err != nil {
		t.Fatal(err)
	}
	b, err := graphgen.Generate(graphgen.Default(7, 200))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Expr(), b.Expr()) {
		t.Fatal("same seed, different expressions")
	}
	c, err := graphgen.Generate(graphgen.Default(8, 200))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Expr(), c.Expr()) {
		t.Fatal("different seeds, same expression")
	}
}

func TestInvalidParams(t *testing.T) {
	for _, p := range []graphgen.Params{
		{Nodes: 0, Depth: 1, MinInputs: 1, MaxInputs: 1},
		{Nodes: 10, Depth: 11, MinInputs: 1, MaxInputs: 1},
		{Nodes: 10, Depth: 2, MinInputs: 3, MaxInputs: 2},
		{Nodes: 10, Depth: 2, MinInputs: 1, MaxInputs: 2, Attr: "a-b"},
	} {
		if _, err := graphgen.Generate(p); err == nil {
			t.Errorf("Generate(%+v) = nil error", p)
		}
	}
}

// TestFeatures checks with the real Nix that a generated graph has the
// shapes it claims: colliding fixed-output groups, twins with equal
// outputs, a dependent that merges them, shared names, structured attrs and
// every reference kind; and that poison changes what it should.
func TestFeatures(t *testing.T) {
	nixtest.Need(t)
	ctx := context.Background()
	g, err := graphgen.Generate(graphgen.Default(1, 300))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "graph.nix")
	if err := os.WriteFile(file, g.Expr(), 0o644); err != nil {
		t.Fatal(err)
	}
	paths, err := graphgen.Eval(ctx, nixtest.Environ(), file, "", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != len(g.Nodes) {
		t.Fatalf("Nix evaluated %d nodes, graph has %d", len(paths), len(g.Nodes))
	}
	read := func(attr string) string {
		b, err := os.ReadFile(paths[attr].Drv)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	kinds := map[graphgen.Kind]int{}
	refs := map[graphgen.RefKind]int{}
	names := map[string]int{}
	groups := map[int][]string{}
	twins, merged := 0, 0
	for _, n := range g.Nodes {
		kinds[n.Kind]++
		names[n.Name]++
		p := paths[n.Attr]
		if len(p.Outs) != len(n.Outputs) {
			t.Errorf("%s: Nix has outputs %v, graph %v", n.Attr, p.Outs, n.Outputs)
		}
		if n.Group >= 0 {
			groups[n.Group] = append(groups[n.Group], n.Attr)
		}
		if n.Twin >= 0 {
			tw := paths[g.Nodes[n.Twin].Attr]
			if tw.Drv == p.Drv || tw.Outs["out"] != p.Outs["out"] || tw.Outs["dev"] != p.Outs["dev"] {
				t.Errorf("twins %s and %s: want different .drv, same outputs; got %v and %v", n.Attr, g.Nodes[n.Twin].Attr, p, tw)
			}
			twins++
		}
		text := read(n.Attr)
		for _, r := range n.Refs {
			refs[r.Kind]++
			dep := g.Nodes[r.Node]
			if r.Kind.Edge() && dep.Twin >= 0 && dep.Twin < r.Node && refersTo(n, dep.Twin) {
				// the common dependent of a twin pair lists both in inputDrvs
				if !strings.Contains(text, paths[dep.Attr].Drv) || !strings.Contains(text, paths[g.Nodes[dep.Twin].Attr].Drv) {
					t.Errorf("%s: merged dependent does not list both twins", n.Attr)
				}
				merged++
			}
		}
		if (n.Kind == graphgen.Structured || n.Kind == graphgen.StructuredMulti) != strings.Contains(text, `("__json",`) {
			t.Errorf("%s (%s): __json presence does not match the kind", n.Attr, n.Kind)
		}
	}
	for k := graphgen.Plain; k <= graphgen.FixedRecursive; k++ {
		if kinds[k] == 0 {
			t.Errorf("no node of kind %s", k)
		}
	}
	for k := graphgen.RefOut; k <= graphgen.RefBuilder; k++ {
		if refs[k] == 0 {
			t.Errorf("no reference of kind %s", k)
		}
	}
	collide := 0
	for _, m := range groups {
		for _, a := range m[1:] {
			if paths[a].Outs["out"] != paths[m[0]].Outs["out"] || paths[a].Drv == paths[m[0]].Drv {
				t.Errorf("fixed-output group %v: want one output path, different .drv paths", m)
			}
			collide++
		}
	}
	shared := 0
	for _, c := range names {
		if c > 1 {
			shared++
		}
	}
	if twins == 0 || merged == 0 || collide == 0 || shared == 0 {
		t.Errorf("twins %d, merged dependents %d, colliding fixed-output members %d, shared names %d: want all > 0", twins, merged, collide, shared)
	}

	// Poison changes the node and leaves an unrelated one alone.
	deps := g.Dependents()
	var leaf string
	for i := len(g.Nodes) - 1; i >= 0; i-- {
		if len(deps[i]) == 0 && !g.Nodes[i].Kind.FixedOutput() {
			leaf = g.Nodes[i].Attr
			break
		}
	}
	expr, err := g.PoisonExpr(map[string]int{leaf: 3})
	if err != nil {
		t.Fatal(err)
	}
	pp, err := graphgen.Eval(ctx, nixtest.Environ(), file, expr, false)
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for a, p := range pp {
		if p.Drv != paths[a].Drv {
			changed++
		}
	}
	if pp[leaf].Drv == paths[leaf].Drv || changed != 1 {
		t.Errorf("poisoning leaf %s changed %d .drv paths (leaf changed: %v), want exactly the leaf", leaf, changed, pp[leaf].Drv != paths[leaf].Drv)
	}
	if _, err := g.PoisonExpr(map[string]int{"n99999": 1}); err == nil {
		t.Error("PoisonExpr accepted a node the graph lacks")
	}
}

func refersTo(n graphgen.Node, i int) bool {
	for _, r := range n.Refs {
		if r.Node == i && r.Kind.Edge() {
			return true
		}
	}
	return false
}

// TestBenchShape checks the benchmark shape of issue 3 on a small sample:
// every .drv 2–10 KB, 3–15 inputs, 40 layers, all kinds present.
func TestBenchShape(t *testing.T) {
	nixtest.Need(t)
	p := graphgen.Bench(1, 400)
	g, err := graphgen.Generate(p)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "graph.nix")
	if err := os.WriteFile(file, g.Expr(), 0o644); err != nil {
		t.Fatal(err)
	}
	paths, err := graphgen.Eval(context.Background(), nixtest.Environ(), file, "", true)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[graphgen.Kind]bool{}
	for _, n := range g.Nodes {
		kinds[n.Kind] = true
		fi, err := os.Stat(paths[n.Attr].Drv)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() < 2000 || fi.Size() > 10240 {
			t.Errorf("%s: %d bytes, want 2–10 KB", n.Attr, fi.Size())
		}
		if n.Layer > 0 && (len(n.Refs) < 3 || len(n.Refs) > 15+3) { // +3: a twin pair's common dependent
			t.Errorf("%s: %d references, want 3–15", n.Attr, len(n.Refs))
		}
		for _, r := range n.Refs {
			if r.Kind == graphgen.RefDrvPath {
				t.Errorf("%s: drvPath reference in the benchmark shape (breaks --readonly-mode)", n.Attr)
			}
		}
	}
	if last := g.Nodes[len(g.Nodes)-1].Layer; last != 39 {
		t.Errorf("deepest layer %d, want 39", last)
	}
	if len(kinds) != 6 {
		t.Errorf("kinds %v, want all six", kinds)
	}
	if n, down := g.Deep(); n < 0 || down < len(g.Nodes)/2 {
		t.Errorf("Deep() = %d with %d downstream, want a node upstream of most of the graph", n, down)
	}
}
