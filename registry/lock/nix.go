package lock

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// nixHeader opens every poison.nix. It holds no data from the lock, so no
// registry content can reach a comment.
const nixHeader = `# poison.nix: the serials of a poison registry (docs/formats.md), written by
# 'poison export nix' from poison.lock. Do not edit: export it again.
# Consume it with nix/lib.nix or nix/overlay.nix from the poison flake.
`

// Nix returns the lock as poison.nix: a plain Nix attribute set
//
//	{ derivations = { "<hash>-b.drv" = 1; }; env = "POISON_SERIAL";
//	  names = { "b" = 1; }; outputs = { "<hash>-b" = 1; };
//	  registry = { commit = "..."; ref = "..."; url = "..."; };
//	  storeDir = "/nix/store"; version = 1; }
//
// with every key sorted bytewise (as Nix sorts attribute names) and one
// entry per line, so the same lock always gives the same bytes.
//
// Every string, keys included, is a double-quoted Nix string in which '"',
// '\' and '$' are escaped with a backslash and newline, carriage return and
// tab use \n, \r and \t; every other byte, UTF-8 or not, is copied as is.
// Escaping every '$' means no "${" can start an interpolation, whatever
// precedes it, so no name can inject Nix code. A Nix string cannot hold a
// NUL byte: a string containing one is written as a throw naming the field,
// so evaluating that part of the file fails instead of yielding another
// name; WriteNixFile refuses such a lock outright.
func (f *File) Nix() []byte {
	var b bytes.Buffer
	b.WriteString(nixHeader)
	b.WriteString("{\n")
	writeNixSerials(&b, "derivations", f.Derivations)
	b.WriteString("  env = ")
	writeNixString(&b, f.Env, "env")
	b.WriteString(";\n")
	writeNixSerials(&b, "names", f.Names)
	writeNixSerials(&b, "outputs", f.Outputs)
	b.WriteString("  registry = {\n")
	for _, kv := range [...][2]string{
		{"commit", f.Registry.Commit},
		{"ref", f.Registry.Ref},
		{"url", f.Registry.URL},
	} {
		b.WriteString("    " + kv[0] + " = ")
		writeNixString(&b, kv[1], "registry."+kv[0])
		b.WriteString(";\n")
	}
	b.WriteString("  };\n")
	b.WriteString("  storeDir = ")
	writeNixString(&b, f.Store(), "storeDir")
	b.WriteString(";\n")
	b.WriteString("  version = ")
	writeNixInt(&b, f.Version)
	b.WriteString(";\n")
	b.WriteString("}\n")
	return b.Bytes()
}

func writeNixSerials(b *bytes.Buffer, field string, m map[string]int) {
	if len(m) == 0 {
		b.WriteString("  " + field + " = { };\n")
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b.WriteString("  " + field + " = {\n")
	for _, k := range keys {
		b.WriteString("    ")
		if bytes.IndexByte([]byte(k), 0) >= 0 {
			// A dynamic attribute name: evaluating the set throws.
			b.WriteString("${")
			writeNixString(b, k, field+" key")
			b.WriteString("}")
		} else {
			writeNixString(b, k, field+" key")
		}
		b.WriteString(" = ")
		writeNixInt(b, m[k])
		b.WriteString(";\n")
	}
	b.WriteString("  };\n")
}

// writeNixInt writes n as a Nix expression. Nix integers are 64-bit and
// its lexer reads only non-negative literals, so negative numbers are
// negations (and the smallest one a subtraction).
func writeNixInt(b *bytes.Buffer, n int) {
	switch {
	case n >= 0:
		b.WriteString(strconv.Itoa(n))
	case int64(n) == math.MinInt64:
		b.WriteString("(-9223372036854775807 - 1)")
	default:
		b.WriteString("(-" + strconv.Itoa(-n) + ")")
	}
}

// writeNixString writes s as a Nix double-quoted string literal, or, when s
// holds a NUL byte, as a throw naming what (Nix strings are C strings).
func writeNixString(b *bytes.Buffer, s, what string) {
	if bytes.IndexByte([]byte(s), 0) >= 0 {
		b.WriteString(`(throw "poison.nix: ` + what + ` contains a NUL byte, which a Nix string cannot hold; fix the registry entry and export again")`)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', '$':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// WriteNixFile validates f and writes its poison.nix (see Nix) to path
// atomically: a failure leaves any previous file untouched. Unlike Nix, it
// refuses a lock holding a string Nix cannot represent (a NUL byte).
func (f *File) WriteNixFile(path string) error {
	data, err := f.NixFile()
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return WriteAtomic(path, data, 0o644)
}

// NixFile validates f and returns its poison.nix (see Nix), refusing a
// lock holding a string Nix cannot represent, as WriteNixFile does.
func (f *File) NixFile() ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if err := f.nixRepresentable(); err != nil {
		return nil, err
	}
	return f.Nix(), nil
}

func (f *File) nixRepresentable() error {
	check := func(what, s string) error {
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("lock %s %q contains a NUL byte, which a Nix string cannot hold", what, s)
		}
		return nil
	}
	for _, kv := range [...][2]string{{"env", f.Env}, {"registry url", f.Registry.URL}, {"registry ref", f.Registry.Ref}, {"registry commit", f.Registry.Commit}, {"storeDir", f.StoreDir}} {
		if err := check(kv[0], kv[1]); err != nil {
			return err
		}
	}
	for what, m := range map[string]map[string]int{"derivations key": f.Derivations, "outputs key": f.Outputs, "names key": f.Names} {
		for k := range m {
			if err := check(what, k); err != nil {
				return err
			}
		}
	}
	return nil
}
