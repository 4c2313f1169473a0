package registry

import (
	"strings"
	"time"
)

// dateLocal marks decoded TOML local dates, as the TOML decoder does (by
// location name).
var dateLocal = time.FixedZone("date-local", 0)

// fastParse decodes the plain subset of TOML that poison add writes (one
// key per line, basic strings without escapes, local dates, one-line arrays
// of strings, [[derivation]] headers, full-line comments) into the same
// value the TOML decoder produces. It returns ok=false for anything outside
// that subset, and the caller falls back to the full decoder, which also
// produces every syntax error message. FuzzFastParse checks that both agree.
//
// Linting 100,000 entries spends most of its time in TOML decoding; this
// path is several times faster.
func fastParse(src string) (map[string]any, bool) {
	for i := 0; i < len(src); i++ {
		if c := src[i]; c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
			return nil, false // also in comments, TOML forbids them
		}
	}
	top := map[string]any{}
	cur := top
	var tables []map[string]any
	for len(src) > 0 {
		var line string
		if i := strings.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i], src[i+1:]
		} else {
			line, src = src, ""
		}
		line = strings.Trim(line, " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		if line == "[[derivation]]" {
			cur = map[string]any{}
			tables = append(tables, cur)
			top["derivation"] = tables
			continue
		}
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			return nil, false
		}
		key := strings.TrimRight(line[:eq], " \t")
		val := strings.TrimLeft(line[eq+1:], " \t")
		if !fastKey(key, tables == nil) {
			return nil, false
		}
		if _, dup := cur[key]; dup {
			return nil, false
		}
		v, ok := fastValue(val)
		if !ok {
			return nil, false
		}
		cur[key] = v
	}
	return top, true
}

func fastKey(k string, topLevel bool) bool {
	if topLevel {
		switch k {
		case "reason", "author", "date", "group", "ticket", "names":
			return true
		}
		return false
	}
	return k == "path" || k == "outputs"
}

func fastValue(v string) (any, bool) {
	switch {
	case len(v) >= 2 && v[0] == '"':
		s, rest, ok := fastString(v)
		return s, ok && rest == ""
	case len(v) >= 2 && v[0] == '[':
		list := []any{}
		rest := strings.TrimLeft(v[1:], " \t")
		for {
			if rest == "]" {
				return list, true
			}
			s, r, ok := fastString(rest)
			if !ok {
				return nil, false
			}
			list = append(list, s)
			r = strings.TrimLeft(r, " \t")
			if strings.HasPrefix(r, ",") {
				r = strings.TrimLeft(r[1:], " \t")
			} else if r != "]" {
				return nil, false
			}
			rest = r
		}
	case len(v) == 10 && v[4] == '-' && v[7] == '-':
		for i := 0; i < 10; i++ {
			if i != 4 && i != 7 && (v[i] < '0' || v[i] > '9') {
				return nil, false
			}
		}
		t, err := time.ParseInLocation(time.DateOnly, v, dateLocal)
		if err != nil {
			return nil, false
		}
		return t, true
	}
	return nil, false
}

// fastString reads a basic string without escapes or control characters
// at the start of v and returns it and the rest of v.
func fastString(v string) (string, string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", "", false
	}
	for i := 1; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			return v[1:i], v[i+1:], true
		case c == '\\' || c < 0x20 || c == 0x7f:
			return "", "", false
		}
	}
	return "", "", false
}
