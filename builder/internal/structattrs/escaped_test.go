package structattrs

import (
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder/internal/aterm"
)

const attr = "POISON_SERIAL"

// atermEscape writes s the way Nix writes a string in a .drv file.
func atermEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return r.Replace(s)
}

// reference is what LookupEscaped must answer: Lookup of the unescaped text.
func reference(v string) (string, bool, error) {
	return Lookup(aterm.Unescape(v), attr)
}

// checkSame fails unless LookupEscaped answers v exactly as reference does.
func checkSame(t *testing.T, v string) {
	t.Helper()
	wraw, wok, werr := reference(v)
	var scratch []byte
	raw, ok, err := LookupEscaped(v, attr, &scratch)
	if raw != wraw || ok != wok || (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
		t.Fatalf("LookupEscaped(%q) = %q, %v, %v; Lookup of the unescaped text: %q, %v, %v", v, raw, ok, err, wraw, wok, werr)
	}
	if sraw, sok, sure := lookupEscaped(v, attr); sure && (sraw != wraw || sok != wok || werr != nil) {
		t.Fatalf("lookupEscaped(%q) = %q, %v, sure; Lookup: %q, %v, %v", v, sraw, sok, wraw, wok, werr)
	}
}

func TestLookupEscaped(t *testing.T) {
	cases := []struct {
		json string // as Nix writes it, before ATerm escaping
		raw  string
		ok   bool
	}{
		{`{}`, ``, false},
		{`{"POISON_SERIAL":"3"}`, `"3"`, true},
		{`{"A":[1,{"POISON_SERIAL":"inner"}],"POISON_SERIAL":2,"z":"}\"{"}`, `2`, true},
		{`{"POISON_SERIALZ":true,"a":[1,{"POISON_SERIAL":"inner"}]}`, ``, false},
		{`{"A":"\"POISON_SERIAL\":\"5\"","B":{"POISON_SERIAL":"x\\"},"C":"end\\"}`, ``, false},
		{`{"k\"":1,"POISON_SERIAL":{"a":"b\n\\\""}}`, `{"a":"b\n\\\""}`, true},
		{"{\"nl\":\"a\nb\tc\rd\",\"POISON_SERIAL\":\"x\\u0001\xe9\"}", "\"x\\u0001\xe9\"", true},
		{`{"a":[],"b":{},"c":[[{"d":[]}]],"e":-1.5e-07,"f":null}`, ``, false},
	}
	for _, tc := range cases {
		v := atermEscape(tc.json)
		raw, ok, sure := lookupEscaped(v, attr)
		if !sure || raw != tc.raw || ok != tc.ok {
			t.Errorf("lookupEscaped(%s) = %s, %v, sure %v; want %s, %v, sure", v, raw, ok, sure, tc.raw, tc.ok)
		}
		checkSame(t, v)
	}
	// Not as Nix writes it: the answer is Lookup's, error included.
	for _, v := range []string{
		``, `{`, `}`, `{}x`, `[]`, `{\"a\" :1}`, `{\"a\":}`, `{\"a\":1`, `{\"a\":1}}`, `{\"a\":1,}`,
		`{\"POISON_SERIAL\":\"x}`, `{\"a\":1,\"POISON_SERIAL\":}`, `{\"POISON_SERIAL\":1,\"a\" :2}`,
		`{\"\u0050OISON_SERIAL\":1}`, `{\"\\u0050OISON_SERIAL\":1}`, `{\"POISON\_SERIAL\":1}`,
		`\{\"POISON_SERIAL\":1}`, `{\"POISON_SERIAL\"\:1}`, `{\"a\":\[1]}`, `{\"a\":[\]]}`,
		`{\"a\":1\,\"POISON_SERIAL\":2}`, `{"POISON_SERIAL":1}`, `{\"a\":"}`, `{\"a\":\"x\\\"}`,
		`{\"a\":\"x\\`, `{\"a\":[\"\\\\\"]}`, `{\"a\":[1\n]}`, `{\"a\":1\n}`, `{\"a\":t\rue}`,
		`{\"a\":[{\"POISON_SERIAL\":1}],\"POISON_SERIAL\":\"\"}`,
	} {
		checkSame(t, v)
	}
}

// genJSON returns a compact JSON object as Nix writes one, sorted, with
// strings and nested keys that mention the attribute.
func genJSON(r *rand.Rand, depth int) string {
	keys := []string{"PATH", "POISON", "POISON_SERIA", "POISON_SERIAL_", "POISON_SERIALZ", "_x", "a", "z", "é", `k"q`, `b\s`, "t\tab", attr}
	n := r.IntN(6)
	picked := map[string]bool{}
	for range n {
		k := keys[r.IntN(len(keys))]
		if k == attr && depth == 0 && r.IntN(3) > 0 {
			continue
		}
		picked[k] = true
	}
	var ks []string
	for k := range picked {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range ks {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(Quote(k))
		b.WriteByte(':')
		b.WriteString(genValue(r, depth+1))
	}
	b.WriteByte('}')
	return b.String()
}

func genValue(r *rand.Rand, depth int) string {
	strs := []string{``, `q"uote`, `back\slash`, "nl\nx", "tab\t", "cr\r", "ctl\x01\x1f", "latin1 \xe9\xff", `"POISON_SERIAL":"5"`, `{"POISON_SERIAL":1}`, `end\`, `"\"\\`, "[{]}"}
	k := r.IntN(8)
	if depth > 3 {
		k = r.IntN(4)
	}
	switch k {
	case 0:
		return Quote(strs[r.IntN(len(strs))])
	case 1:
		return []string{"1", "-2.5e-07", "true", "false", "null", "100000.0"}[r.IntN(6)]
	case 2, 3:
		return Quote(strs[r.IntN(len(strs))] + strs[r.IntN(len(strs))])
	case 4, 5:
		return genJSON(r, depth)
	default:
		var elems []string
		for range r.IntN(4) {
			elems = append(elems, genValue(r, depth+1))
		}
		return "[" + strings.Join(elems, ",") + "]"
	}
}

// TestLookupEscapedGenerated compares LookupEscaped with Lookup on
// generated objects as Nix writes them (it must be sure of every one), and
// on mutations of them (its answer must still be Lookup's).
func TestLookupEscapedGenerated(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	found := 0
	for range 5000 {
		v := atermEscape(genJSON(r, 0))
		raw, ok, sure := lookupEscaped(v, attr)
		wraw, wok, werr := reference(v)
		if !sure || raw != wraw || ok != wok || werr != nil {
			t.Fatalf("lookupEscaped(%q) = %q, %v, sure %v; Lookup: %q, %v, %v", v, raw, ok, sure, wraw, wok, werr)
		}
		if ok {
			found++
		}
		for range 4 {
			checkSame(t, mutate(r, v))
		}
	}
	if found < 200 {
		t.Fatalf("the key was found in %d generated objects only", found)
	}
}

// mutate inserts, deletes or replaces a few bytes of v with those the
// scanners treat specially.
func mutate(r *rand.Rand, v string) string {
	special := `\"{}[],:ntru0 `
	b := []byte(v)
	for range 1 + r.IntN(3) {
		p := r.IntN(len(b) + 1)
		c := special[r.IntN(len(special))]
		switch r.IntN(3) {
		case 0:
			b = append(b[:p], append([]byte{c}, b[p:]...)...)
		case 1:
			if p < len(b) {
				b = append(b[:p], b[p+1:]...)
			}
		default:
			if p < len(b) {
				b[p] = c
			}
		}
	}
	return string(b)
}

func FuzzLookupEscaped(f *testing.F) {
	f.Add(atermEscape(`{"A":[1,{"POISON_SERIAL":"inner"}],"POISON_SERIAL":2,"z":"}\"{"}`))
	f.Add(atermEscape(`{"k\"":1,"POISON_SERIAL":{"a":"b\n\\\""}}`))
	f.Add(`{\"a\":\"x\\`)
	f.Fuzz(func(t *testing.T, v string) {
		checkSame(t, v)
	})
}
