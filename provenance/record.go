// Package provenance keeps and queries build journals: one JSON line per
// derivation a machine built, appended by a Nix post-build-hook, so that a
// team that finds a faulty machine can list everything it built.
//
// A journal is a file of lines, each a JSON object (docs/provenance.md):
//
//	{"v":1,"drv":"/nix/store/…-b.drv","outputs":["/nix/store/…-b"],"host":"board7",
//	 "machineId":"…","system":"x86_64-linux","start":"…","startSource":"build-log",
//	 "end":"…","nix":"2.8.0"}
//
// Append writes a line with one write(2) under an exclusive flock, so lines
// of concurrent builds never interleave or tear; a failed write is cut back
// off. Read streams journals with a bounded line length and reports a bad
// line by file and line number instead of guessing at it.
package provenance

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/poison-nix/poison/storepath"
)

// Version is the journal line format this package writes.
const Version = 1

// MaxLine is the longest journal line (newline included) Append writes and
// Read accepts. A derivation with hundreds of outputs still fits.
const MaxLine = 64 << 10

// Start time sources recorded in Record.StartSource.
const (
	// StartBuildLog: the birth time of the derivation's build log, which Nix
	// creates when the build starts. A derivation built before (a failed
	// attempt, a --check) reuses the file, so the start is then too early.
	StartBuildLog = "build-log"
)

// Record is one journal line: a derivation built on a host.
type Record struct {
	Drv     string   `json:"drv"`
	Outputs []string `json:"outputs"`
	// Host names the machine: the setting the hook was given, else the
	// hostname.
	Host string `json:"host"`
	// MachineID is /etc/machine-id of the host, when it has one.
	MachineID string `json:"machineId,omitempty"`
	// System is the derivation's platform (x86_64-linux, ...).
	System string `json:"system,omitempty"`
	// Start is when the build started, when it could be told (see
	// StartSource); the zero time otherwise.
	Start       time.Time `json:"start,omitzero"`
	StartSource string    `json:"startSource,omitempty"`
	// End is when the hook ran: right after Nix registered the outputs.
	End time.Time `json:"end"`
	// Nix is the version of the Nix that ran the build ("2.8.0").
	Nix string `json:"nix,omitempty"`
}

// Validate checks what every journal line must hold: an absolute .drv
// path, absolute store paths as outputs, a host and an end time.
func (r *Record) Validate() error {
	if err := checkStorePath(r.Drv); err != nil {
		return fmt.Errorf("drv: %w", err)
	}
	if !strings.HasSuffix(r.Drv, ".drv") {
		return fmt.Errorf("drv: %q is not a .drv path", r.Drv)
	}
	for _, o := range r.Outputs {
		if err := checkStorePath(o); err != nil {
			return fmt.Errorf("outputs: %w", err)
		}
	}
	if r.Host == "" {
		return errors.New("host: empty")
	}
	if len(r.Host) > 255 || strings.ContainsAny(r.Host, "\n\r\t") {
		return fmt.Errorf("host %q: at most 255 bytes, no control characters", truncate(r.Host))
	}
	if r.End.IsZero() {
		return errors.New("end: missing")
	}
	return nil
}

// checkStorePath checks p is an absolute path whose last element is a
// store path base name; the store directory is whatever precedes it.
func checkStorePath(p string) error {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 && !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q is not an absolute store path", truncate(p))
	}
	if err := storepath.CheckBase(p[i+1:]); err != nil {
		return fmt.Errorf("%q: %w", truncate(p), err)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
