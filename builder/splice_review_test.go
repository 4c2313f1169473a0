package builder

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder/internal/aterm"
	"github.com/poison-nix/poison/builder/internal/structattrs"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/storepath"
)

// spliceStore builds hand-written derivations in a temporary store
// directory for the review cases of the patching path.
type spliceStore struct {
	t     *testing.T
	dir   string
	paths map[string]string // name -> .drv path
	drvs  map[string]*aterm.Derivation
}

func newSpliceStore(t *testing.T, dir string) *spliceStore {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &spliceStore{t: t, dir: dir, paths: map[string]string{}, drvs: map[string]*aterm.Derivation{}}
}

// outPath is an input-addressed output path for name/out, or hash (32
// nixbase32 characters) when given.
func (s *spliceStore) outPath(name, out, hash string) string {
	if hash != "" {
		return s.dir + "/" + hash + "-" + storepath.OutputPathName(name, out)
	}
	return storepath.Output(s.dir, name, out, sha256.Sum256([]byte(name)))
}

// spec describes one hand-written derivation.
type spliceSpec struct {
	name     string
	outs     []string          // output names ("out" when empty)
	hashes   map[string]string // output name -> hash part to use
	fixed    string            // sha256 hex: a fixed-output derivation
	inputs   map[string][]string
	srcs     []string
	builder  string
	args     []string
	env      map[string]string // besides name, system and the outputs
	noOutEnv bool              // leave the output env variables out
	bare     bool              // no name and system in env (structured attrs)
}

// add writes the derivation and returns its .drv path.
func (s *spliceStore) add(sp spliceSpec) string {
	t := s.t
	t.Helper()
	d := &aterm.Derivation{Platform: "x86_64-linux", Builder: sp.builder, Args: sp.args}
	if d.Builder == "" {
		d.Builder = "/bin/sh"
	}
	outs := sp.outs
	if len(outs) == 0 {
		outs = []string{"out"}
	}
	outs = slices.Clone(outs)
	slices.Sort(outs)
	env := map[string]string{"name": sp.name, "system": "x86_64-linux"}
	if sp.bare {
		env = map[string]string{}
	}
	for _, o := range outs {
		out := aterm.Output{Name: o}
		if sp.fixed != "" {
			p, err := storepath.Fixed(s.dir, "sha256", sp.fixed, storepath.OutputPathName(sp.name, o))
			if err != nil {
				t.Fatal(err)
			}
			out.Path, out.HashAlgo, out.Hash = p, "sha256", sp.fixed
		} else {
			out.Path = s.outPath(sp.name, o, sp.hashes[o])
		}
		d.Outputs = append(d.Outputs, out)
		if !sp.noOutEnv {
			env[o] = out.Path
		}
	}
	for k, v := range sp.env {
		env[k] = v
	}
	for k, v := range env {
		d.Env = append(d.Env, aterm.EnvVar{Key: k, Value: v})
	}
	slices.SortFunc(d.Env, func(a, b aterm.EnvVar) int { return strings.Compare(a.Key, b.Key) })
	for in, os := range sp.inputs {
		d.InputDrvs = append(d.InputDrvs, aterm.InputDrv{Path: s.paths[in], Outputs: os})
	}
	slices.SortFunc(d.InputDrvs, func(a, b aterm.InputDrv) int { return strings.Compare(a.Path, b.Path) })
	d.InputSrcs = slices.Clone(sp.srcs)
	slices.Sort(d.InputSrcs)
	d.InputSrcs = slices.Compact(d.InputSrcs)
	text := aterm.Append(nil, d)
	refs := slices.Clone(d.InputSrcs)
	for _, in := range d.InputDrvs {
		refs = append(refs, in.Path)
	}
	slices.Sort(refs)
	p := storepath.Text(s.dir, sp.name+".drv", sha256.Sum256(text), slices.Compact(refs))
	if err := os.WriteFile(p, text, 0o444); err != nil {
		t.Fatal(err)
	}
	s.paths[sp.name] = p
	s.drvs[sp.name] = d
	return p
}

func (s *spliceStore) out(name, o string) string {
	for _, x := range s.drvs[name].Outputs {
		if x.Name == o {
			return x.Path
		}
	}
	s.t.Fatalf("no output %s of %s", o, name)
	return ""
}

func (s *spliceStore) hash(p string) string { return p[len(s.dir)+1:][:storepath.HashLen] }

// compare loads the closure of roots and requires the patching and the
// general path to give the same Result for lk. It returns the Result and
// whether the named derivations are candidates of the patching path.
func (s *spliceStore) compare(lk *lock.File, byName bool, par int, roots ...string) (*Result, *Closure) {
	t := s.t
	t.Helper()
	var rs []string
	for _, r := range roots {
		rs = append(rs, s.paths[r])
	}
	c, err := LoadClosure(t.Context(), LoadOptions{StoreDir: s.dir, Parallelism: par}, rs)
	if err != nil {
		t.Fatal(err)
	}
	fast, errF := Rewrite(t.Context(), c, Options{Lock: lk, ByName: byName})
	gen, errG := Rewrite(t.Context(), c, Options{Lock: lk, ByName: byName, noSplice: true})
	if (errF == nil) != (errG == nil) {
		t.Fatalf("patching error %v, general error %v", errF, errG)
	}
	if errF != nil {
		return nil, c
	}
	if len(fast.Changed) != len(gen.Changed) {
		t.Fatalf("changed %d and %d derivations", len(fast.Changed), len(gen.Changed))
	}
	for k := range fast.Changed {
		if f, g := fast.Changed[k], gen.Changed[k]; !reflect.DeepEqual(f, g) {
			t.Fatalf("patching and re-serialising differ for %s:\n%s\n%s\n%v %v\n%v %v", f.OldPath, f.ATerm, g.ATerm, f.Path, g.Path, f.References, g.References)
		}
	}
	g := *gen
	g.spliced = fast.spliced // how each got there differs, by design
	if !reflect.DeepEqual(*fast, g) {
		t.Fatalf("results differ:\n%+v\n%+v", fast, gen)
	}
	// Every rewritten file must parse and give its own path.
	for _, d := range fast.Changed {
		if _, err := aterm.Parse(string(d.ATerm)); err != nil {
			t.Fatalf("%s: %v\n%s", d.Path, err, d.ATerm)
		}
		if p := storepath.Text(s.dir, d.Name+".drv", sha256.Sum256(d.ATerm), d.References); p != d.Path {
			t.Fatalf("%s: content gives %s", d.Path, p)
		}
	}
	return fast, c
}

func (s *spliceStore) spliceable(c *Closure, name string) bool {
	for i := range c.nodes {
		if c.nodes[i].path == s.paths[name] {
			return c.nodes[i].spliceable
		}
	}
	s.t.Fatalf("%s not in the closure", name)
	return false
}

func lockFor(s *spliceStore, serial int, names ...string) *lock.File {
	lk := lock.New(lock.Source{}, lock.DefaultEnv)
	lk.StoreDir = s.dir
	for _, n := range names {
		lk.Derivations[s.paths[n][len(s.dir)+1:]] = serial
	}
	return lk
}

// TestSplicedReviewInputSrcs: changed output and .drv paths among the input
// sources, re-sorted in place, in store directories whose name holds the
// characters that delimit the list in the file.
func TestSplicedReviewInputSrcs(t *testing.T) {
	for _, sub := range []string{"store", "st]ore", "st],[ore", "]", "a,b"} {
		t.Run(sub, func(t *testing.T) {
			s := newSpliceStore(t, filepath.Join(t.TempDir(), sub))
			s.add(spliceSpec{name: "a", outs: []string{"out", "dev"}})
			s.add(spliceSpec{name: "u"}) // unchanged
			srcs := []string{s.out("a", "out"), s.out("a", "dev"), s.paths["a"], s.paths["u"], s.out("u", "out"),
				s.dir + "/" + strings.Repeat("0", 32) + "-src0", s.dir + "/" + strings.Repeat("z", 32) + "-srcz",
				s.dir + "/" + strings.Repeat("g", 32) + "-srcg"}
			s.add(spliceSpec{name: "b", srcs: srcs, env: map[string]string{"x": s.out("a", "dev")}})
			for serial := 1; serial <= 6; serial++ {
				_, c := s.compare(lockFor(s, serial, "a"), false, 0, "b")
				if !s.spliceable(c, "b") {
					t.Fatalf("b is not a candidate of the patching path")
				}
			}
		})
	}
}

// TestSplicedReviewOverlap: windows of several members overlapping in one
// value, changed and unchanged, in every order.
func TestSplicedReviewOverlap(t *testing.T) {
	const h1 = "0123456789abcdfghijklmnpqrsvwxyz"
	h2 := h1[8:] + "aaaaaaaa" // overlaps the end of h1
	hu := "cccc" + h1[:28]    // unchanged, overlaps the start of h1
	hu2 := h1[4:] + "dddd"    // unchanged, overlaps the end of h1
	h3 := "nnnn" + h1[:28]    // changed, starts with an escape letter
	s := newSpliceStore(t, t.TempDir())
	s.add(spliceSpec{name: "p"})
	s.add(spliceSpec{name: "a1", hashes: map[string]string{"out": h1}, inputs: map[string][]string{"p": {"out"}}})
	s.add(spliceSpec{name: "a2", hashes: map[string]string{"out": h2}, inputs: map[string][]string{"p": {"out"}}})
	s.add(spliceSpec{name: "a3", hashes: map[string]string{"out": h3}, inputs: map[string][]string{"p": {"out"}}})
	s.add(spliceSpec{name: "u1", hashes: map[string]string{"out": hu}})
	s.add(spliceSpec{name: "u2", hashes: map[string]string{"out": hu2}})
	vals := []string{
		h1 + "aaaaaaaa",          // changed, changed
		"cccc" + h1,              // unchanged, changed
		h1 + "dddd",              // changed, unchanged
		"cccc" + h1 + "aaaaaaaa", // unchanged, changed, changed
		"nnnn" + h1,              // changed (a3), changed (a1)
		"\nnnn" + h1,             // an escape, then a1 (a3's window is not in the value)
		"\\nnnn" + h1,            // a backslash, then a3 and a1
		"\\\nnnn" + h1 + "\r" + h1[1:] + "aaaaaaaa",
		"\"" + h1 + "\\" + h2 + "\t" + hu + "\\\\" + h3,
	}
	env := map[string]string{}
	for k, v := range vals {
		env[fmt.Sprintf("v%d", k)] = v
	}
	s.add(spliceSpec{name: "b", env: env, builder: "\\" + h3 + "\n", args: vals,
		inputs: map[string][]string{"a1": {"out"}, "u1": {"out"}}})
	for serial := 1; serial <= 3; serial++ {
		_, c := s.compare(lockFor(s, serial, "p"), false, 0, "b", "a2", "a3", "u2")
		if !s.spliceable(c, "b") {
			t.Fatal("b is not a candidate of the patching path")
		}
	}
}

// TestSplicedReviewShapes: multi-output derivations, fixed-output
// derivations that change, self mentions, hashes in names and env keys,
// the attribute already present, env values that are output paths.
func TestSplicedReviewShapes(t *testing.T) {
	s := newSpliceStore(t, t.TempDir())
	s.add(spliceSpec{name: "a", outs: []string{"out", "dev", "lib"}})
	aOut, aDev := s.out("a", "out"), s.out("a", "dev")
	s.add(spliceSpec{name: "fod", fixed: strings.Repeat("ab", 32), env: map[string]string{"url": "https://x/" + s.hash(aOut) + "/y", "d": s.paths["a"]}})
	s.add(spliceSpec{name: "fodUser", inputs: map[string][]string{"fod": {"out"}}, env: map[string]string{"src": s.out("fod", "out")}})
	s.add(spliceSpec{name: "multi", outs: []string{"out", "dev", "bin"}, inputs: map[string][]string{"a": {"dev", "out"}},
		env: map[string]string{"self": storepath.Output(s.dir, "multi", "out", sha256.Sum256([]byte("multi"))), "deps": aOut + ":" + aDev, "e": "", "aout": aOut}})
	s.add(spliceSpec{name: "named-" + s.hash(aOut), inputs: map[string][]string{"a": {"out"}}, env: map[string]string{"x": aOut}})
	s.add(spliceSpec{name: "keyed", inputs: map[string][]string{"a": {"out"}}, env: map[string]string{"k" + s.hash(aDev): "1", "x": aOut}})
	s.add(spliceSpec{name: "attr", inputs: map[string][]string{"a": {"out"}}, env: map[string]string{"POISON_SERIAL": "1", "x": aDev, "AAA": aOut, "zzz": aOut}})
	s.add(spliceSpec{name: "noOutEnv", noOutEnv: true, inputs: map[string][]string{"a": {"out"}}, env: map[string]string{"x": aDev}})
	s.add(spliceSpec{name: "top", inputs: map[string][]string{"fodUser": {"out"}, "multi": {"bin", "dev"}, "named-" + s.hash(aOut): {"out"}, "keyed": {"out"}, "attr": {"out"}, "noOutEnv": {"out"}},
		srcs: []string{s.paths["fod"]}, env: map[string]string{"m": s.out("multi", "dev")}})
	for serial := 1; serial <= 2; serial++ {
		lk := lockFor(s, serial, "a")
		lk.Names["attr"] = 1
		res, c := s.compare(lk, true, 0, "top")
		if res == nil {
			t.Fatal("rewrite refused")
		}
		for _, n := range []string{"fod", "fodUser", "multi", "attr", "top"} {
			if !s.spliceable(c, n) {
				t.Errorf("%s is not a candidate of the patching path", n)
			}
		}
		if res.OutPaths[s.out("fod", "out")] != s.out("fod", "out") {
			t.Errorf("fixed output path changed")
		}
	}
	// Poisoning the fixed-output derivation itself.
	s.compare(lockFor(s, 1, "fod"), false, 0, "top")
}

// TestSplicedReviewJSON: structured attributes with hashes in values,
// nested objects, lists, keys and next to escaped quotes and backslashes.
func TestSplicedReviewJSON(t *testing.T) {
	s := newSpliceStore(t, t.TempDir())
	s.add(spliceSpec{name: "a", outs: []string{"out", "dev"}})
	s.add(spliceSpec{name: "u"})
	ha, hd, hu := s.hash(s.out("a", "out")), s.hash(s.out("a", "dev")), s.hash(s.out("u", "out"))
	for k, js := range []string{
		`{"a":"` + ha + `","b":{"c":"` + hd + `"},"l":["` + ha + `",1.5,"\"` + hd + `\":"],"m":"x\\` + ha + `\\"}`,
		`{"a":"` + ha + `\":","b":"\\\\` + hd + `\n` + ha + `"}`,
		`{"` + hu + `":"` + ha + `","b":1}`,                // unchanged key, changed value
		`{"b":{"` + ha + `":1,"c":2}}`,                     // changed nested key: general path
		`{"` + ha + `x":1,"b":2}`,                          // changed top-level key
		`{"POISON_SERIAL":"1","a":"` + ha + `"}`,           // attribute present
		`{"a":"\"POISON_SERIAL\":1","b":"` + ha + `"}`,     // attribute only inside a value
		`{"a":"\\\"POISON_SERIAL\":1","b":"` + hd + `"}`,   // after an escaped backslash and quote
		`{"a":"x\\","POISON_SERIAL":"1","b":"` + hd + `"}`, // after a string ending in a backslash
		`{"b":"` + ha + `","c":{"POISON_SERIAL":"1"}}`,     // nested only
	} {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			name := fmt.Sprintf("j%d", k)
			s.add(spliceSpec{name: name, inputs: map[string][]string{"a": {"dev", "out"}},
				env: map[string]string{"__json": js}, bare: true})
			for serial := 1; serial <= 2; serial++ {
				lk := lockFor(s, serial, "a")
				lk.Names[name] = 1
				if res, _ := s.compare(lk, true, 0, name); res == nil {
					t.Fatal("rewrite refused")
				}
			}
		})
	}
}

// TestSplicedReviewLargeFiles: files larger than the arena slack and than
// a whole arena chunk, read by one reader after smaller ones.
func TestSplicedReviewLargeFiles(t *testing.T) {
	s := newSpliceStore(t, t.TempDir())
	s.add(spliceSpec{name: "a"})
	ha := s.hash(s.out("a", "out"))
	var roots []string
	for k, size := range []int{10, arenaSlack - 100, arenaSlack + 10, 900 << 10, arenaChunk - 300, arenaChunk, arenaChunk + 5000, 3 * arenaChunk, 100} {
		name := fmt.Sprintf("big%d", k)
		v := strings.Repeat("\\x"+ha+"\n", size/36+1)
		s.add(spliceSpec{name: name, inputs: map[string][]string{"a": {"out"}}, env: map[string]string{"v": v, "w": ha}})
		roots = append(roots, name)
	}
	res, c := s.compare(lockFor(s, 1, "a"), false, 1, roots...)
	for _, r := range roots {
		if !s.spliceable(c, r) {
			t.Errorf("%s is not a candidate of the patching path", r)
		}
	}
	if len(res.Changed) != len(roots)+1 {
		t.Fatalf("%d changed", len(res.Changed))
	}
	for _, d := range res.Changed[1:] {
		if strings.Contains(string(d.ATerm), ha) {
			t.Errorf("%s still mentions %s", d.Path, ha)
		}
	}
}

// TestSplicedReviewReader reads files of sizes around the arena limits in
// sequences that leave exactly as much free space as the next file needs,
// and checks that no file read earlier is overwritten by a later one.
func TestSplicedReviewReader(t *testing.T) {
	dir := t.TempDir()
	var rd reader
	type got struct {
		want []byte
		data []byte
	}
	var all []got
	k := 0
	read := func(size int) {
		t.Helper()
		b := make([]byte, size)
		for i := range b {
			b[i] = byte('a' + (i+k)%26)
		}
		k++
		p := filepath.Join(dir, fmt.Sprint(k))
		if err := os.WriteFile(p, b, 0o444); err != nil {
			t.Fatal(err)
		}
		data, err := rd.readFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != string(b) {
			t.Fatalf("file of %d bytes read as %d bytes", size, len(data))
		}
		if cap(data) != len(data) {
			t.Fatalf("file of %d bytes: capacity %d", size, cap(data))
		}
		all = append(all, got{b, data})
	}
	read(0)
	read(1)
	read(arenaChunk - 1 - arenaSlack) // leaves exactly arenaSlack
	read(arenaSlack)                  // fills it exactly: a buffer of its own
	read(arenaSlack - 1)              // fits, leaves 1 byte
	read(10)                          // a new chunk
	read(arenaChunk)
	read(arenaChunk + 1)
	read(arenaChunk - 10)
	read(3*arenaChunk + 7)
	read(5)
	if _, err := rd.readFile(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := rd.readFile(dir); err == nil {
		t.Fatal("a directory was read")
	}
	for i, g := range all {
		if string(g.data) != string(g.want) {
			t.Fatalf("file %d (%d bytes) was overwritten", i, len(g.want))
		}
	}
}

// TestSplicedReviewNoATerm: the patching path without keeping the text
// gives the same paths.
func TestSplicedReviewNoATerm(t *testing.T) {
	s := newSpliceStore(t, t.TempDir())
	s.add(spliceSpec{name: "a", outs: []string{"out", "dev"}})
	s.add(spliceSpec{name: "b", inputs: map[string][]string{"a": {"out"}}, srcs: []string{s.out("a", "dev"), s.paths["a"]}, env: map[string]string{"x": s.out("a", "out")}})
	s.add(spliceSpec{name: "c", inputs: map[string][]string{"b": {"out"}}, env: map[string]string{"x": s.out("b", "out")}})
	c, err := LoadClosure(t.Context(), LoadOptions{StoreDir: s.dir}, []string{s.paths["c"]})
	if err != nil {
		t.Fatal(err)
	}
	lk := lockFor(s, 1, "a")
	fast, err := Rewrite(t.Context(), c, Options{Lock: lk, NoATerm: true})
	if err != nil {
		t.Fatal(err)
	}
	gen, err := Rewrite(t.Context(), c, Options{Lock: lk, noSplice: true})
	if err != nil {
		t.Fatal(err)
	}
	for k := range gen.Changed {
		gen.Changed[k].ATerm = nil
	}
	g := *gen
	g.spliced = fast.spliced // how each got there differs, by design
	if !reflect.DeepEqual(*fast, g) {
		t.Fatalf("results differ:\n%+v\n%+v", fast, gen)
	}
}

// TestSplicedReviewAttrNames: the attribute present and kept (the patching
// path) under names that sort before, between and after the outputs and
// the other env keys, in plain and structured derivations.
func TestSplicedReviewAttrNames(t *testing.T) {
	for _, attr := range []string{"A", "a", "outa", "outz", "x", "zz", "_"} {
		t.Run(attr, func(t *testing.T) {
			s := newSpliceStore(t, t.TempDir())
			s.add(spliceSpec{name: "a", outs: []string{"out", "dev"}})
			aOut := s.out("a", "out")
			env := map[string]string{"x": aOut, "out_": aOut, "o": aOut}
			env[attr] = "1"
			s.add(spliceSpec{name: "b", outs: []string{"out", "outb", "dev"}, inputs: map[string][]string{"a": {"out"}}, env: env})
			s.add(spliceSpec{name: "j", inputs: map[string][]string{"a": {"dev"}},
				env: map[string]string{"__json": `{"` + attr + `":"1","x":"` + aOut + `"}`}, bare: true})
			for _, serial := range []int{1, 2} {
				lk := lock.New(lock.Source{}, attr)
				lk.StoreDir = s.dir
				lk.Derivations[s.paths["a"][len(s.dir)+1:]] = serial
				lk.Names["b"] = 1
				lk.Names["j"] = 1
				if res, _ := s.compare(lk, true, 0, "b", "j"); res == nil {
					t.Fatal("rewrite refused")
				}
			}
		})
	}
}

// TestRewriteRefusesAttrNames: names Nix or stdenv interprets or Nix sets
// (PATH, name, system, out, dontBuild, NIX_*, ...) and names of a derivation's own outputs cannot carry a
// serial: canonicalising would remove them from every derivation.
func TestRewriteRefusesAttrNames(t *testing.T) {
	for _, tc := range []struct{ attr, want string }{
		{"PATH", "a variable Nix sets in the build environment"},
		{"name", "a derivation attribute Nix interprets"},
		{"system", "a derivation attribute Nix interprets"},
		{"out", "a common output name"},
		{"dontBuild", "a phase switch stdenv's setup reads"},
		{"NIX_SERIAL", "a NIX_ variable"},
		{"__json", "starts with __"},
		{"a-b", "not a valid environment variable name"},
		{"extra", "has an output named extra"},
	} {
		t.Run(tc.attr, func(t *testing.T) {
			s := newSpliceStore(t, t.TempDir())
			s.add(spliceSpec{name: "a", outs: []string{"out", "extra"}})
			c, err := LoadClosure(t.Context(), LoadOptions{StoreDir: s.dir}, []string{s.paths["a"]})
			if err != nil {
				t.Fatal(err)
			}
			lk := lock.New(lock.Source{}, tc.attr)
			lk.StoreDir = s.dir
			_, err = Rewrite(t.Context(), c, Options{Lock: lk})
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Rewrite with attribute %q = %v, want one line with %q", tc.attr, err, tc.want)
			}
		})
	}
}

// TestSplicedReviewRandom builds derivations whose values, input sources
// and __json are random concatenations of hash parts (whole, cut, glued,
// overlapping), escape letters, quotes, backslashes and JSON punctuation,
// and requires the patching and the general path to agree.
func TestSplicedReviewRandom(t *testing.T) {
	const h1 = "n123456789abcdfghijklmnpqrsvwxyz"
	seed := uint64(1)
	if v := os.Getenv("POISON_SPLICE_SEED"); v != "" { // more seeds by hand
		fmt.Sscan(v, &seed)
	}
	rnd := rand.New(rand.NewPCG(seed, 2))
	s := newSpliceStore(t, t.TempDir())
	s.add(spliceSpec{name: "p"})
	s.add(spliceSpec{name: "a1", outs: []string{"out", "dev"}, hashes: map[string]string{"out": h1, "dev": "r" + h1[1:]}, inputs: map[string][]string{"p": {"out"}}})
	s.add(spliceSpec{name: "a2", hashes: map[string]string{"out": h1[8:] + "nnnnnnnn"}, inputs: map[string][]string{"p": {"out"}}})
	s.add(spliceSpec{name: "u", hashes: map[string]string{"out": "nnnn" + h1[:28]}})
	s.add(spliceSpec{name: "f", fixed: strings.Repeat("01", 32), env: map[string]string{"x": s.out("a1", "dev")}})
	var hashes []string
	for _, n := range []string{"a1", "a2", "u", "p", "f"} {
		hashes = append(hashes, s.hash(s.paths[n]))
		for _, o := range s.drvs[n].Outputs {
			hashes = append(hashes, s.hash(o.Path))
		}
	}
	pieces := []string{"\n", "\r", "\t", "\\", "\"", ":", "{", "}", ",", "n", "r", "x", "0", "\\n", "\\\"", "/", "-"}
	frag := func() string {
		h := hashes[rnd.IntN(len(hashes))]
		switch rnd.IntN(6) {
		case 0, 1, 2:
			return h
		case 3:
			return h[:rnd.IntN(32)]
		case 4:
			return h[rnd.IntN(32):]
		}
		return pieces[rnd.IntN(len(pieces))]
	}
	str := func(max int) string {
		var b strings.Builder
		for range 1 + rnd.IntN(max) {
			b.WriteString(frag())
		}
		return b.String()
	}
	var jsonValue func(depth int) string
	jsonValue = func(depth int) string {
		switch k := rnd.IntN(4); {
		case k == 0 && depth < 2:
			m := map[string]string{}
			for range rnd.IntN(4) {
				key := "k"
				if rnd.IntN(4) == 0 {
					key = str(2)
				} else {
					key += fmt.Sprint(rnd.IntN(100))
				}
				m[key] = jsonValue(depth + 1)
			}
			keys := slices.Sorted(maps.Keys(m))
			var b strings.Builder
			b.WriteByte('{')
			for i, k := range keys {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(structattrs.Quote(k) + ":" + m[k])
			}
			b.WriteByte('}')
			return b.String()
		case k == 1 && depth < 2:
			var l []string
			for range rnd.IntN(3) {
				l = append(l, jsonValue(depth+1))
			}
			return "[" + strings.Join(l, ",") + "]"
		case k == 2:
			return fmt.Sprint(rnd.IntN(1000))
		}
		return structattrs.Quote(str(6))
	}
	for iter := range 150 {
		name := fmt.Sprintf("b%d", iter)
		sp := spliceSpec{name: name, inputs: map[string][]string{"a1": {"out"}}}
		structured := rnd.IntN(3) == 0
		env := map[string]string{}
		if structured {
			sp.bare = true
			top := map[string]string{"x": jsonValue(0), "y": jsonValue(0)}
			if rnd.IntN(3) == 0 {
				top["POISON_SERIAL"] = `"1"`
			}
			if rnd.IntN(8) == 0 {
				top[str(2)] = "1"
			}
			keys := slices.Sorted(maps.Keys(top))
			var l []string
			for _, k := range keys {
				l = append(l, structattrs.Quote(k)+":"+top[k])
			}
			env["__json"] = "{" + strings.Join(l, ",") + "}"
		} else {
			for k := range 1 + rnd.IntN(4) {
				env[fmt.Sprintf("v%d", k)] = str(8)
			}
			if rnd.IntN(3) == 0 {
				env["POISON_SERIAL"] = "1"
			}
			if rnd.IntN(10) == 0 {
				env["k"+str(1)] = "1"
			}
			if rnd.IntN(3) == 0 {
				sp.builder = str(4)
			}
			for range rnd.IntN(3) {
				sp.args = append(sp.args, str(4))
			}
		}
		sp.env = env
		if rnd.IntN(2) == 0 {
			sp.outs = []string{"out", "dev"}
		}
		for _, x := range []string{s.out("a1", "out"), s.out("a1", "dev"), s.paths["a1"], s.paths["u"], s.out("a2", "out"), s.paths["f"], s.out("u", "out")} {
			if rnd.IntN(3) == 0 {
				sp.srcs = append(sp.srcs, x)
			}
		}
		if rnd.IntN(4) == 0 {
			sp.inputs["f"] = []string{"out"}
		}
		s.add(sp)
		for _, lk := range []*lock.File{lockFor(s, 1+rnd.IntN(3), "p"), lockFor(s, 1, "a2"), lockFor(s, 1, "f")} {
			lk.Names[name] = 1
			s.compare(lk, rnd.IntN(2) == 0, 0, name)
		}
	}
}

// TestSplicedReviewMayHaveKeyRandom: the __json pre-check never misses a
// top-level key that structattrs finds, on random compact JSON whose
// strings hold the key, quotes, backslashes and colons.
func TestSplicedReviewMayHaveKeyRandom(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	parts := []string{"A", `"`, `\`, `:`, `"A":`, `\"A\":`, "x", "{", ",", "\n", `\\`}
	str := func() string {
		var b strings.Builder
		for range rnd.IntN(5) {
			b.WriteString(parts[rnd.IntN(len(parts))])
		}
		return structattrs.Quote(b.String())
	}
	for range 20000 {
		m := map[string]string{}
		for range rnd.IntN(4) {
			k := []string{"A", "AA", "xA", "b", "A\\", "\"A"}[rnd.IntN(6)]
			v := str()
			if rnd.IntN(3) == 0 {
				v = `{` + structattrs.Quote("A") + `:` + str() + `}`
			}
			m[k] = v
		}
		keys := slices.Sorted(maps.Keys(m))
		var l []string
		for _, k := range keys {
			l = append(l, structattrs.Quote(k)+":"+m[k])
		}
		js := "{" + strings.Join(l, ",") + "}"
		_, found, err := structattrs.Get(js, "A")
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		esc := atermEscape(js)
		if found && !mayHaveKey(esc, "A", strings.IndexByte(esc, '\\') >= 0) {
			t.Fatalf("mayHaveKey misses the key in %s (escaped %s)", js, esc)
		}
	}
}

// TestSplicedReviewPrefixNeverParses backs the reader's short-read
// assumption: no proper prefix of a derivation file parses, so a file read
// short is refused, never taken for another derivation.
func TestSplicedReviewPrefixNeverParses(t *testing.T) {
	s := newSpliceStore(t, t.TempDir())
	s.add(spliceSpec{name: "a", outs: []string{"out", "dev"}})
	s.add(spliceSpec{name: "b", inputs: map[string][]string{"a": {"dev", "out"}}, srcs: []string{s.out("a", "dev")},
		args: []string{"-c", "x\"])\\"}, env: map[string]string{"e": "", "v": "a\"])\n", "__json": `{"a":"\"])"}`}})
	s.add(spliceSpec{name: "f", fixed: strings.Repeat("ab", 32), env: map[string]string{"v": "])"}})
	for _, n := range []string{"a", "b", "f"} {
		text, err := os.ReadFile(s.paths[n])
		if err != nil {
			t.Fatal(err)
		}
		for k := range len(text) {
			if _, err := aterm.ParseLazy(string(text[:k])); err == nil {
				t.Fatalf("prefix of %d bytes of %s parses", k, n)
			}
		}
	}
}

// TestSplicedReviewJSONNotCompact: a structured derivation whose __json
// Nix would not write (not compact) and that mentions the attribute only
// inside a string. The pre-check of attrOf does not scan it; the general
// path does when the derivation changes, and refuses it: the patching
// path must not accept it either.
func TestSplicedReviewJSONNotCompact(t *testing.T) {
	s := newSpliceStore(t, t.TempDir())
	s.add(spliceSpec{name: "a"})
	aOut := s.out("a", "out")
	for k, js := range []string{
		`{"b":"\"POISON_SERIAL\":1", "c":"` + aOut + `"}`,
		`{"b":"\"POISON_SERIAL\":1","c":"` + aOut + `" }`,
		`{"b":"x\"POISON_SERIAL\":1","c":"` + aOut + `","a":1}`, // keys not sorted
		`{"x\"POISON_SERIAL":1, "c":"` + aOut + `"}`,
		`{"c":"` + aOut + `","x\"POISON_SERIAL":1,"b":2}`,
		`{"c":"` + aOut + `","x\"POISON_SERIAL":1,"d":2,"d":3}`,
	} {
		name := fmt.Sprintf("j%d", k)
		s.add(spliceSpec{name: name, inputs: map[string][]string{"a": {"out"}}, env: map[string]string{"__json": js}, bare: true})
		c, err := LoadClosure(t.Context(), LoadOptions{StoreDir: s.dir}, []string{s.paths[name]})
		if err != nil {
			t.Fatal(err)
		}
		lk := lockFor(s, 1, "a")
		_, errF := Rewrite(t.Context(), c, Options{Lock: lk})
		_, errG := Rewrite(t.Context(), c, Options{Lock: lk, noSplice: true})
		if (errF == nil) != (errG == nil) {
			t.Errorf("%s: patching error %v, general error %v", js, errF, errG)
		}
	}
}

// TestSplicedReviewTwinOwnOutput: twins (same output path), the second
// depending on the first and mentioning its own output, which is also the
// first's. Nix cannot write this, but a closure can hold it; its own output
// is not a mention (mentionsOf), so neither path rewrites it, and the
// general path must not ask the derivation being rewritten for its new
// outputs (it panicked).
func TestSplicedReviewTwinOwnOutput(t *testing.T) {
	s := newSpliceStore(t, t.TempDir())
	s.add(spliceSpec{name: "p"})
	h := strings.Repeat("w", 32)
	s.add(spliceSpec{name: "x", hashes: map[string]string{"out": h}, inputs: map[string][]string{"p": {"out"}}})
	s.add(spliceSpec{name: "x", hashes: map[string]string{"out": h}, srcs: []string{s.paths["x"]}, env: map[string]string{"self": s.out("x", "out")}})
	s.add(spliceSpec{name: "y", inputs: map[string][]string{"x": {"out"}}, env: map[string]string{"v": "1"}})
	res, _ := s.compare(lockFor(s, 1, "p"), false, 0, "y")
	if res == nil || len(res.Changed) != 4 {
		t.Fatalf("changed %v", res)
	}
}

// TestSplicedReviewNameNotEdge: a derivation whose name holds the hash of a
// changed member its env does not mention (Nix always writes the name into
// env). The name is rewritten, so that member must be rewritten first (the
// rewrite read its unfinished state and panicked).
func TestSplicedReviewNameNotEdge(t *testing.T) {
	s := newSpliceStore(t, t.TempDir())
	s.add(spliceSpec{name: "p"})
	s.add(spliceSpec{name: "a", inputs: map[string][]string{"p": {"out"}}})
	b := "b-" + s.hash(s.out("a", "out"))
	s.add(spliceSpec{name: b, inputs: map[string][]string{"p": {"out"}}, env: map[string]string{"name": "b"}})
	for range 20 {
		res, _ := s.compare(lockFor(s, 1, "p"), false, 0, b, "a")
		if res == nil || res.Changed[len(res.Changed)-1].Name == b {
			t.Fatalf("name not rewritten: %+v", res)
		}
	}
}
