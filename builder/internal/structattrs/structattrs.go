// Package structattrs edits the top level of the __json environment value
// of a __structuredAttrs derivation the way Nix 2.8 would have written it.
//
// Nix writes one compact object whose top-level keys are sorted bytewise
// (docs/rewrite.md R3). Only the top level is scanned; values are skipped, never
// decoded, so floats and raw non-UTF-8 bytes survive untouched.
package structattrs

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

type member struct {
	start, end int    // `"key":value`
	vstart     int    // value start
	key        string // decoded key
}

// scan returns the top-level members of a compact JSON object.
func scan(js string) ([]member, error) {
	var ms []member
	err := members(js, func(m member) bool {
		ms = append(ms, m)
		return true
	})
	if err != nil {
		return nil, err
	}
	return ms, nil
}

// members calls fn with the top-level members of a compact JSON object, in
// order, until fn returns false; the rest of the object is not read.
func members(js string, fn func(member) bool) error {
	if len(js) < 2 || js[0] != '{' {
		return errors.New("__json is not a JSON object")
	}
	i := 1
	if js[i] == '}' {
		if i+1 != len(js) {
			return errors.New("__json: trailing data after the object")
		}
		return nil
	}
	for {
		if i >= len(js) || js[i] != '"' {
			return fmt.Errorf("__json offset %d: expected a key (Nix writes compact JSON)", i)
		}
		ks := i
		ke, err := skipString(js, i)
		if err != nil {
			return err
		}
		key, err := decodeString(js[ks:ke])
		if err != nil {
			return err
		}
		if ke >= len(js) || js[ke] != ':' {
			return fmt.Errorf("__json offset %d: expected ':'", ke)
		}
		vs := ke + 1
		ve, err := skipValue(js, vs)
		if err != nil {
			return err
		}
		if !fn(member{start: ks, end: ve, vstart: vs, key: key}) {
			return nil
		}
		if ve >= len(js) {
			return errors.New("__json: unterminated object")
		}
		switch js[ve] {
		case ',':
			i = ve + 1
		case '}':
			if ve+1 != len(js) {
				return errors.New("__json: trailing data after the object")
			}
			return nil
		default:
			return fmt.Errorf("__json offset %d: expected ',' or '}'", ve)
		}
	}
}

// skipString returns the offset just past the string starting at js[i].
func skipString(js string, i int) (int, error) {
	j := i + 1
	for {
		k := strings.IndexAny(js[j:], "\"\\")
		if k < 0 {
			return 0, errors.New("__json: unterminated string")
		}
		j += k
		if js[j] == '"' {
			return j + 1, nil
		}
		j += 2
		if j > len(js) {
			return 0, errors.New("__json: unterminated string")
		}
	}
}

// skipValue returns the offset just past the value starting at js[i].
func skipValue(js string, i int) (int, error) {
	if i >= len(js) {
		return 0, errors.New("__json: missing value")
	}
	switch js[i] {
	case '"':
		return skipString(js, i)
	case '{', '[':
		depth := 0
		j := i
		for j < len(js) {
			switch js[j] {
			case '"':
				e, err := skipString(js, j)
				if err != nil {
					return 0, err
				}
				j = e
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
			j++
		}
		return 0, errors.New("__json: unterminated value")
	default:
		j := i
		for j < len(js) && js[j] != ',' && js[j] != '}' && js[j] != ']' {
			if js[j] == '"' || js[j] == '{' || js[j] == '[' {
				return 0, fmt.Errorf("__json offset %d: malformed value", j)
			}
			j++
		}
		if j == i {
			return 0, fmt.Errorf("__json offset %d: missing value", i)
		}
		return j, nil
	}
}

// decodeString decodes a quoted JSON string to the bytes Nix had.
func decodeString(q string) (string, error) {
	s := q[1 : len(q)-1]
	if strings.IndexByte(s, '\\') < 0 {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(s) {
			return "", errors.New("__json: bad escape")
		}
		switch s[i] {
		case '"', '\\', '/':
			b.WriteByte(s[i])
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			if i+5 > len(s) {
				return "", errors.New("__json: bad \\u escape")
			}
			v, err := strconv.ParseUint(s[i+1:i+5], 16, 16)
			if err != nil {
				return "", errors.New("__json: bad \\u escape")
			}
			if v < 0x80 {
				b.WriteByte(byte(v))
			} else {
				b.WriteRune(rune(v))
			}
			i += 4
		default:
			return "", errors.New("__json: bad escape")
		}
	}
	return b.String(), nil
}

// Get returns the raw JSON value of the top-level key, if present.
func Get(js, key string) (raw string, ok bool, err error) {
	if !mayContain(js, key) {
		return "", false, nil
	}
	ms, err := scan(js)
	if err != nil {
		return "", false, err
	}
	for _, m := range ms {
		if m.key == key {
			return js[m.vstart:m.end], true, nil
		}
	}
	return "", false, nil
}

// Lookup is Get that stops at the first member with the key: the members
// after it are neither read nor checked. Loading a closure looks the
// attribute up in every derivation; an edit (Set, Remove) reads the whole
// object, so a malformed one is still refused before it is rewritten.
func Lookup(js, key string) (raw string, ok bool, err error) {
	if !mayContain(js, key) {
		return "", false, nil
	}
	err = members(js, func(m member) bool {
		if m.key == key {
			raw, ok = js[m.vstart:m.end], true
			return false
		}
		return true
	})
	if err != nil {
		return "", false, err
	}
	return raw, ok, nil
}

// mayContain is a fast pre-check: a key that needs no escaping can only be
// present if `"key":` occurs somewhere.
func mayContain(js, key string) bool {
	return strings.Contains(js, `"`+key+`":`)
}

// Set returns js with the top-level key set to the raw JSON value, inserted
// at its sorted position when absent. key must need no JSON escaping.
func Set(js, key, value string) (string, error) {
	ms, err := scan(js)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.key == key {
			return js[:m.vstart] + value + js[m.end:], nil
		}
	}
	mem := `"` + key + `":` + value
	for _, m := range ms {
		if m.key > key {
			return js[:m.start] + mem + "," + js[m.start:], nil
		}
	}
	if len(ms) == 0 {
		return "{" + mem + "}", nil
	}
	last := ms[len(ms)-1].end
	return js[:last] + "," + mem + js[last:], nil
}

// Remove returns js without the top-level key, and whether it was present.
func Remove(js, key string) (string, bool, error) {
	if !mayContain(js, key) {
		return js, false, nil
	}
	ms, err := scan(js)
	if err != nil {
		return "", false, err
	}
	for i, m := range ms {
		if m.key != key {
			continue
		}
		switch {
		case len(ms) == 1:
			return "{}", true, nil
		case i+1 < len(ms):
			return js[:m.start] + js[ms[i+1].start:], true, nil
		default:
			return js[:ms[i-1].end] + js[m.end:], true, nil
		}
	}
	return js, false, nil
}

// Quote returns s as a JSON string the way Nix 2.8 writes it.
func Quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// SortObjects returns js with the members of every object, at any depth,
// in bytewise order of their decoded keys, as Nix writes attribute sets.
// Values are copied verbatim; only member order changes. It is used after a
// hash part inside a key was replaced.
func SortObjects(js string) (string, error) {
	out, end, err := sortValue(js, 0)
	if err != nil {
		return "", err
	}
	if end != len(js) {
		return "", errors.New("__json: trailing data after the value")
	}
	return out, nil
}

// sortValue returns the sorted text of the value at js[i] and its end.
func sortValue(js string, i int) (string, int, error) {
	if i >= len(js) {
		return "", 0, errors.New("__json: missing value")
	}
	switch js[i] {
	case '{':
		type kv struct{ key, text string }
		var ms []kv
		changed := false
		j := i + 1
		if j < len(js) && js[j] == '}' {
			return js[i : j+1], j + 1, nil
		}
		for {
			if j >= len(js) || js[j] != '"' {
				return "", 0, fmt.Errorf("__json offset %d: expected a key", j)
			}
			ke, err := skipString(js, j)
			if err != nil {
				return "", 0, err
			}
			key, err := decodeString(js[j:ke])
			if err != nil {
				return "", 0, err
			}
			if ke >= len(js) || js[ke] != ':' {
				return "", 0, fmt.Errorf("__json offset %d: expected ':'", ke)
			}
			val, ve, err := sortValue(js, ke+1)
			if err != nil {
				return "", 0, err
			}
			if val != js[ke+1:ve] {
				changed = true
			}
			if len(ms) > 0 && ms[len(ms)-1].key > key {
				changed = true
			}
			ms = append(ms, kv{key, js[j:ke+1] + val})
			if ve >= len(js) {
				return "", 0, errors.New("__json: unterminated object")
			}
			if js[ve] == '}' {
				if !changed {
					return js[i : ve+1], ve + 1, nil
				}
				sort.SliceStable(ms, func(a, b int) bool { return ms[a].key < ms[b].key })
				var b strings.Builder
				b.WriteByte('{')
				for k, m := range ms {
					if k > 0 {
						b.WriteByte(',')
					}
					b.WriteString(m.text)
				}
				b.WriteByte('}')
				return b.String(), ve + 1, nil
			}
			if js[ve] != ',' {
				return "", 0, fmt.Errorf("__json offset %d: expected ',' or '}'", ve)
			}
			j = ve + 1
		}
	case '[':
		var elems []string
		changed := false
		j := i + 1
		if j < len(js) && js[j] == ']' {
			return js[i : j+1], j + 1, nil
		}
		for {
			val, ve, err := sortValue(js, j)
			if err != nil {
				return "", 0, err
			}
			if val != js[j:ve] {
				changed = true
			}
			elems = append(elems, val)
			if ve >= len(js) {
				return "", 0, errors.New("__json: unterminated array")
			}
			if js[ve] == ']' {
				if !changed {
					return js[i : ve+1], ve + 1, nil
				}
				return "[" + strings.Join(elems, ",") + "]", ve + 1, nil
			}
			if js[ve] != ',' {
				return "", 0, fmt.Errorf("__json offset %d: expected ',' or ']'", ve)
			}
			j = ve + 1
		}
	default:
		end, err := skipValue(js, i)
		if err != nil {
			return "", 0, err
		}
		return js[i:end], end, nil
	}
}
