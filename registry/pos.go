package registry

import (
	"sort"
	"strconv"
	"strings"
)

// position is a 1-based line and byte column.
type position struct{ Line, Col int }

// positions maps key paths ("reason", "derivation[1].outputs[0]") of a TOML
// document to where they are written. The TOML decoder does not expose
// per-element positions inside arrays of tables, so a small scanner recovers
// them. It runs only on documents the decoder has accepted, and only when a
// problem must be reported, so it may be lenient: on anything unexpected it
// stops and the lookups fall back to the enclosing key.
type positions struct {
	at        map[string]int // key path -> byte offset
	lineStart []int
}

func scanPositions(src string) *positions {
	p := &positions{at: map[string]int{}}
	p.lineStart = append(p.lineStart, 0)
	for i := 0; i < len(src); i++ {
		if src[i] == '\n' {
			p.lineStart = append(p.lineStart, i+1)
		}
	}
	s := scanner{src: src, out: p.at, arrays: map[string]int{}}
	s.document()
	return p
}

// lookup returns the position of path, or of its closest enclosing key, or
// 1:1 when nothing is known.
func (p *positions) lookup(path string) position {
	for path != "" {
		if off, ok := p.at[path]; ok {
			return p.pos(off)
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return position{1, 1}
}

func (p *positions) pos(off int) position {
	ln := sort.Search(len(p.lineStart), func(i int) bool { return p.lineStart[i] > off }) - 1
	return position{Line: ln + 1, Col: off - p.lineStart[ln] + 1}
}

type scanner struct {
	src    string
	i      int
	out    map[string]int
	arrays map[string]int // array-of-tables header -> count so far
}

func (s *scanner) eof() bool { return s.i >= len(s.src) }

// skip skips blanks, and newlines and comments when nl is true.
func (s *scanner) skip(nl bool) {
	for !s.eof() {
		switch c := s.src[s.i]; {
		case c == ' ' || c == '\t' || c == '\r':
			s.i++
		case c == '\n' && nl:
			s.i++
		case c == '#':
			for !s.eof() && s.src[s.i] != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

func (s *scanner) document() {
	prefix := ""
	for {
		s.skip(true)
		if s.eof() {
			return
		}
		start := s.i
		if strings.HasPrefix(s.src[s.i:], "[[") {
			s.i += 2
			s.skip(false)
			k, ok := s.key()
			if !ok {
				return
			}
			n := s.arrays[k]
			s.arrays[k] = n + 1
			// A new array element resets the counters of arrays nested in it.
			for other := range s.arrays {
				if strings.HasPrefix(other, k+".") {
					delete(s.arrays, other)
				}
			}
			prefix = k + "[" + strconv.Itoa(n) + "]"
			s.out[prefix] = start
			if _, seen := s.out[k]; !seen {
				s.out[k] = start
			}
			s.skip(false)
			if !strings.HasPrefix(s.src[s.i:], "]]") {
				return
			}
			s.i += 2
			continue
		}
		if s.src[s.i] == '[' {
			s.i++
			s.skip(false)
			k, ok := s.key()
			if !ok {
				return
			}
			prefix = k
			s.out[prefix] = start
			s.skip(false)
			if s.eof() || s.src[s.i] != ']' {
				return
			}
			s.i++
			continue
		}
		if !s.keyValue(prefix) {
			return
		}
	}
}

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func (s *scanner) keyValue(prefix string) bool {
	start := s.i
	k, ok := s.key()
	if !ok {
		return false
	}
	path := join(prefix, k)
	s.out[path] = start
	// A dotted key also defines its parents (a.b = 1 defines a).
	for i := strings.LastIndexByte(path, '.'); i > len(prefix); i = strings.LastIndexByte(path[:i], '.') {
		if _, ok := s.out[path[:i]]; !ok {
			s.out[path[:i]] = start
		}
	}
	s.skip(false)
	if s.eof() || s.src[s.i] != '=' {
		return false
	}
	s.i++
	s.skip(false)
	return s.value(path)
}

// key reads a possibly dotted key and returns it with its parts joined by '.'.
func (s *scanner) key() (string, bool) {
	var parts []string
	for {
		s.skip(false)
		if s.eof() {
			return "", false
		}
		switch c := s.src[s.i]; {
		case c == '"' || c == '\'':
			j := s.i + 1
			for j < len(s.src) && s.src[j] != c && s.src[j] != '\n' {
				if c == '"' && s.src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s.src) || s.src[j] != c {
				return "", false
			}
			parts = append(parts, s.src[s.i+1:j])
			s.i = j + 1
		default:
			j := s.i
			for j < len(s.src) && isBare(s.src[j]) {
				j++
			}
			if j == s.i {
				return "", false
			}
			parts = append(parts, s.src[s.i:j])
			s.i = j
		}
		s.skip(false)
		if s.eof() || s.src[s.i] != '.' {
			return strings.Join(parts, "."), true
		}
		s.i++
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func (s *scanner) value(path string) bool {
	if s.eof() {
		return false
	}
	rest := s.src[s.i:]
	switch {
	case strings.HasPrefix(rest, `"""`), strings.HasPrefix(rest, `'''`):
		q := rest[:3]
		j := 3
		for {
			k := strings.Index(rest[j:], q)
			if k < 0 {
				return false
			}
			j += k
			if q == `"""` && escaped(rest, j) {
				j++
				continue
			}
			break
		}
		j += 3
		for n := 0; n < 2 && j < len(rest) && rest[j] == q[0]; n++ {
			j++
		}
		s.i += j
		return true
	case rest[0] == '"' || rest[0] == '\'':
		j := 1
		for j < len(rest) && rest[j] != rest[0] && rest[j] != '\n' {
			if rest[0] == '"' && rest[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(rest) || rest[j] != rest[0] {
			return false
		}
		s.i += j + 1
		return true
	case rest[0] == '[':
		s.i++
		for n := 0; ; n++ {
			s.skip(true)
			if s.eof() {
				return false
			}
			if s.src[s.i] == ']' {
				s.i++
				return true
			}
			el := path + "[" + strconv.Itoa(n) + "]"
			s.out[el] = s.i
			if !s.value(el) {
				return false
			}
			s.skip(true)
			if !s.eof() && s.src[s.i] == ',' {
				s.i++
			}
		}
	case rest[0] == '{':
		s.i++
		for {
			s.skip(false)
			if s.eof() {
				return false
			}
			switch s.src[s.i] {
			case '}':
				s.i++
				return true
			case ',':
				s.i++
				continue
			}
			if !s.keyValue(path) {
				return false
			}
		}
	default:
		j := 0
		for j < len(rest) && strings.IndexByte(",]}\n#", rest[j]) < 0 {
			j++
		}
		if j == 0 {
			return false
		}
		s.i += j
		return true
	}
}

// escaped reports whether the byte at j is preceded by an odd number of
// backslashes.
func escaped(s string, j int) bool {
	n := 0
	for k := j - 1; k >= 0 && s[k] == '\\'; k-- {
		n++
	}
	return n%2 == 1
}
