// Package machines reads Nix's machines format: the `builders` setting and
// the /etc/nix/machines file that list remote build machines.
//
// An entry is one line, or one part of a line between ';'. Its columns are
// separated by blanks; '-' or a missing column takes the default:
//
//	URI  SYSTEMS  SSH-KEY  MAX-JOBS  SPEED-FACTOR  SUPPORTED-FEATURES  MANDATORY-FEATURES  HOST-KEY
//
// SYSTEMS and the FEATURES columns are comma-separated; SYSTEMS defaults
// to the system of this machine, MAX-JOBS and SPEED-FACTOR to 1 (a speed
// factor of 0 means 1), HOST-KEY is the base64 of the host's public key
// line. A URI without a scheme that is not a path nor auto, daemon or local
// means ssh://URI. '#' starts a comment that runs to the end of the line.
// An entry "@FILE" is replaced by the entries of FILE; a FILE that does not
// exist gives no entries (as in Nix), and Spec.Missing names it.
//
// This follows Nix since 2.28. Nix 2.8 to 2.27 did not trim entries (an
// entry " @FILE" after a ';' was read as a machine named "@FILE" and a
// blank entry was an error) and ended a comment at the next ';'.
package machines

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Machine is one entry of a machines specification.
type Machine struct {
	// URI is the store URI of the machine as Nix reads it ("ssh://" added
	// to a bare host name).
	URI string
	// Systems are the system types it builds for ("x86_64-linux").
	Systems []string
	// SSHKey is the private key file to log in with; empty for ssh's own
	// choice.
	SSHKey string
	// MaxJobs is how many builds it runs at once.
	MaxJobs int
	// SpeedFactor weighs its load: more is faster (at least 1 when not
	// given).
	SpeedFactor float64
	// SupportedFeatures are the system features it offers; Mandatory
	// ones it offers only to derivations that require them all. Sorted.
	SupportedFeatures, MandatoryFeatures []string
	// HostKey is the base64 of its public host key ("ssh-ed25519 AAAA…"),
	// empty when ssh's known_hosts decide.
	HostKey string
	// Source says where the entry came from: "FILE:LINE" or "builders
	// entry N", for messages.
	Source string
}

// Spec is a parsed machines specification.
type Spec struct {
	Machines []Machine
	// Missing are the @FILEs that do not exist (Nix ignores them).
	Missing []string
}

// Options configures Parse.
type Options struct {
	// DefaultSystem is the system of machines whose SYSTEMS column is
	// unset (Nix's `system` setting).
	DefaultSystem string
	// MaxFileSize bounds each @FILE read; 1 MiB when 0.
	MaxFileSize int64
}

// maxDepth bounds @FILE nesting (and stops a file including itself).
const maxDepth = 8

// Error is a malformed entry, with where it came from.
type Error struct {
	Source string // "FILE:LINE" or "builders entry N"
	Entry  string
	Msg    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: bad machine specification %q: %s", e.Source, e.Entry, e.Msg)
}

// Parse reads a machines specification: the value of Nix's `builders`
// setting (entries separated by ';' or newlines, "@FILE" includes).
func Parse(spec string, opts Options) (*Spec, error) {
	p := parser{opts: opts, out: &Spec{}}
	if p.opts.MaxFileSize <= 0 {
		p.opts.MaxFileSize = 1 << 20
	}
	if err := p.parse(spec, "", 0); err != nil {
		return nil, err
	}
	return p.out, nil
}

// ParseFile reads a machines file such as /etc/nix/machines.
func ParseFile(path string, opts Options) (*Spec, error) {
	return Parse("@"+path, opts)
}

type parser struct {
	opts  Options
	out   *Spec
	entry int // entries of the inline spec seen so far
}

// parse reads text from file ("" for the inline spec) at nesting depth.
func (p *parser) parse(text, file string, depth int) error {
	for ln, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, entry := range strings.Split(line, ";") {
			entry = strings.Trim(entry, " \t\r\n")
			if entry == "" {
				continue
			}
			src := fmt.Sprintf("%s:%d", file, ln+1)
			if file == "" {
				p.entry++
				src = fmt.Sprintf("builders entry %d", p.entry)
			}
			if entry[0] == '@' {
				if err := p.include(strings.Trim(entry[1:], " \t\r\n"), src, depth); err != nil {
					return err
				}
				continue
			}
			m, err := parseEntry(entry, p.opts.DefaultSystem)
			if err != nil {
				return &Error{Source: src, Entry: entry, Msg: err.Error()}
			}
			m.Source = src
			p.out.Machines = append(p.out.Machines, m)
		}
	}
	return nil
}

func (p *parser) include(path, src string, depth int) error {
	if depth >= maxDepth {
		return &Error{Source: src, Entry: "@" + path, Msg: fmt.Sprintf("more than %d nested @FILE includes (does a file include itself?)", maxDepth)}
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		p.out.Missing = append(p.out.Missing, path)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: machines file: %w", src, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return fmt.Errorf("%s: machines file: %w", src, err)
	} else if st.IsDir() {
		return fmt.Errorf("%s: machines file %s is a directory", src, path)
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: machines file %s is not a regular file", src, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, p.opts.MaxFileSize+1))
	if err != nil {
		return fmt.Errorf("%s: machines file: %w", src, err)
	}
	if int64(len(data)) > p.opts.MaxFileSize {
		return fmt.Errorf("%s: machines file %s is larger than %d bytes", src, path, p.opts.MaxFileSize)
	}
	return p.parse(string(data), path, depth+1)
}

// columnNames name the columns in messages.
var columnNames = []string{"URI", "systems", "ssh key", "max jobs", "speed factor", "supported features", "mandatory features", "host key"}

// parseEntry reads the columns of one entry.
func parseEntry(entry, defaultSystem string) (Machine, error) {
	cols := strings.FieldsFunc(entry, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' })
	set := func(i int) bool { return len(cols) > i && cols[i] != "" && cols[i] != "-" }
	if !set(0) {
		return Machine{}, errors.New("no store URI in the first column")
	}
	m := Machine{URI: normaliseURI(cols[0]), MaxJobs: 1, SpeedFactor: 1}
	if set(1) {
		m.Systems = splitComma(cols[1], false)
	} else if defaultSystem != "" {
		m.Systems = []string{defaultSystem}
	}
	if set(2) {
		m.SSHKey = cols[2]
	}
	if set(3) {
		n, err := strconv.ParseUint(cols[3], 10, 32)
		if err != nil {
			return Machine{}, fmt.Errorf("column 4 (%s) %q is not a non-negative integer", columnNames[3], cols[3])
		}
		m.MaxJobs = int(n)
	}
	if set(4) {
		f, err := strconv.ParseFloat(cols[4], 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return Machine{}, fmt.Errorf("column 5 (%s) %q is not a non-negative number", columnNames[4], cols[4])
		}
		if f > 0 {
			m.SpeedFactor = f
		}
	}
	if set(5) {
		m.SupportedFeatures = splitComma(cols[5], true)
	}
	if set(6) {
		m.MandatoryFeatures = splitComma(cols[6], true)
	}
	if set(7) {
		if _, err := decodeBase64(cols[7]); err != nil {
			return Machine{}, fmt.Errorf("column 8 (%s) is not valid base64: %v", columnNames[7], err)
		}
		m.HostKey = cols[7]
	}
	return m, nil
}

// normaliseURI adds "ssh://" to a bare host name, as Nix does.
func normaliseURI(u string) string {
	switch {
	case strings.Contains(u, "://"), strings.Contains(u, "/"),
		u == "auto", u == "daemon", u == "local",
		strings.HasPrefix(u, "auto?"), strings.HasPrefix(u, "daemon?"),
		strings.HasPrefix(u, "local?"), strings.HasPrefix(u, "?"):
		return u
	}
	return "ssh://" + u
}

// splitComma splits a comma-separated column, dropping empty items; as a
// set (sorted, unique) when set is true, as Nix keeps features.
func splitComma(s string, set bool) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x != "" {
			out = append(out, x)
		}
	}
	if set {
		slices.Sort(out)
		out = slices.Compact(out)
	}
	return out
}

// decodeBase64 decodes padded or unpadded standard base64.
func decodeBase64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// PublicHostKey returns the decoded host key line ("ssh-ed25519 AAAA…"),
// or "" when the entry gives none.
func (m *Machine) PublicHostKey() string {
	if m.HostKey == "" {
		return ""
	}
	b, err := decodeBase64(m.HostKey)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// SupportsSystem reports whether m builds for system ("builtin"
// derivations run anywhere).
func (m *Machine) SupportsSystem(system string) bool {
	return system == "builtin" || slices.Contains(m.Systems, system)
}

// AllSupported reports whether m offers every feature of required.
func (m *Machine) AllSupported(required []string) bool {
	for _, f := range required {
		if !slices.Contains(m.SupportedFeatures, f) && !slices.Contains(m.MandatoryFeatures, f) {
			return false
		}
	}
	return true
}

// MandatoryMet reports whether required includes every mandatory feature
// of m.
func (m *Machine) MandatoryMet(required []string) bool {
	for _, f := range m.MandatoryFeatures {
		if !slices.Contains(required, f) {
			return false
		}
	}
	return true
}

// CanBuild reports whether m may build a derivation for system that
// requires the features required (Nix's rule: the system matches, every
// required feature is offered, every mandatory feature is required).
func (m *Machine) CanBuild(system string, required []string) bool {
	return m.SupportsSystem(system) && m.AllSupported(required) && m.MandatoryMet(required)
}

// String formats m as one entry of the machines format.
func (m *Machine) String() string {
	col := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	return strings.Join([]string{
		m.URI, col(strings.Join(m.Systems, ",")), col(m.SSHKey), strconv.Itoa(m.MaxJobs),
		strconv.FormatFloat(m.SpeedFactor, 'g', -1, 64),
		col(strings.Join(m.SupportedFeatures, ",")), col(strings.Join(m.MandatoryFeatures, ",")), col(m.HostKey),
	}, " ")
}
