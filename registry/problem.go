package registry

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/poison-nix/poison/registry/gittree"
)

// Severity says whether a Problem fails lint.
type Severity int

const (
	// Error problems make lint fail and the entry invalid.
	Error Severity = iota
	// Warning problems are reported but do not fail lint.
	Warning
)

func (s Severity) String() string {
	if s == Warning {
		return "warning"
	}
	return "error"
}

// MarshalText implements encoding.TextMarshaler ("error" or "warning").
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Problem is one lint finding, located in a registry file.
type Problem struct {
	Path     string   `json:"path"`           // relative to the registry root, slash-separated
	Line     int      `json:"line,omitempty"` // 1-based; 0 when the problem concerns the whole file
	Col      int      `json:"col,omitempty"`  // 1-based byte column
	Key      string   `json:"key,omitempty"`  // the TOML key, e.g. derivation[0].path
	Message  string   `json:"message"`        // what is wrong; what to do
	Severity Severity `json:"severity"`
}

// String formats p as "PATH:LINE:COL: KEY: what is wrong; what to do"; the
// position is left out for whole-file problems and the key when there is
// none. A path that is not printable UTF-8 (a newline, a control
// character, an invalid byte in a file name) is Go-quoted, so a problem
// stays one line.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(gittree.QuotePath(p.Path))
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, max(p.Col, 1))
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is a list of lint findings. As an error it lists one per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Errors returns the problems of severity Error.
func (ps Problems) Errors() Problems { return ps.filter(Error) }

// Warnings returns the problems of severity Warning.
func (ps Problems) Warnings() Problems { return ps.filter(Warning) }

func (ps Problems) filter(s Severity) Problems {
	var out Problems
	for _, p := range ps {
		if p.Severity == s {
			out = append(out, p)
		}
	}
	return out
}

// JSON encodes p as one JSON object (no trailing newline).
func (p Problem) JSON() []byte {
	b, _ := json.Marshal(p) // cannot fail: plain strings and ints
	return b
}
