package provenance

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// decoder reads journal lines. Journals run to millions of lines, so it
// scans the flat object directly instead of going through reflection, and
// interns the few distinct hosts, systems and versions. Strings with
// escapes go through encoding/json; unknown keys are skipped, so a newer
// poison may add fields.
type decoder struct {
	intern map[string]string
}

func newDecoder() *decoder { return &decoder{intern: map[string]string{}} }

type scanError struct {
	off int
	msg string
}

func (e *scanError) Error() string { return fmt.Sprintf("byte %d: %s", e.off+1, e.msg) }

// decode parses one line (without its newline) into r and validates it.
func (d *decoder) decode(b []byte, r *Record) error {
	s := scanner{b: b}
	version := 0
	s.ws()
	if !s.eat('{') {
		return s.fail("not a JSON object")
	}
	s.ws()
	if !s.eat('}') {
		for {
			s.ws()
			key, err := s.str()
			if err != nil {
				return err
			}
			s.ws()
			if !s.eat(':') {
				return s.fail("want ':' after a key")
			}
			s.ws()
			switch string(key) {
			case "v":
				v, err := s.uint()
				if err != nil {
					return err
				}
				version = v
			case "drv":
				err = d.field(&s, &r.Drv, false)
			case "host":
				err = d.field(&s, &r.Host, true)
			case "machineId":
				err = d.field(&s, &r.MachineID, true)
			case "system":
				err = d.field(&s, &r.System, true)
			case "startSource":
				err = d.field(&s, &r.StartSource, true)
			case "nix":
				err = d.field(&s, &r.Nix, true)
			case "start", "end":
				var v []byte
				v, err = s.str()
				if err == nil {
					var t time.Time
					t, err = time.Parse(time.RFC3339Nano, string(v))
					if err != nil {
						err = fmt.Errorf("%s: want an RFC 3339 time, got %q", key, truncate(string(v)))
					} else if key[0] == 's' {
						r.Start = t
					} else {
						r.End = t
					}
				}
			case "outputs":
				r.Outputs, err = d.strings(&s)
			default:
				err = s.skip(0)
			}
			if err != nil {
				return err
			}
			s.ws()
			if s.eat(',') {
				continue
			}
			if s.eat('}') {
				break
			}
			return s.fail("want ',' or '}'")
		}
	}
	s.ws()
	if s.i != len(s.b) {
		return s.fail("text after the object")
	}
	switch {
	case version == 0:
		return errors.New(`no format version ("v")`)
	case version > Version:
		return fmt.Errorf("format version %d is newer than this poison reads (%d); upgrade poison", version, Version)
	}
	return r.Validate()
}

// field decodes a string value into *dst, interned when asked.
func (d *decoder) field(s *scanner, dst *string, intern bool) error {
	v, err := s.str()
	if err != nil {
		return err
	}
	if !intern {
		*dst = string(v)
		return nil
	}
	if x, ok := d.intern[string(v)]; ok {
		*dst = x
		return nil
	}
	x := string(v)
	if len(d.intern) < 4096 {
		d.intern[x] = x
	}
	*dst = x
	return nil
}

func (d *decoder) strings(s *scanner) ([]string, error) {
	if !s.eat('[') {
		return nil, s.fail("outputs: want an array of strings")
	}
	var out []string
	s.ws()
	if s.eat(']') {
		return out, nil
	}
	for {
		s.ws()
		v, err := s.str()
		if err != nil {
			return nil, err
		}
		out = append(out, string(v))
		s.ws()
		if s.eat(',') {
			continue
		}
		if s.eat(']') {
			return out, nil
		}
		return nil, s.fail("outputs: want ',' or ']'")
	}
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) fail(msg string) error { return &scanError{off: s.i, msg: msg} }

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a JSON string and returns its value. The result aliases the
// line unless the string had escapes.
func (s *scanner) str() ([]byte, error) {
	if !s.eat('"') {
		return nil, s.fail("want a string")
	}
	start := s.i
	escaped := false
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			if escaped {
				var out string
				if err := json.Unmarshal(s.b[start-1:s.i], &out); err != nil {
					return nil, &scanError{off: start, msg: "bad string escape"}
				}
				return []byte(out), nil
			}
			if !utf8.Valid(v) {
				return nil, &scanError{off: start, msg: "string is not UTF-8"}
			}
			return v, nil
		case c == '\\':
			escaped = true
			s.i += 2
		case c < 0x20:
			return nil, s.fail("control character in a string")
		default:
			s.i++
		}
	}
	return nil, &scanError{off: start - 1, msg: "unterminated string"}
}

func (s *scanner) uint() (int, error) {
	start := s.i
	v := 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' && s.i-start < 9 {
		v = v*10 + int(s.b[s.i]-'0')
		s.i++
	}
	if s.i == start {
		return 0, s.fail("want a number")
	}
	return v, nil
}

// skip passes over any JSON value (of an unknown key), nesting at most 64
// deep.
func (s *scanner) skip(depth int) error {
	if depth > 64 {
		return s.fail("nested too deep")
	}
	if s.i >= len(s.b) {
		return s.fail("want a value")
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, err := s.str()
		return err
	case c == '{' || c == '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		s.i++
		s.ws()
		if s.eat(closer) {
			return nil
		}
		for {
			s.ws()
			if c == '{' {
				if _, err := s.str(); err != nil {
					return err
				}
				s.ws()
				if !s.eat(':') {
					return s.fail("want ':' after a key")
				}
				s.ws()
			}
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			s.ws()
			if s.eat(',') {
				continue
			}
			if s.eat(closer) {
				return nil
			}
			return s.fail("want ',' or a closing bracket")
		}
	default:
		start := s.i
		for s.i < len(s.b) {
			c := s.b[s.i]
			if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-' || c == '+' || c == '.' || c == 'E' {
				s.i++
				continue
			}
			break
		}
		lit := string(s.b[start:s.i])
		if lit == "" {
			return s.fail("want a value")
		}
		if lit != "true" && lit != "false" && lit != "null" && !json.Valid([]byte(lit)) {
			return &scanError{off: start, msg: "bad literal"}
		}
		return nil
	}
}
