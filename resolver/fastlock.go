package resolver

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
	"strconv"

	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/registry/lock"
)

// A lock of a 100,000-entry registry is 13 MB of JSON; encoding/json takes
// about a second to write or read it, most of the warm-resolve budget. These
// two functions handle the common case (every key plain printable ASCII)
// with the exact bytes lock.Marshal produces, and fall back to the lock
// package for anything else. Tests check both against lock.Marshal and
// lock.Unmarshal.

// plainKey reports whether s encodes in JSON as itself between quotes
// (encoding/json with SetEscapeHTML(false)).
func plainKey[S string | []byte](s S) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// encodeLock returns exactly l.Marshal().
func encodeLock(l *lock.File) ([]byte, error) {
	maps := []map[string]int{l.Derivations, l.Outputs, l.Names}
	size := 512
	for _, m := range maps {
		for k := range m {
			if !plainKey(k) {
				return l.Marshal()
			}
			size += len(k) + 16
		}
	}
	var b bytes.Buffer
	b.Grow(size)
	writeHeader(&b, l)
	for i, m := range maps {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString(mapNames[i])
		for j, k := range keys {
			writeSerial(&b, j == 0, func() { b.WriteString(k) }, m[k])
		}
		endMap(&b, len(keys))
	}
	b.WriteString("\n}\n")
	return b.Bytes(), nil
}

var mapNames = [...]string{",\n  \"derivations\": {", ",\n  \"outputs\": {", ",\n  \"names\": {"}

// encodeRegistry returns exactly reg.Lock(src).Marshal() for a registry
// loaded with OnlyLock, from its compact serial counts, without building
// the lock's maps. ok is false when it cannot (a key that is not plain):
// reg is left untouched then.
// sizes are the number of keys of each serial map.
func encodeRegistry(reg *registry.Registry, src lock.Source) (data []byte, sizes [3]int, ok bool) {
	size := 512
	plain := true
	for kind := range mapNames {
		if !reg.EachSerial(kind, func(k []byte, _ int) bool {
			if !plainKey(k) {
				plain = false
			}
			size += len(k) + 16
			return plain
		}) {
			return nil, sizes, false
		}
	}
	if !plain {
		return nil, sizes, false
	}
	var b bytes.Buffer
	b.Grow(size)
	writeHeader(&b, reg.LockHeader(src))
	for kind, name := range mapNames {
		b.WriteString(name)
		n := 0
		reg.EachSerial(kind, func(k []byte, serial int) bool {
			writeSerial(&b, n == 0, func() { b.Write(k) }, serial)
			n++
			return true
		})
		endMap(&b, n)
		sizes[kind] = n
	}
	b.WriteString("\n}\n")
	return b.Bytes(), sizes, true
}

// writeSerial writes one "key": serial line of a serial map; the key is
// written by key.
func writeSerial(b *bytes.Buffer, first bool, key func(), serial int) {
	if !first {
		b.WriteByte(',')
	}
	b.WriteString("\n    \"")
	key()
	b.WriteString("\": ")
	var num [20]byte
	b.Write(strconv.AppendInt(num[:0], int64(serial), 10))
}

func endMap(b *bytes.Buffer, n int) {
	if n == 0 {
		b.WriteString("}")
		return
	}
	b.WriteString("\n  }")
}

// writeHeader writes the lock up to its serial maps.
func writeHeader(b *bytes.Buffer, l *lock.File) {
	str := func(s string) {
		if plainKey(s) {
			b.WriteByte('"')
			b.WriteString(s)
			b.WriteByte('"')
			return
		}
		var q bytes.Buffer
		enc := json.NewEncoder(&q)
		enc.SetEscapeHTML(false)
		enc.Encode(s) // a string always encodes
		b.Write(bytes.TrimSuffix(q.Bytes(), []byte("\n")))
	}
	b.WriteString("{\n  \"version\": ")
	b.WriteString(strconv.Itoa(l.Version))
	b.WriteString(",\n  \"registry\": {\n    \"url\": ")
	str(l.Registry.URL)
	b.WriteString(",\n    \"ref\": ")
	str(l.Registry.Ref)
	b.WriteString(",\n    \"commit\": ")
	str(l.Registry.Commit)
	if l.Registry.VerifiedBy != "" {
		b.WriteString(",\n    \"verifiedBy\": ")
		str(l.Registry.VerifiedBy)
	}
	b.WriteString("\n  },\n  \"env\": ")
	str(l.Env)
	if l.StoreDir != "" {
		b.WriteString(",\n  \"storeDir\": ")
		str(l.StoreDir)
	}
}

var errLayout = errors.New("not in the canonical layout")

// decodeLock parses a lock written by lock.Marshal. Data in the canonical
// layout with plain keys is parsed directly (without lock.Validate: it is
// the cache's own output or a previous lock only compared against);
// anything else goes through lock.Unmarshal.
func decodeLock(data []byte) (*lock.File, error) {
	if l, err := fastDecode(data); err == nil {
		return l, nil
	}
	return lock.Unmarshal(data)
}

func fastDecode(data []byte) (*lock.File, error) {
	// Keys are cut from one string copy of data: no allocation per key.
	p := &lineParser{rest: data, all: string(data)}
	l := &lock.File{}
	var err error
	p.expect("{")
	if v, ok := p.field("  ", "version", ","); ok {
		l.Version, err = strconv.Atoi(v)
		if err != nil {
			return nil, errLayout
		}
	} else {
		return nil, errLayout
	}
	p.expect(`  "registry": {`)
	l.Registry = p.source()
	p.expect("  },")
	line := p.peek()
	if bytes.HasSuffix(line, []byte(",")) {
		l.Env = p.str("  ", "env", ",")
	} else {
		return nil, errLayout
	}
	if bytes.HasPrefix(p.peek(), []byte(`  "storeDir": `)) {
		l.StoreDir = p.str("  ", "storeDir", ",")
	}
	l.Derivations = p.serials("derivations", ",")
	l.Outputs = p.serials("outputs", ",")
	l.Names = p.serials("names", "")
	p.expect("}")
	if p.bad || len(p.rest) != 0 || l.Version != lock.Version {
		return nil, errLayout
	}
	return l, nil
}

type lineParser struct {
	rest  []byte
	all   string // the whole input, when keys should be cut from it
	off   int    // offset of rest in the input
	start int    // offset of the last line returned by next
	bad   bool
}

func (p *lineParser) peek() []byte {
	i := bytes.IndexByte(p.rest, '\n')
	if i < 0 {
		return nil
	}
	return p.rest[:i]
}

func (p *lineParser) next() []byte {
	i := bytes.IndexByte(p.rest, '\n')
	if i < 0 {
		p.bad = true
		p.rest = nil
		return nil
	}
	line := p.rest[:i]
	p.rest = p.rest[i+1:]
	p.start = p.off
	p.off += i + 1
	return line
}

func (p *lineParser) expect(s string) {
	if string(p.next()) != s {
		p.bad = true
	}
}

// field reads `INDENT"NAME": VALUE` + suffix and returns VALUE.
func (p *lineParser) field(indent, name, suffix string) (string, bool) {
	line := p.next()
	pre := indent + `"` + name + `": `
	if !bytes.HasPrefix(line, []byte(pre)) || !bytes.HasSuffix(line, []byte(suffix)) || len(line) < len(pre)+len(suffix) {
		p.bad = true
		return "", false
	}
	return string(line[len(pre) : len(line)-len(suffix)]), true
}

// source parses the fields of the registry object.
func (p *lineParser) source() lock.Source {
	var s lock.Source
	s.URL = p.str("    ", "url", ",")
	s.Ref = p.str("    ", "ref", ",")
	if bytes.HasSuffix(p.peek(), []byte(",")) {
		s.Commit = p.str("    ", "commit", ",")
		s.VerifiedBy = p.str("    ", "verifiedBy", "")
	} else {
		s.Commit = p.str("    ", "commit", "")
	}
	return s
}

func (p *lineParser) str(indent, name, suffix string) string {
	v, ok := p.field(indent, name, suffix)
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal([]byte(v), &s) != nil {
		p.bad = true
	}
	return s
}

func (p *lineParser) serials(name, suffix string) map[string]int {
	head := `  "` + name + `": {`
	// Size the map from the number of lines up to the closing brace.
	hint := 0
	if end := bytes.Index(p.rest, []byte("\n  }")); end > 0 {
		hint = bytes.Count(p.rest[:end], []byte("\n"))
	}
	m := make(map[string]int, hint)
	line := p.next()
	switch string(line) {
	case head + "}" + suffix:
		return m
	case head:
	default:
		p.bad = true
		return m
	}
	for !p.bad {
		line := p.next()
		if string(line) == "  }"+suffix {
			return m
		}
		// `    "KEY": N` with an optional trailing comma.
		line = bytes.TrimSuffix(line, []byte(","))
		if len(line) < 9 || string(line[:5]) != `    "` {
			p.bad = true
			break
		}
		j := bytes.Index(line[5:], []byte(`": `))
		if j < 0 {
			p.bad = true
			break
		}
		key := line[5 : 5+j]
		if bytes.IndexByte(key, '\\') >= 0 || bytes.IndexByte(key, '"') >= 0 {
			p.bad = true
			break
		}
		n, err := strconv.Atoi(string(line[5+j+3:]))
		if err != nil || n < 1 {
			p.bad = true
			break
		}
		if p.all != "" {
			m[p.all[p.start+5:p.start+5+j]] = n
		} else {
			m[string(key)] = n
		}
	}
	return m
}

// decodeSource reads only the registry source of a lock, for messages.
func decodeSource(data []byte) (lock.Source, bool) {
	p := &lineParser{rest: data}
	p.expect("{")
	p.field("  ", "version", ",")
	p.expect(`  "registry": {`)
	src := p.source()
	if !p.bad {
		return src, true
	}
	var v struct {
		Registry *lock.Source `json:"registry"`
	}
	v.Registry = &src
	return src, json.Unmarshal(data, &v) == nil
}

// extendEncoded returns the encoding of the lock base plus the serials of
// add, with source src: exactly encodeLock of the summed lock. base must be
// in the canonical layout with plain keys, and add must hold plain keys and
// the same env and store directory; ok is false otherwise. It never decodes
// base into maps: a new commit of a 100,000-entry registry costs a merge of
// sorted lines, not a decode and a sort.
func extendEncoded(base []byte, src lock.Source, add *lock.File) ([]byte, bool) {
	for _, m := range []map[string]int{add.Derivations, add.Outputs, add.Names} {
		for k := range m {
			if !plainKey(k) {
				return nil, false
			}
		}
	}
	p := &lineParser{rest: base}
	p.expect("{")
	v, _ := p.field("  ", "version", ",")
	p.expect(`  "registry": {`)
	p.source()
	p.expect("  },")
	env := p.str("  ", "env", ",")
	storeDir := ""
	if bytes.HasPrefix(p.peek(), []byte(`  "storeDir": `)) {
		storeDir = p.str("  ", "storeDir", ",")
	}
	if p.bad || v != strconv.Itoa(lock.Version) || env != add.Env || storeDir != add.StoreDir {
		return nil, false
	}
	head, err := encodeLock(&lock.File{Version: lock.Version, Registry: src, Env: env, StoreDir: storeDir})
	if err != nil {
		return nil, false
	}
	head = head[:bytes.Index(head, []byte(",\n  \"derivations\": "))]
	var out bytes.Buffer
	out.Grow(len(base) + 256*(len(add.Derivations)+len(add.Outputs)+len(add.Names)))
	out.Write(head)
	for _, sec := range []struct {
		name   string
		m      map[string]int
		suffix string
	}{{"derivations", add.Derivations, ","}, {"outputs", add.Outputs, ","}, {"names", add.Names, ""}} {
		// The base's entries of this section, as (key, count) byte slices.
		line := p.next()
		hd := `  "` + sec.name + `": {`
		var lines [][]byte
		switch string(line) {
		case hd + "}" + sec.suffix:
		case hd:
			for {
				l := p.next()
				if p.bad {
					return nil, false
				}
				if string(l) == "  }"+sec.suffix {
					break
				}
				lines = append(lines, bytes.TrimSuffix(l, []byte(",")))
			}
		default:
			return nil, false
		}
		keys := make([]string, 0, len(sec.m))
		for k := range sec.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out.WriteString(",\n  \"" + sec.name + "\": {")
		if len(lines)+len(keys) == 0 {
			out.WriteString("}")
			continue
		}
		first := true
		emit := func(k string, n int) {
			if !first {
				out.WriteByte(',')
			}
			first = false
			out.WriteString("\n    \"")
			out.WriteString(k)
			out.WriteString("\": ")
			out.WriteString(strconv.Itoa(n))
		}
		emitLine := func(l []byte) {
			if !first {
				out.WriteByte(',')
			}
			first = false
			out.WriteByte('\n')
			out.Write(l)
		}
		i := 0
		for _, l := range lines {
			// `    "KEY": N`
			if len(l) < 9 || string(l[:5]) != `    "` {
				return nil, false
			}
			j := bytes.Index(l[5:], []byte(`": `))
			if j < 0 {
				return nil, false
			}
			key := string(l[5 : 5+j])
			for i < len(keys) && keys[i] < key {
				emit(keys[i], sec.m[keys[i]])
				i++
			}
			if i < len(keys) && keys[i] == key {
				n, err := strconv.Atoi(string(l[5+j+3:]))
				if err != nil {
					return nil, false
				}
				emit(key, n+sec.m[key])
				i++
				continue
			}
			emitLine(l)
		}
		for ; i < len(keys); i++ {
			emit(keys[i], sec.m[keys[i]])
		}
		out.WriteString("\n  }")
	}
	p.expect("}")
	if p.bad || len(p.rest) != 0 {
		return nil, false
	}
	out.WriteString("\n}\n")
	return out.Bytes(), true
}
