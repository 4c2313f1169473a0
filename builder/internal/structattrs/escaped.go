package structattrs

import (
	"strings"

	"github.com/poison-nix/poison/builder/internal/aterm"
)

// LookupEscaped is Lookup of a __json value as a .drv file holds it:
// ATerm-escaped, where a backslash followed by n, r or t stands for a
// newline, carriage return or tab, and followed by any other byte for that
// byte. It walks the top level of the object over the escaped bytes, so
// nothing is copied or unescaped but the value it returns; a member whose
// key is not the one looked up is skipped whatever it holds (a nested
// object or a string may name the key). Anything it is not sure of (an
// error, an escape Nix does not write) is answered by Lookup on the
// unescaped text, which scratch holds: the answer and the error are
// always Lookup's.
func LookupEscaped(v, key string, scratch *[]byte) (raw string, ok bool, err error) {
	if raw, ok, sure := lookupEscaped(v, key); sure {
		return raw, ok, nil
	}
	b := aterm.AppendUnescaped((*scratch)[:0], v)
	*scratch = b
	raw, ok, err = Lookup(string(b), key)
	return raw, ok, err
}

// lookupEscaped is LookupEscaped without the fallback: sure is false when
// it gave up.
func lookupEscaped(v, key string) (raw string, ok, sure bool) {
	n := len(v)
	if n < 2 || v[0] != '{' {
		return "", false, false
	}
	if v[1] == '}' {
		return "", false, n == 2
	}
	for i := 1; ; {
		if i+1 >= n || v[i] != '\\' || v[i+1] != '"' {
			return "", false, false
		}
		ke, good := skipStringEscaped(v, i)
		if !good || ke >= n || v[ke] != ':' {
			return "", false, false
		}
		k := v[i+2 : ke-2]
		match := k == key
		if !match && strings.IndexByte(k, '\\') >= 0 {
			// An escaped key: Lookup's pre-check looks for the key as
			// written, so one spelled with escapes is left to it.
			d, err := decodeString(`"` + aterm.Unescape(k) + `"`)
			if err != nil || d == key {
				return "", false, false
			}
		}
		vs := ke + 1
		ve, good := skipValueEscaped(v, vs)
		if !good {
			return "", false, false
		}
		if match {
			raw = v[vs:ve]
			if strings.IndexByte(raw, '\\') >= 0 {
				raw = aterm.Unescape(raw)
			}
			return raw, true, true
		}
		if ve >= n {
			return "", false, false
		}
		switch v[ve] {
		case ',':
			i = ve + 1
		case '}':
			return "", false, ve+1 == n
		default:
			return "", false, false
		}
	}
}

// skipStringEscaped returns the offset just past the JSON string whose
// escaped opening quote (`\"`) is at v[i], and false if it is not sure.
func skipStringEscaped(v string, i int) (int, bool) {
	n := len(v)
	j := i + 2
	for {
		k := strings.IndexByte(v[j:], '\\')
		// An unescaped quote cannot be in an ATerm string: one is left to
		// Lookup, as everywhere below.
		if k < 0 || strings.IndexByte(v[j:j+k], '"') >= 0 {
			return 0, false
		}
		j += k
		if j+1 >= n {
			return 0, false
		}
		switch v[j+1] {
		case '"': // the closing quote
			return j + 2, true
		case '\\': // a JSON escape: skip the character it escapes
			j += 2
			switch {
			case j >= n:
				return 0, false
			case v[j] == '\\' && j+1 < n:
				j += 2
			default:
				j++
			}
		default: // \n, \r, \t or an escaped plain byte
			j += 2
		}
	}
}

// skipValueEscaped returns the offset just past the JSON value at v[i],
// and false if it is not sure.
func skipValueEscaped(v string, i int) (int, bool) {
	n := len(v)
	if i >= n {
		return 0, false
	}
	switch v[i] {
	case '\\':
		if i+1 < n && v[i+1] == '"' {
			return skipStringEscaped(v, i)
		}
		return 0, false
	case '{', '[':
		depth := 0
		for j := i; j < n; {
			switch v[j] {
			case '\\':
				if j+1 >= n {
					return 0, false
				}
				switch v[j+1] {
				case '"':
					e, good := skipStringEscaped(v, j)
					if !good {
						return 0, false
					}
					j = e
					continue
				case '{', '[', '}', ']':
					return 0, false
				}
				j += 2
				continue
			case '"':
				return 0, false
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
			j++
		}
		return 0, false
	default:
		j := i
		for j < n && v[j] != ',' && v[j] != '}' && v[j] != ']' {
			if v[j] == '\\' || v[j] == '"' || v[j] == '{' || v[j] == '[' {
				return 0, false
			}
			j++
		}
		return j, j > i
	}
}
