// Package refscan finds and replaces store hash parts inside strings.
//
// A hash part is 32 characters of the nixbase32 alphabet. Nix re-evaluation
// changes every occurrence of a changed path's hash part, wherever it sits
// in a string (after "/nix/store/", after baseNameOf, glued to other text),
// so the scan looks at every window of 32 hash characters.
package refscan

import (
	"strings"

	"github.com/poison-nix/poison/storepath"
)

const n = storepath.HashLen

// Next returns the smallest i >= from such that s[i:i+32] consists of hash
// characters, or -1. It skips 32 bytes at a time over ordinary text.
func Next(s string, from int) int {
	i := from
	for i+n <= len(s) {
		p := i + n - 1
		if !storepath.IsHashChar(s[p]) {
			i = p + 1
			continue
		}
		k := p - 1
		for k >= i && storepath.IsHashChar(s[k]) {
			k--
		}
		if k < i {
			return i
		}
		i = k + 1
	}
	return -1
}

// Each calls fn with every 32-character window of hash characters in s.
func Each(s string, fn func(window string)) {
	for i := Next(s, 0); i >= 0; i = Next(s, i+1) {
		fn(s[i : i+n])
	}
}

// Replacer substitutes old strings that start with a 32-character hash
// window (hash parts, or placeholders without their leading "/") by new
// strings.
type Replacer struct {
	m map[string][]pair
	// Lookup, when set, is asked for 32-character windows the registered
	// strings do not match: it returns the replacement of the window.
	Lookup func(window string) (string, bool)
	// Hits holds, after Replace, the [start, end) offsets of the
	// replacements in the returned string.
	Hits [][2]int
}

type pair struct{ old, new string }

// Add registers a replacement. old must be at least 32 characters, the
// first 32 of them hash characters.
func (r *Replacer) Add(old, new string) {
	if old == new || len(old) < n {
		return
	}
	if r.m == nil {
		r.m = make(map[string][]pair)
	}
	k := old[:n]
	for _, p := range r.m[k] {
		if p.old == old {
			return
		}
	}
	ps := append(r.m[k], pair{old, new})
	// Longest first: the longest registered string wins at a position.
	for i := len(ps) - 1; i > 0 && len(ps[i].old) > len(ps[i-1].old); i-- {
		ps[i], ps[i-1] = ps[i-1], ps[i]
	}
	r.m[k] = ps
}

// Len returns the number of registered prefixes.
func (r *Replacer) Len() int { return len(r.m) }

// Replace returns s with every registered old string replaced, scanning
// left to right, and whether anything changed.
func (r *Replacer) Replace(s string) (string, bool) {
	r.Hits = r.Hits[:0]
	if (len(r.m) == 0 && r.Lookup == nil) || len(s) < n {
		return s, false
	}
	var b strings.Builder
	last := 0
	for i := Next(s, 0); i >= 0; {
		ps, ok := r.m[s[i:i+n]]
		hit := false
		if ok {
			for _, p := range ps {
				if strings.HasPrefix(s[i:], p.old) {
					if b.Len() == 0 {
						b.Grow(len(s) + 16)
					}
					b.WriteString(s[last:i])
					r.Hits = append(r.Hits, [2]int{b.Len(), b.Len() + len(p.new)})
					b.WriteString(p.new)
					last = i + len(p.old)
					hit = true
					break
				}
			}
		}
		if !hit && r.Lookup != nil {
			if nw, ok := r.Lookup(s[i : i+n]); ok {
				if b.Len() == 0 {
					b.Grow(len(s) + 16)
				}
				b.WriteString(s[last:i])
				r.Hits = append(r.Hits, [2]int{b.Len(), b.Len() + len(nw)})
				b.WriteString(nw)
				last = i + n
				hit = true
			}
		}
		if hit {
			i = Next(s, last)
		} else {
			i = Next(s, i+1)
		}
	}
	if last == 0 {
		return s, false
	}
	b.WriteString(s[last:])
	return b.String(), true
}
