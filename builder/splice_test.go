package builder

import (
	"crypto/sha256"
	"os"
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder/internal/aterm"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/storepath"
)

// aterm escapes s as printString does (quotes, backslashes, \n \r \t).
func atermEscape(s string) string {
	b := aterm.Append(nil, &aterm.Derivation{Builder: s})
	// Derive([],[],[],"",BUILDER,[],[])
	t := string(b)
	start := strings.Index(t, `"",`) + 4
	return t[start : len(t)-len(`",[],[])`)]
}

func TestMayHaveKey(t *testing.T) {
	for _, tc := range []struct {
		json string
		want bool
	}{
		{`{"A":"1"}`, true},
		{`{"b":{"A":2}}`, true}, // nested: a candidate, structattrs.Get decides
		{`{"b":"A"}`, false},
		{`{"b":"\"A\":1"}`, false},    // inside a string value
		{`{"b":"\\\"A\":1"}`, false},  // escaped backslash, then escaped quote
		{`{"b":"x\\\\","A":1}`, true}, // a string ending in a backslash, then the key
		{`{"AA":1}`, false},
		{`{"xA":1}`, false},
		{`{}`, false},
		{`{"b":"A\":"}`, false},
	} {
		for _, escaped := range []bool{false, true} {
			js := tc.json
			if escaped {
				js = atermEscape(js)
			}
			if got := mayHaveKey(js, "A", escaped); got != tc.want {
				t.Errorf("mayHaveKey(%s, escaped %v) = %v, want %v", js, escaped, got, tc.want)
			}
		}
	}
}

func TestJSONKeyAt(t *testing.T) {
	const h = "0123456789abcdfghijklmnpqrsvwxyz" // a hash window
	for _, tc := range []struct {
		json string
		want bool
	}{
		{`{"` + h + `-x":1}`, true},
		{`{"a":"` + h + `-x"}`, false},
		{`{"a":"` + h + `\":"}`, false}, // an escaped quote then ':' inside a value
		{`{"` + h + `\\":1}`, true},     // a key ending in a backslash
		{`{"a":["` + h + `"]}`, false},
		{`{"a":"` + h + "\n" + `","b":1}`, false},
	} {
		esc := atermEscape(tc.json)
		k := strings.Index(esc, h)
		// The ATerm string ends with its closing quote in a .drv file.
		if got := jsonKeyAt(esc+`")`, k+len(h)); got != tc.want {
			t.Errorf("jsonKeyAt(%s) = %v, want %v", esc, got, tc.want)
		}
		if got := inJSONKey(tc.json, [][2]int{{strings.Index(tc.json, h), strings.Index(tc.json, h) + len(h)}}); got != tc.want {
			t.Errorf("inJSONKey(%s) = %v, want %v (the two must agree)", tc.json, got, tc.want)
		}
	}
}

func TestEscapedAt(t *testing.T) {
	for _, tc := range []struct {
		s    string
		i    int
		want bool
	}{
		{`\nabc`, 1, true},
		{`\\nabc`, 2, false},
		{`\\\nabc`, 3, true},
		{`nabc`, 0, false},
		{`x\"n`, 3, false},
	} {
		if got := escapedAt(tc.s, tc.i); got != tc.want {
			t.Errorf("escapedAt(%q, %d) = %v, want %v", tc.s, tc.i, got, tc.want)
		}
	}
}

// TestSplicedWindows builds small closures whose text holds windows the
// patching path could get wrong and requires it to agree with the general
// path, and with what the general path is known to do.
func TestSplicedWindows(t *testing.T) {
	const hashA = "n0123456789abcdfghijklmpqrsvwxyz" // starts with an escape letter
	for _, tc := range []struct {
		name  string
		value string // an env value of B, as Nix reads it; %A is A's output path hash
	}{
		{"plain", "/nix/store/%A-a/bin"},
		// A newline and 31 characters: in the file, `\n` and 31
		// characters, a window of A's hash that is not in the value.
		{"escape letter", "\n" + hashA[1:] + "x"},
		{"escape letter then hash", "\n" + hashA[1:] + "%A"},
		{"adjacent", "%A%A"},
		{"glued", "z%Az"},
		{"quotes", `"%A"\%A\`},
		{"json key", `{"%A":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := t.TempDir()
			outA := store + "/" + hashA + "-a"
			a := &aterm.Derivation{
				Outputs:  []aterm.Output{{Name: "out", Path: outA}},
				Platform: "x86_64-linux", Builder: "/bin/sh",
				Env: []aterm.EnvVar{{Key: "name", Value: "a"}, {Key: "out", Value: outA}, {Key: "system", Value: "x86_64-linux"}},
			}
			drvA := writeDrv(t, store, "a", a)
			outB := store + "/" + strings.Repeat("b", 32) + "-b"
			b := &aterm.Derivation{
				Outputs:   []aterm.Output{{Name: "out", Path: outB}},
				InputDrvs: []aterm.InputDrv{{Path: drvA, Outputs: []string{"out"}}},
				Platform:  "x86_64-linux", Builder: "/bin/sh",
				Env: []aterm.EnvVar{
					{Key: "dep", Value: outA},
					{Key: "name", Value: "b"},
					{Key: "out", Value: outB},
					{Key: "system", Value: "x86_64-linux"},
					{Key: "v", Value: strings.ReplaceAll(tc.value, "%A", hashA)},
				},
			}
			drvB := writeDrv(t, store, "b", b)
			c, err := LoadClosure(t.Context(), LoadOptions{StoreDir: store}, []string{drvB})
			if err != nil {
				t.Fatal(err)
			}
			lk := lock.New(lock.Source{}, lock.DefaultEnv)
			lk.StoreDir = store
			lk.Derivations[drvA[len(store)+1:]] = 1
			fast, err := Rewrite(t.Context(), c, Options{Lock: lk})
			if err != nil {
				t.Fatal(err)
			}
			gen, err := Rewrite(t.Context(), c, Options{Lock: lk, noSplice: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(fast.Changed) != 2 || len(gen.Changed) != 2 {
				t.Fatalf("changed %d and %d derivations, want 2", len(fast.Changed), len(gen.Changed))
			}
			if f, g := fast.Changed[1], gen.Changed[1]; f.Path != g.Path || string(f.ATerm) != string(g.ATerm) {
				t.Fatalf("patching and re-serialising differ:\n%s\n%s", f.ATerm, g.ATerm)
			}
			nb, err := aterm.Parse(string(fast.Changed[1].ATerm))
			if err != nil {
				t.Fatal(err)
			}
			// What Nix would have: every occurrence of the old hash in
			// the value replaced (none of these overlap).
			newA := fast.OutPaths[outA][len(store)+1:][:storepath.HashLen]
			want := strings.ReplaceAll(strings.ReplaceAll(tc.value, "%A", hashA), hashA, newA)
			if j, _ := nb.EnvIndex("v"); nb.Env[j].Value != want {
				t.Errorf("value rewritten to %q, want %q", nb.Env[j].Value, want)
			}
			if strings.Contains(nb.Env[0].Value, hashA) {
				t.Errorf("dep %q not rewritten", nb.Env[0].Value)
			}
		})
	}
}

// writeDrv writes d to the store directory under its text path.
func writeDrv(t *testing.T, store, name string, d *aterm.Derivation) string {
	t.Helper()
	text := aterm.Append(nil, d)
	var refs []string
	for _, in := range d.InputDrvs {
		refs = append(refs, in.Path)
	}
	p := storepath.Text(store, name+".drv", sha256.Sum256(text), refs)
	if err := os.WriteFile(p, text, 0o444); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSplicedTaken guards the speed of the rewrite: derivations that only
// change through their dependencies take the patching path, including
// structured ones whose __json holds the attribute name in nested objects
// and strings (the benchmark's generator writes those). Only the poisoned
// derivation, whose attribute changes, is re-serialised.
func TestSplicedTaken(t *testing.T) {
	s := newSpliceStore(t, t.TempDir())
	s.add(spliceSpec{name: "a"})
	aOut := s.out("a", "out")
	s.add(spliceSpec{name: "b", inputs: map[string][]string{"a": {"out"}}, bare: true,
		env: map[string]string{"__json": `{"c":"` + aOut + `","n":{"POISON_SERIAL":"inner"},"s":"\"POISON_SERIAL\":1"}`}})
	s.add(spliceSpec{name: "c", inputs: map[string][]string{"b": {"out"}}, srcs: []string{s.paths["a"]},
		env: map[string]string{"d": s.out("b", "out") + "/bin", "e": "\n" + aOut}})
	res, _ := s.compare(lockFor(s, 1, "a"), false, 0, "c")
	if res == nil {
		t.Fatal("rewrite refused")
	}
	if len(res.Changed) != 3 || res.spliced != 2 {
		t.Errorf("%d changed, %d patched; want 3 changed, 2 patched (b and c)", len(res.Changed), res.spliced)
	}
}
