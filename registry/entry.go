package registry

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// Limits that keep a registry reviewable and its processing bounded.
const (
	MaxEntrySize = 64 << 10 // bytes of one entry file
	maxReason    = 4096     // bytes of reason
	maxShort     = 256      // bytes of author, group, ticket and each name
)

// Entry is one incident: one file under entries/.
type Entry struct {
	File        string    // slash-separated path relative to the registry root, e.g. entries/2026/11/x.toml
	Reason      string    // why the results are bad
	Author      string    // who filed the entry
	Date        time.Time // the day of the incident, midnight UTC
	Group       string    // optional coordinated build unit
	Ticket      string    // optional ticket id
	Derivations []Derivation
	Names       []string // name-only poisoning (fallback)
}

// Derivation is one poisoned derivation of an entry.
type Derivation struct {
	Path    string   // canonical .drv path, e.g. /nix/store/HASH-b.drv
	Outputs []string // its canonical output paths; may be empty (lint warns)
}

// Name returns the derivation name: the store path name without ".drv".
func (d Derivation) Name() string {
	base := d.Path[strings.LastIndexByte(d.Path, '/')+1:]
	if len(base) < 33 {
		return ""
	}
	return strings.TrimSuffix(base[33:], ".drv")
}

var entryKeys = []string{"reason", "author", "date", "group", "ticket", "derivation", "names"}
var derivationKeys = []string{"path", "outputs"}

// DecodeEntry decodes and validates one entry file. file is the path used
// in problems (relative to the registry root); cfg gives the store
// directory; now is the reference for the date rule. It returns the entry
// (nil when there is any error) and every problem found, warnings included.
func DecodeEntry(file string, data []byte, cfg Config, now time.Time) (*Entry, Problems) {
	d := entryDecoder{file: file, src: data, cfg: cfg.withDefaults()}
	e := d.decode(now)
	sort.SliceStable(d.problems, func(i, j int) bool {
		a, b := d.problems[i], d.problems[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	if len(d.problems.Errors()) > 0 {
		return nil, d.problems
	}
	return e, d.problems
}

type entryDecoder struct {
	file     string
	src      []byte
	cfg      Config
	pos      *positions
	problems Problems
}

// at records a problem at the position of key path.
func (d *entryDecoder) at(sev Severity, key, format string, a ...any) {
	if d.pos == nil {
		d.pos = scanPositions(string(d.src))
	}
	p := d.pos.lookup(key)
	d.problems = append(d.problems, Problem{Path: d.file, Line: p.Line, Col: p.Col, Key: key, Message: fmt.Sprintf(format, a...), Severity: sev})
}

func (d *entryDecoder) errorf(key, format string, a ...any) { d.at(Error, key, format, a...) }

func (d *entryDecoder) fileProblem(format string, a ...any) {
	d.problems = append(d.problems, Problem{Path: d.file, Message: fmt.Sprintf(format, a...), Severity: Error})
}

// parse checks size and encoding and decodes the TOML into a generic map.
func (d *entryDecoder) parse() (map[string]any, bool) {
	if len(d.src) > MaxEntrySize {
		d.fileProblem("file is %d bytes, more than the limit of %d; split the incident into several entries", len(d.src), MaxEntrySize)
		return nil, false
	}
	if !utf8.Valid(d.src) {
		off := 0
		for off < len(d.src) {
			r, n := utf8.DecodeRune(d.src[off:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			off += n
		}
		d.pos = scanPositions(string(d.src[:off]))
		p := d.pos.pos(off)
		d.problems = append(d.problems, Problem{Path: d.file, Line: p.Line, Col: p.Col, Message: fmt.Sprintf("byte 0x%02x is not valid UTF-8; save the file as UTF-8", d.src[off]), Severity: Error})
		return nil, false
	}
	if m, ok := fastParse(string(d.src)); ok {
		return m, true
	}
	var m map[string]any
	if _, err := toml.Decode(string(d.src), &m); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := strings.TrimSuffix(pe.Message, ".")
			d.problems = append(d.problems, Problem{Path: d.file, Line: pe.Position.Line, Col: max(pe.Position.Col, 1),
				Message: "invalid TOML: " + msg + "; fix the syntax (see https://toml.io)", Severity: Error})
		} else {
			d.fileProblem("invalid TOML: %v; fix the syntax (see https://toml.io)", err)
		}
		return nil, false
	}
	return m, true
}

func (d *entryDecoder) decode(now time.Time) *Entry {
	m, ok := d.parse()
	if !ok {
		return nil
	}
	e := &Entry{File: d.file}
	for _, k := range sortedKeys(m) {
		if !contains(entryKeys, k) {
			d.errorf(k, "unknown key%s; an entry has only %s", suggest(k, entryKeys), strings.Join(entryKeys, ", "))
		}
	}
	e.Reason = d.text(m, "reason", true, maxReason, true)
	e.Author = d.text(m, "author", true, maxShort, false)
	e.Group = d.text(m, "group", false, maxShort, false)
	e.Ticket = d.text(m, "ticket", false, maxShort, false)
	e.Date = d.date(m, now)

	seenDrv := map[string]string{} // path -> key where first listed
	if v, ok := m["derivation"]; ok {
		tables, ok := tableArray(v)
		if !ok {
			d.errorf("derivation", "is %s; write each derivation as a [[derivation]] table with path = \"%s/...drv\"", aType(v), d.cfg.StoreDir)
		}
		for i, t := range tables {
			key := "derivation[" + strconv.Itoa(i) + "]"
			if drv, ok := d.derivation(key, t, seenDrv); ok {
				e.Derivations = append(e.Derivations, drv)
			}
		}
	}
	if v, ok := m["names"]; ok {
		e.Names = d.names(v)
	}
	if _, hasD := m["derivation"]; !hasD {
		if _, hasN := m["names"]; !hasN {
			d.problems = append(d.problems, Problem{Path: d.file, Line: 1, Col: 1, Severity: Error,
				Message: "entry poisons nothing; add a [[derivation]] table with the path of the bad .drv (poison add does this), or names"})
		}
	}
	return e
}

// text validates an optional or required single-line (or multi-line) string.
func (d *entryDecoder) text(m map[string]any, key string, required bool, limit int, multiline bool) string {
	v, ok := m[key]
	if !ok {
		if required {
			d.problems = append(d.problems, Problem{Path: d.file, Line: 1, Col: 1, Key: key, Severity: Error,
				Message: fmt.Sprintf("missing; add %s = \"...\"", key)})
		}
		return ""
	}
	s, ok := v.(string)
	if !ok {
		d.errorf(key, "is %s; write a quoted string, %s = \"...\"", aType(v), key)
		return ""
	}
	if strings.TrimSpace(s) == "" {
		d.errorf(key, "is empty; %s", map[bool]string{true: "say what went wrong", false: "write a value or remove the key"}[key == "reason"])
		return ""
	}
	if len(s) > limit {
		d.errorf(key, "is %d bytes long, more than the limit of %d; shorten it (link a ticket for details)", len(s), limit)
		return ""
	}
	for _, r := range s {
		if r == '\n' && multiline || r == '\t' {
			continue
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			d.errorf(key, "contains the control character %U; remove it", r)
			return ""
		}
	}
	return s
}

func (d *entryDecoder) date(m map[string]any, now time.Time) time.Time {
	v, ok := m["date"]
	if !ok {
		d.problems = append(d.problems, Problem{Path: d.file, Line: 1, Col: 1, Key: "date", Severity: Error,
			Message: "missing; add the day of the incident, date = " + now.UTC().Format(time.DateOnly)})
		return time.Time{}
	}
	t, ok := v.(time.Time)
	if !ok {
		if s, isStr := v.(string); isStr {
			if _, err := time.Parse(time.DateOnly, s); err == nil {
				d.errorf("date", "is a quoted string; write a TOML date without quotes, date = %s", s)
				return time.Time{}
			}
		}
		d.errorf("date", "is %s; write a TOML date without quotes, like date = 2026-11-25", aType(v))
		return time.Time{}
	}
	if t.Location().String() != "date-local" {
		d.errorf("date", "has a time of day; write only the day, date = %s", t.Format(time.DateOnly))
		return time.Time{}
	}
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !now.IsZero() {
		today := now.UTC().Truncate(24 * time.Hour)
		if day.After(today.AddDate(0, 0, 1)) {
			d.errorf("date", "%s is more than a day in the future (today is %s); use the day of the incident", day.Format(time.DateOnly), today.Format(time.DateOnly))
			return time.Time{}
		}
	}
	return day
}

func (d *entryDecoder) derivation(key string, t map[string]any, seenDrv map[string]string) (Derivation, bool) {
	var drv Derivation
	ok := true
	for _, k := range sortedKeys(t) {
		if !contains(derivationKeys, k) {
			if contains(entryKeys, k) {
				d.errorf(key+"."+k, "belongs to the entry, not to this [[derivation]] table; move it above the first [[derivation]]")
			} else {
				d.errorf(key+"."+k, "unknown key%s; a [[derivation]] has only path and outputs", suggest(k, derivationKeys))
			}
			ok = false
		}
	}
	v, has := t["path"]
	if !has {
		d.errorf(key, "has no path; add path = \"%s/HASH-NAME.drv\"", d.cfg.StoreDir)
		return drv, false
	}
	s, isStr := v.(string)
	if !isStr {
		d.errorf(key+".path", "is %s; write the .drv path as a quoted string", aType(v))
		return drv, false
	}
	p, err := ParseDrvPath(d.cfg.StoreDir, s)
	if err != nil {
		d.errorf(key+".path", "%v; write the full .drv path as printed by nix-instantiate (poison add does this)", err)
		return drv, false
	}
	if first, dup := seenDrv[s]; dup {
		d.errorf(key+".path", "%s is listed twice (first on line %d); remove the duplicate", s, d.line(first))
		ok = false
	} else {
		seenDrv[s] = key + ".path"
	}
	drv.Path = s
	ov, has := t["outputs"]
	if !has {
		d.at(Warning, key, "no outputs recorded for %s; a derivation with other .drv paths but the same outputs slips through: record them with poison add", p.Base())
		return drv, ok
	}
	list, isList := ov.([]any)
	if !isList {
		d.errorf(key+".outputs", "is %s; write a list of output paths, outputs = [\"%s/...\"]", aType(ov), d.cfg.StoreDir)
		return drv, false
	}
	if len(list) == 0 {
		d.at(Warning, key+".outputs", "is empty; record the outputs of %s with poison add", p.Base())
	}
	name := p.DrvName()
	// An output listed twice in one derivation is a mistake. Listed under
	// two derivations of the entry it is not: fixed-output twins (the same
	// source fetched from two URLs) are different .drv files with the same
	// output path. The lock counts it once per entry all the same.
	seenOut := map[string]string{}
	for i, o := range list {
		ok2 := true
		okey := key + ".outputs[" + strconv.Itoa(i) + "]"
		os, isStr := o.(string)
		if !isStr {
			d.errorf(okey, "is %s; write the output path as a quoted string", aType(o))
			ok = false
			continue
		}
		op, err := ParseStorePath(d.cfg.StoreDir, os)
		switch {
		case err != nil:
			d.errorf(okey, "%v; write a full output path as printed by nix-store -q --outputs", err)
			ok2 = false
		case strings.HasSuffix(op.Base(), ".drv"):
			d.errorf(okey, "%s is a .drv path, not an output; list outputs as printed by nix-store -q --outputs", os)
			ok2 = false
		case op.Name() != name && !strings.HasPrefix(op.Name(), name+"-"):
			d.errorf(okey, "output name %q does not belong to derivation %q; list only the outputs of %s", op.Name(), name, p.Base())
			ok2 = false
		}
		if !ok2 {
			ok = false
			continue
		}
		if first, dup := seenOut[os]; dup {
			d.errorf(okey, "%s is listed twice (first on line %d); remove the duplicate", os, d.line(first))
			ok = false
			continue
		}
		seenOut[os] = okey
		drv.Outputs = append(drv.Outputs, os)
	}
	return drv, ok
}

func (d *entryDecoder) names(v any) []string {
	list, ok := v.([]any)
	if !ok {
		d.errorf("names", "is %s; write a list of derivation names, names = [\"openssl-3.0.13\"]", aType(v))
		return nil
	}
	if len(list) == 0 {
		d.errorf("names", "is empty; list at least one derivation name or remove the key")
		return nil
	}
	var out []string
	seen := map[string]string{}
	for i, n := range list {
		key := "names[" + strconv.Itoa(i) + "]"
		s, isStr := n.(string)
		if !isStr {
			d.errorf(key, "is %s; write the name as a quoted string", aType(n))
			continue
		}
		if err := ValidateName(s); err != nil {
			d.errorf(key, "%v; write a derivation name such as openssl-3.0.13", err)
			continue
		}
		if strings.HasSuffix(s, ".drv") {
			d.errorf(key, "%q ends in .drv; names are derivation names without .drv (or use a [[derivation]] path)", s)
			continue
		}
		if first, dup := seen[s]; dup {
			d.errorf(key, "%q is listed twice (first on line %d); remove the duplicate", s, d.line(first))
			continue
		}
		seen[s] = key
		out = append(out, s)
	}
	return out
}

// tableArray accepts [[x]] tables and inline arrays of tables.
func tableArray(v any) ([]map[string]any, bool) {
	switch t := v.(type) {
	case []map[string]any:
		return t, true
	case []any:
		out := make([]map[string]any, 0, len(t))
		for _, e := range t {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			out = append(out, m)
		}
		return out, true
	}
	return nil, false
}

func aType(v any) string {
	n := typeName(v)
	if strings.IndexByte("aeiou", n[0]) >= 0 {
		return "an " + n
	}
	return "a " + n
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time:
		return "date-time"
	case []any:
		return "list"
	case map[string]any:
		return "table"
	case []map[string]any:
		return "list of tables"
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns ` (did you mean "x"?)` for a near miss, or "".
func suggest(k string, known []string) string {
	best, bestD := "", 3
	for _, c := range known {
		if dd := editDistance(strings.ToLower(k), c); dd < bestD {
			best, bestD = c, dd
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// line returns the line of key path.
func (d *entryDecoder) line(key string) int {
	if d.pos == nil {
		d.pos = scanPositions(string(d.src))
	}
	return d.pos.lookup(key).Line
}
