// Package aterm reads and writes Nix derivations in the ATerm form Nix 2.8
// stores in .drv files.
//
// Parse is a single pass over the text. Strings without escapes are slices
// of the input (no copy), so a parsed Derivation keeps its input alive and
// the input must never be modified afterwards.
//
// Nix writes some fields quoted but unescaped (output names and paths, hash
// algorithms and hashes, input paths, output names of inputs, input sources
// and the platform) and the rest with printString, which escapes `"`, `\`,
// newline, carriage return and tab. Parse accepts only files that are a fixed
// point of Nix's parse then unparse (sorted, duplicate-free sections,
// canonical escapes, no raw control characters where Nix would escape them):
// for those, hashing the file bytes is hashing what Nix hashes. Anything else
// is reported as an error instead of silently hashed differently.
package aterm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

// Output is one entry of a derivation's outputs.
type Output struct {
	Name     string
	Path     string // "" for floating, impure and deferred outputs
	HashAlgo string // "" for input-addressed outputs; "r:sha256", "sha256", ...
	Hash     string // hex for fixed outputs, "impure" for impure ones, else ""
}

// InputDrv is one entry of inputDrvs: a .drv path and the outputs used.
type InputDrv struct {
	Path    string
	Outputs []string
}

// EnvVar is one environment entry.
type EnvVar struct {
	Key, Value string
}

// Derivation is a parsed .drv file. Sections are sorted as Nix writes them.
type Derivation struct {
	Outputs   []Output
	InputDrvs []InputDrv
	InputSrcs []string
	Platform  string
	Builder   string
	Args      []string
	Env       []EnvVar

	// Escaped is set by ParseLazy when some value was kept escaped.
	Escaped bool

	// InputDrvsStart and InputDrvsEnd delimit the content of the inputDrvs
	// list in the parsed text (between its brackets), so a hash with the
	// inputs replaced can be computed without re-serialising. Zero for a
	// Derivation that was not parsed.
	InputDrvsStart, InputDrvsEnd int
}

// EnvIndex finds key in the sorted env: its index, or where it would be
// inserted, and whether it is present.
func (d *Derivation) EnvIndex(key string) (int, bool) {
	lo, hi := 0, len(d.Env)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if d.Env[m].Key < key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(d.Env) && d.Env[lo].Key == key
}

// HasOutput reports whether name is one of d's outputs.
func (d *Derivation) HasOutput(name string) bool {
	for i := range d.Outputs {
		if d.Outputs[i].Name == name {
			return true
		}
	}
	return false
}

// SyntaxError is a parse failure at a byte offset.
type SyntaxError struct {
	Offset int
	Msg    string
	Err    error // ErrNotCanonical, or nil
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("offset %d: %s", e.Offset, e.Msg) }

func (e *SyntaxError) Unwrap() error { return e.Err }

// ErrNotCanonical is wrapped by errors for input that Nix would read but
// write back differently.
var ErrNotCanonical = errors.New("not in the canonical form Nix writes")

type parser struct {
	s      string
	i      int
	lazy   bool // keep escaped values escaped (see ParseLazy)
	value  bool // the string being parsed is a value (builder, arg, env value)
	kept   bool // some value was kept escaped
	nextBS int  // offset of the next backslash at or after i, or len(s)

	// scratch slices, reused across files; results are copied out at
	// their exact size.
	outs   []Output
	ins    []InputDrv
	env    []EnvVar
	strs   []string // the string lists of the derivation being parsed
	ranges [][2]int // the input outputs' ranges in strs
	rawCtl bool
	err    error
}

// Parse parses the text of a .drv file. The returned Derivation refers to s.
func Parse(s string) (*Derivation, error) { return parse(s, false) }

// ParseLazy is Parse that checks but does not unescape the builder, the
// args and the env values: those containing escapes are returned in their
// escaped form (as written in s), and Derivation.Escaped is set. Env keys
// and every other field are unescaped. It saves a copy of every escaped
// value (structured attrs are mostly escapes); Parse the same text again
// when the values are needed.
func ParseLazy(s string) (*Derivation, error) { return parse(s, true) }

var parserPool = sync.Pool{New: func() any { return new(parser) }}

func parse(s string, lazy bool) (*Derivation, error) {
	p := parserPool.Get().(*parser)
	defer func() {
		// Drop the strings of this file so the pool keeps no file alive.
		clear(p.outs[:cap(p.outs)])
		clear(p.ins[:cap(p.ins)])
		clear(p.env[:cap(p.env)])
		clear(p.strs[:cap(p.strs)])
		*p = parser{outs: p.outs[:0], ins: p.ins[:0], env: p.env[:0], strs: p.strs[:0], ranges: p.ranges[:0]}
		parserPool.Put(p)
	}()
	p.s, p.lazy = s, lazy
	p.nextBS = indexFrom(s, 0, '\\')
	// Nix escapes \n, \r and \t in printString fields; a file with none of
	// them raw needs no per-string check.
	p.rawCtl = strings.IndexByte(s, '\n') >= 0 || strings.IndexByte(s, '\r') >= 0 || strings.IndexByte(s, '\t') >= 0
	d := p.derivation()
	if p.err != nil {
		return nil, p.err
	}
	d.Escaped = p.kept
	return d, nil
}

func indexFrom(s string, from int, c byte) int {
	if from >= len(s) {
		return len(s)
	}
	j := strings.IndexByte(s[from:], c)
	if j < 0 {
		return len(s)
	}
	return from + j
}

func (p *parser) fail(msg string) {
	if p.err == nil {
		p.err = &SyntaxError{Offset: p.i, Msg: msg}
	}
}

func (p *parser) noncanonical(what string) {
	if p.err == nil {
		p.err = &SyntaxError{Offset: p.i, Msg: fmt.Sprintf("%s: %v", what, ErrNotCanonical), Err: ErrNotCanonical}
	}
}

func (p *parser) expect(lit string) bool {
	if p.err != nil {
		return false
	}
	if !strings.HasPrefix(p.s[p.i:], lit) {
		if strings.HasPrefix(lit, "Derive(") && strings.HasPrefix(p.s[p.i:], "DrvWithVersion(") {
			p.fail("derivation format DrvWithVersion is newer than Nix 2.8 and not supported")
			return false
		}
		if p.i >= len(p.s) {
			p.fail(fmt.Sprintf("unexpected end of file, expected %q", lit))
		} else {
			p.fail(fmt.Sprintf("expected %q", lit))
		}
		return false
	}
	p.i += len(lit)
	return true
}

// peek reports whether the next byte is c.
func (p *parser) peek(c byte) bool { return p.err == nil && p.i < len(p.s) && p.s[p.i] == c }

// str parses a quoted string. escaped selects printString semantics (Nix
// escapes the content); otherwise Nix wrote the content raw and a backslash
// means the value cannot survive a round trip.
func (p *parser) str(escaped bool) string {
	if !p.expect(`"`) {
		return ""
	}
	start := p.i
	end := indexFrom(p.s, start, '"')
	if end >= len(p.s) {
		p.i = len(p.s)
		p.fail("unterminated string")
		return ""
	}
	if p.nextBS < start {
		// A backslash outside any string (malformed input) was skipped.
		p.nextBS = indexFrom(p.s, start, '\\')
	}
	if p.nextBS > end {
		// Fast path: no backslash inside.
		v := p.s[start:end]
		if escaped && p.rawCtl && strings.ContainsAny(v, "\n\r\t") {
			p.noncanonical("raw control character in string")
			return ""
		}
		p.i = end + 1
		return v
	}
	if !escaped {
		p.i = p.nextBS
		p.noncanonical("backslash in a field Nix writes unescaped")
		return ""
	}
	// Slow path: find the closing quote (one not preceded by an odd
	// number of backslashes), then unescape into a buffer of that size.
	end = start
	for {
		k := strings.IndexByte(p.s[end:], '"')
		if k < 0 {
			p.i = len(p.s)
			p.fail("unterminated string")
			return ""
		}
		end += k
		bs := 0
		for j := end - 1; j >= start && p.s[j] == '\\'; j-- {
			bs++
		}
		if bs%2 == 0 {
			break
		}
		end++
	}
	raw := p.s[start:end]
	if p.rawCtl && strings.ContainsAny(raw, "\n\r\t") {
		p.i = start
		p.noncanonical("raw control character in string")
		return ""
	}
	if p.lazy && p.value {
		for r := raw; ; {
			k := strings.IndexByte(r, '\\')
			if k < 0 {
				break
			}
			switch r[k+1] {
			case '"', '\\', 'n', 'r', 't':
			default:
				p.i = end - len(r) + k
				p.noncanonical(fmt.Sprintf("escape \\%c", r[k+1]))
				return ""
			}
			r = r[k+2:]
		}
		p.i = end + 1
		p.nextBS = indexFrom(p.s, p.i, '\\')
		p.kept = true
		return raw
	}
	buf := make([]byte, 0, len(raw))
	for {
		k := strings.IndexByte(raw, '\\')
		if k < 0 {
			buf = append(buf, raw...)
			break
		}
		buf = append(buf, raw[:k]...)
		switch raw[k+1] {
		case '"', '\\':
			buf = append(buf, raw[k+1])
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		default:
			p.i = end - len(raw) + k
			p.noncanonical(fmt.Sprintf("escape \\%c", raw[k+1]))
			return ""
		}
		raw = raw[k+2:]
	}
	p.i = end + 1
	p.nextBS = indexFrom(p.s, p.i, '\\')
	return unsafe.String(unsafe.SliceData(buf), len(buf))
}

// strList parses ["a","b",...] into p.strs, after the lists parsed
// before it in this derivation, checks strict ascending order when
// sorted, and returns the list's range in p.strs. derivation copies all
// lists out in one allocation.
func (p *parser) strList(escaped, sorted bool, what string) (start, end int) {
	start = len(p.strs)
	if !p.expect("[") {
		return start, start
	}
	if p.peek(']') {
		p.i++
		return start, start
	}
	for p.err == nil {
		v := p.str(escaped)
		if p.err != nil {
			return start, start
		}
		if n := len(p.strs); sorted && n > start && p.strs[n-1] >= v {
			p.noncanonical(what + " not sorted or duplicated")
			return start, start
		}
		p.strs = append(p.strs, v)
		if p.peek(',') {
			p.i++
			continue
		}
		p.expect("]")
		break
	}
	return start, len(p.strs)
}

func (p *parser) derivation() *Derivation {
	d := &Derivation{}
	if !p.expect("Derive([") {
		return nil
	}
	// Outputs.
	if !p.peek(']') {
		for p.err == nil {
			var o Output
			p.expect("(")
			o.Name = p.str(false)
			p.expect(",")
			o.Path = p.str(false)
			p.expect(",")
			o.HashAlgo = p.str(false)
			p.expect(",")
			o.Hash = p.str(false)
			p.expect(")")
			if p.err != nil {
				return nil
			}
			if n := len(p.outs); n > 0 && p.outs[n-1].Name >= o.Name {
				p.noncanonical("outputs not sorted or duplicated")
				return nil
			}
			p.outs = append(p.outs, o)
			if p.peek(',') {
				p.i++
				continue
			}
			break
		}
	}
	d.Outputs = slices.Clone(p.outs)
	p.expect("],[")
	d.InputDrvsStart = p.i
	if !p.peek(']') {
		for p.err == nil {
			var in InputDrv
			p.expect("(")
			in.Path = p.str(false)
			p.expect(",")
			s, e := p.strList(false, true, "input outputs")
			p.ranges = append(p.ranges, [2]int{s, e})
			p.expect(")")
			if p.err != nil {
				return nil
			}
			if n := len(p.ins); n > 0 && p.ins[n-1].Path >= in.Path {
				p.noncanonical("inputDrvs not sorted or duplicated")
				return nil
			}
			p.ins = append(p.ins, in)
			if p.peek(',') {
				p.i++
				continue
			}
			break
		}
	}
	d.InputDrvs = slices.Clone(p.ins)
	d.InputDrvsEnd = p.i
	p.expect("],")
	srcsStart, srcsEnd := p.strList(false, true, "inputSrcs")
	p.expect(",")
	d.Platform = p.str(false)
	p.expect(",")
	p.value = true
	d.Builder = p.str(true)
	p.expect(",")
	argsStart, argsEnd := p.strList(true, false, "args")
	p.value = false
	p.expect(",[")
	if !p.peek(']') {
		for p.err == nil {
			var e EnvVar
			p.expect("(")
			e.Key = p.str(true)
			p.expect(",")
			p.value = true
			e.Value = p.str(true)
			p.value = false
			p.expect(")")
			if p.err != nil {
				return nil
			}
			if n := len(p.env); n > 0 && p.env[n-1].Key >= e.Key {
				p.noncanonical("env not sorted or duplicated")
				return nil
			}
			p.env = append(p.env, e)
			if p.peek(',') {
				p.i++
				continue
			}
			break
		}
	}
	d.Env = slices.Clone(p.env)
	p.expect("])")
	if p.err != nil {
		return nil
	}
	// Every string list in one allocation, each capped so that an append
	// to one never runs into the next.
	all := slices.Clone(p.strs)
	sub := func(s, e int) []string {
		if s == e {
			return nil
		}
		return all[s:e:e]
	}
	for i := range d.InputDrvs {
		d.InputDrvs[i].Outputs = sub(p.ranges[i][0], p.ranges[i][1])
	}
	d.InputSrcs = sub(srcsStart, srcsEnd)
	d.Args = sub(argsStart, argsEnd)
	if p.i != len(p.s) {
		p.fail("trailing data after the derivation")
		return nil
	}
	return d
}

// Writer helpers. Nix's unparse: printUnquotedString for output fields,
// input paths and names, input sources and the platform; printString for
// builder, args and env.

func appendRaw(b []byte, s string) []byte {
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// needsEscape reports whether s has a byte printString escapes.
func needsEscape(s string) bool {
	if len(s) < 16 {
		for i := 0; i < len(s); i++ {
			switch s[i] {
			case '"', '\\', '\n', '\r', '\t':
				return true
			}
		}
		return false
	}
	return strings.IndexByte(s, '"') >= 0 || strings.IndexByte(s, '\\') >= 0 ||
		strings.IndexByte(s, '\n') >= 0 || strings.IndexByte(s, '\r') >= 0 || strings.IndexByte(s, '\t') >= 0
}

func appendEscaped(b []byte, s string) []byte {
	if !needsEscape(s) {
		return appendRaw(b, s)
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '"':
			esc = `\"`
		case '\\':
			esc = `\\`
		case '\n':
			esc = `\n`
		case '\r':
			esc = `\r`
		case '\t':
			esc = `\t`
		default:
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, esc...)
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendList(b []byte, l []string, escaped bool) []byte {
	b = append(b, '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ',')
		}
		if escaped {
			b = appendEscaped(b, s)
		} else {
			b = appendRaw(b, s)
		}
	}
	return append(b, ']')
}

// Append appends the ATerm of d to b, exactly as Nix 2.8 writes it.
func Append(b []byte, d *Derivation) []byte {
	return AppendModulo(b, d, false, d.InputDrvs)
}

// AppendModulo appends the ATerm Nix hashes in hashDerivationModulo: with
// inputs in place of d.InputDrvs (keys are hex hashes there) and, when
// mask is set, every output path and every env variable named after an
// output blanked.
func AppendModulo(b []byte, d *Derivation, mask bool, inputs []InputDrv) []byte {
	b = append(b, "Derive(["...)
	for i, o := range d.Outputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '(')
		b = appendRaw(b, o.Name)
		b = append(b, ',')
		if mask {
			b = appendRaw(b, "")
		} else {
			b = appendRaw(b, o.Path)
		}
		b = append(b, ',')
		b = appendRaw(b, o.HashAlgo)
		b = append(b, ',')
		b = appendRaw(b, o.Hash)
		b = append(b, ')')
	}
	b = append(b, "],["...)
	b = AppendInputs(b, inputs)
	b = append(b, "],"...)
	b = appendList(b, d.InputSrcs, false)
	b = append(b, ',')
	b = appendRaw(b, d.Platform)
	b = append(b, ',')
	b = appendEscaped(b, d.Builder)
	b = append(b, ',')
	b = appendList(b, d.Args, true)
	b = append(b, ",["...)
	for i, e := range d.Env {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '(')
		b = appendEscaped(b, e.Key)
		b = append(b, ',')
		if mask && d.HasOutput(e.Key) {
			b = appendEscaped(b, "")
		} else {
			b = appendEscaped(b, e.Value)
		}
		b = append(b, ')')
	}
	return append(b, "])"...)
}

// AppendInputs appends the content of an inputDrvs list (without the
// surrounding brackets).
func AppendInputs(b []byte, inputs []InputDrv) []byte {
	for i, in := range inputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '(')
		b = appendRaw(b, in.Path)
		b = append(b, ',')
		b = appendList(b, in.Outputs, false)
		b = append(b, ')')
	}
	return b
}

// Marshal returns the ATerm of d.
func Marshal(d *Derivation) []byte { return Append(nil, d) }

// Equal reports whether two derivations have the same content.
func Equal(a, b *Derivation) bool {
	return bytes.Equal(Marshal(a), Marshal(b))
}

// Layout records where the parts of a written ATerm that hashing varies
// are: the inputDrvs list, each output's path and the env value named
// after each output (offsets of the content, inside the quotes).
type Layout struct {
	InputsStart, InputsEnd int
	OutPath                []int // per output
	EnvOut                 []int // per output, -1 when env has no such key
}

// AppendLayout is Append that also fills l.
func AppendLayout(b []byte, d *Derivation, l *Layout) []byte {
	l.OutPath = l.OutPath[:0]
	l.EnvOut = l.EnvOut[:0]
	b = append(b, "Derive(["...)
	for i, o := range d.Outputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '(')
		b = appendRaw(b, o.Name)
		b = append(b, ',')
		l.OutPath = append(l.OutPath, len(b)+1)
		l.EnvOut = append(l.EnvOut, -1)
		b = appendRaw(b, o.Path)
		b = append(b, ',')
		b = appendRaw(b, o.HashAlgo)
		b = append(b, ',')
		b = appendRaw(b, o.Hash)
		b = append(b, ')')
	}
	b = append(b, "],["...)
	l.InputsStart = len(b)
	b = AppendInputs(b, d.InputDrvs)
	l.InputsEnd = len(b)
	b = append(b, "],"...)
	b = appendList(b, d.InputSrcs, false)
	b = append(b, ',')
	b = appendRaw(b, d.Platform)
	b = append(b, ',')
	b = appendEscaped(b, d.Builder)
	b = append(b, ',')
	b = appendList(b, d.Args, true)
	b = append(b, ",["...)
	for i, e := range d.Env {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '(')
		b = appendEscaped(b, e.Key)
		b = append(b, ',')
		for k := range d.Outputs {
			if d.Outputs[k].Name == e.Key {
				l.EnvOut[k] = len(b) + 1
			}
		}
		b = appendEscaped(b, e.Value)
		b = append(b, ')')
	}
	return append(b, "])"...)
}

// Unescape returns a value kept escaped by ParseLazy as Nix reads it.
func Unescape(v string) string {
	if strings.IndexByte(v, '\\') < 0 {
		return v
	}
	b := AppendUnescaped(make([]byte, 0, len(v)), v)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// AppendUnescaped appends v, a value kept escaped by ParseLazy, as Nix
// reads it. It appends at most len(v) bytes.
func AppendUnescaped(b []byte, v string) []byte {
	for {
		k := strings.IndexByte(v, '\\')
		if k < 0 || k+1 >= len(v) {
			return append(b, v...)
		}
		b = append(b, v[:k]...)
		c := v[k+1]
		switch c {
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		}
		b = append(b, c)
		v = v[k+2:]
	}
}
