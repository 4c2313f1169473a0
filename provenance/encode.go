package provenance

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendLine appends r as one journal line (newline included) to b: the
// same bytes encoding/json writes for the line, without reflection, so
// that 'poison provenance --json' can re-emit millions of records.
func AppendLine(b []byte, r *Record) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, Version, 10)
	b = append(b, `,"drv":`...)
	b = appendString(b, r.Drv)
	b = append(b, `,"outputs":`...)
	b = append(b, '[')
	for i, o := range r.Outputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, o)
	}
	b = append(b, ']')
	b = append(b, `,"host":`...)
	b = appendString(b, r.Host)
	if r.MachineID != "" {
		b = append(b, `,"machineId":`...)
		b = appendString(b, r.MachineID)
	}
	if r.System != "" {
		b = append(b, `,"system":`...)
		b = appendString(b, r.System)
	}
	if !r.Start.IsZero() {
		b = append(b, `,"start":"`...)
		b = r.Start.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	if r.StartSource != "" {
		b = append(b, `,"startSource":`...)
		b = appendString(b, r.StartSource)
	}
	b = append(b, `,"end":"`...)
	b = r.End.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if r.Nix != "" {
		b = append(b, `,"nix":`...)
		b = appendString(b, r.Nix)
	}
	return append(b, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string the way encoding/json does with
// HTML escaping off: invalid UTF-8 becomes U+FFFD, U+2028 and U+2029 are
// escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
