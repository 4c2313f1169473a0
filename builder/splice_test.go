package builder

import (
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder/internal/aterm"
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
