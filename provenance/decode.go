package provenance

import (
	"bytes"
	"encoding/binary"
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
	strs map[string]string
	raw  raw
}

func newDecoder() *decoder { return &decoder{strs: map[string]string{}} }

type scanError struct {
	off int
	msg string
}

func (e *scanError) Error() string { return fmt.Sprintf("byte %d: %s", e.off+1, e.msg) }

// raw holds the fields of a line as byte slices of it (or of unescaped
// copies) until the line is known to pass the filter.
type raw struct {
	drv, host, machineID, system, startSource, nix, start, end []byte
	outputs                                                    [][]byte
	hasOutputs                                                 bool
}

// decode parses one line (without its newline). It reports whether the
// line passes f (nil: every line); only lines that pass are turned into r
// and validated. Every line is checked to be a JSON object of the right
// version, and a line whose host field matches has its times checked, so
// that a line of the host asked about is never silently dropped.
func (d *decoder) decode(b []byte, r *Record, f *Filter) (bool, error) {
	s := scanner{b: b}
	version := 0
	rw := &d.raw
	*rw = raw{outputs: rw.outputs[:0]}
	s.ws()
	if !s.eat('{') {
		return false, s.fail("not a JSON object")
	}
	s.ws()
	if !s.eat('}') {
		for {
			s.ws()
			key, err := s.str()
			if err != nil {
				return false, err
			}
			s.ws()
			if !s.eat(':') {
				return false, s.fail("want ':' after a key")
			}
			s.ws()
			switch string(key) {
			case "v":
				version, err = s.uint()
			case "drv":
				rw.drv, err = s.str()
			case "host":
				rw.host, err = s.str()
			case "machineId":
				rw.machineID, err = s.str()
			case "system":
				rw.system, err = s.str()
			case "startSource":
				rw.startSource, err = s.str()
			case "nix":
				rw.nix, err = s.str()
			case "start":
				rw.start, err = s.str()
			case "end":
				rw.end, err = s.str()
			case "outputs":
				rw.hasOutputs = true
				rw.outputs, err = s.strings(rw.outputs)
			default:
				err = s.skip(0)
			}
			if err != nil {
				return false, err
			}
			s.ws()
			if s.eat(',') {
				continue
			}
			if s.eat('}') {
				break
			}
			return false, s.fail("want ',' or '}'")
		}
	}
	s.ws()
	if s.i != len(s.b) {
		return false, s.fail("text after the object")
	}
	switch {
	case version == 0:
		return false, errors.New(`no format version ("v")`)
	case version > Version:
		return false, fmt.Errorf("format version %d is newer than this poison reads (%d); upgrade poison", version, Version)
	}
	if f != nil && f.Host != "" && string(rw.host) != f.Host && string(rw.machineID) != f.Host {
		return false, nil
	}
	end, err := rawTime("end", rw.end)
	if err != nil {
		return false, err
	}
	var start time.Time
	if rw.start != nil {
		if start, err = rawTime("start", rw.start); err != nil {
			return false, err
		}
	}
	if f != nil {
		if !f.Since.IsZero() && end.Before(f.Since) || !f.Until.IsZero() && !end.Before(f.Until) {
			return false, nil
		}
		if f.Drv != "" && string(rw.drv) != f.Drv {
			found := false
			for _, o := range rw.outputs {
				if string(o) == f.Drv {
					found = true
					break
				}
			}
			if !found {
				return false, nil
			}
		}
	}
	*r = Record{
		Drv:         string(rw.drv),
		Host:        d.intern(rw.host),
		MachineID:   d.intern(rw.machineID),
		System:      d.intern(rw.system),
		Start:       start,
		StartSource: d.intern(rw.startSource),
		End:         end,
		Nix:         d.intern(rw.nix),
	}
	if rw.hasOutputs {
		r.Outputs = make([]string, len(rw.outputs))
		for i, o := range rw.outputs {
			r.Outputs[i] = string(o)
		}
	}
	return true, r.Validate()
}

func rawTime(key string, v []byte) (time.Time, error) {
	if v == nil {
		return time.Time{}, fmt.Errorf("%s: missing", key)
	}
	t, err := parseTime(v)
	if err != nil {
		return t, fmt.Errorf("%s: want an RFC 3339 time, got %q", key, truncate(string(v)))
	}
	return t, nil
}

// intern returns v as a string, shared with earlier equal values (hosts,
// systems and versions repeat on every line).
func (d *decoder) intern(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if x, ok := d.strs[string(v)]; ok {
		return x
	}
	x := string(v)
	if len(d.strs) < 4096 {
		d.strs[x] = x
	}
	return x
}

// strings reads an array of strings into out (reused).
func (s *scanner) strings(out [][]byte) ([][]byte, error) {
	if !s.eat('[') {
		return out, s.fail("outputs: want an array of strings")
	}
	s.ws()
	if s.eat(']') {
		return out, nil
	}
	for {
		s.ws()
		v, err := s.str()
		if err != nil {
			return out, err
		}
		out = append(out, v)
		s.ws()
		if s.eat(',') {
			continue
		}
		if s.eat(']') {
			return out, nil
		}
		return out, s.fail("outputs: want ',' or ']'")
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
	// Fast path: the closing quote, and nothing but printable ASCII
	// without backslashes before it (store paths, hosts, times).
	if q := bytes.IndexByte(s.b[start:], '"'); q >= 0 && plainASCII(s.b[start:start+q]) {
		s.i = start + q + 1
		return s.b[start : start+q], nil
	}
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

// plainASCII reports whether b holds only bytes 0x20..0x7f other than
// '\\', eight at a time.
func plainASCII(b []byte) bool {
	const lo = 0x0101010101010101
	const hi = 0x8080808080808080
	for len(b) >= 8 {
		w := binary.LittleEndian.Uint64(b)
		// a byte >= 0x80, a byte < 0x20, or a backslash (0x5c) sets its
		// high bit in one of these.
		ctl := (w - lo*0x20) &^ w
		bs := w ^ (lo * 0x5c)
		bs = (bs - lo) &^ bs
		if (w|ctl|bs)&hi != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c < 0x20 || c >= 0x80 || c == '\\' {
			return false
		}
	}
	return true
}

// parseTime reads the times poison writes (RFC 3339 in UTC, "Z", with or
// without a fraction) without the general parser; anything else goes
// through time.Parse.
func parseTime(v []byte) (time.Time, error) {
	if len(v) >= 20 && v[4] == '-' && v[7] == '-' && v[10] == 'T' && v[13] == ':' && v[16] == ':' && v[len(v)-1] == 'Z' {
		num := func(b []byte) int {
			n := 0
			for _, c := range b {
				if c < '0' || c > '9' {
					return -1
				}
				n = n*10 + int(c-'0')
			}
			return n
		}
		y, mo, d, h, mi, sec := num(v[0:4]), num(v[5:7]), num(v[8:10]), num(v[11:13]), num(v[14:16]), num(v[17:19])
		ns := 0
		ok := y >= 0 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h >= 0 && h < 24 && mi >= 0 && mi < 60 && sec >= 0 && sec < 60
		if frac := v[19 : len(v)-1]; ok && len(frac) > 0 {
			if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
				ok = false
			} else if f := num(frac[1:]); f < 0 {
				ok = false
			} else {
				ns = f
				for k := len(frac) - 1; k < 9; k++ {
					ns *= 10
				}
			}
		}
		if ok {
			t := time.Date(y, time.Month(mo), d, h, mi, sec, ns, time.UTC)
			if t.Day() == d { // not 2026-02-31
				return t, nil
			}
		}
	}
	return time.Parse(time.RFC3339Nano, string(v))
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
