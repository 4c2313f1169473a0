package refscan_test

import (
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder/internal/refscan"
)

const (
	h1 = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"
	h2 = "1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b"
	n1 = "9z9z9z9z9z9z9z9z9z9z9z9z9z9z9z9z"
	n2 = "8y8y8y8y8y8y8y8y8y8y8y8y8y8y8y8y"
)

func TestReplace(t *testing.T) {
	var r refscan.Replacer
	r.Add(h1, n1)
	r.Add(h2, n2)
	r.Add(h1+"pppppppppppppppppppp", "x") // a longer old string with the same prefix
	cases := []struct{ in, want string }{
		{"", ""},
		{"no hashes here, just text that is long enough to scan through", "no hashes here, just text that is long enough to scan through"},
		{"/nix/store/" + h1 + "-a", "/nix/store/" + n1 + "-a"},
		{h1, n1},
		{h1 + h2, n1 + n2},
		{"x" + h1 + "-" + h2 + "/bin", "x" + n1 + "-" + n2 + "/bin"},
		{"zz" + h1, "zz" + n1}, // glued to other hash characters
		{h1[:31], h1[:31]},
		{"e" + h1[1:], "e" + h1[1:]}, // 'e' is not a hash character
		{h1 + "pppppppppppppppppppp!", "x!"},
	}
	for _, tc := range cases {
		got, changed := r.Replace(tc.in)
		if got != tc.want || changed != (tc.in != tc.want) {
			t.Errorf("Replace(%q) = %q, %v; want %q", tc.in, got, changed, tc.want)
		}
		for _, h := range r.Hits {
			if s := got[h[0]:h[1]]; s != n1 && s != n2 && s != "x" {
				t.Errorf("hit %v of %q is %q", h, got, s)
			}
		}
	}
}

func TestEach(t *testing.T) {
	s := "a/" + h1 + "-x " + strings.Repeat("k", 33)
	var got []string
	refscan.Each(s, func(w string) { got = append(got, w) })
	want := []string{h1, strings.Repeat("k", 32), strings.Repeat("k", 32)}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("windows %v, want %v", got, want)
	}
}

func FuzzReplace(f *testing.F) {
	f.Add("/nix/store/" + h1 + "-a " + h2)
	f.Fuzz(func(t *testing.T, s string) {
		var r refscan.Replacer
		r.Add(h1, n1)
		got, _ := r.Replace(s)
		if want := strings.ReplaceAll(s, h1, n1); got != want {
			t.Fatalf("Replace(%q) = %q, strings.ReplaceAll gives %q", s, got, want)
		}
	})
}
