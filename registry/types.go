package registry

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/poison-nix/poison/storepath"
)

// StorePath is a validated absolute store path: STOREDIR/HASH-NAME with a
// 32-character nixbase32 hash and a name of allowed characters.
type StorePath struct {
	dir  string
	base string
}

// DrvPath is a StorePath whose name ends in ".drv".
type DrvPath struct{ StorePath }

// ParseStorePath validates s as a store path directly under storeDir (no
// sub-path).
func ParseStorePath(storeDir, s string) (StorePath, error) {
	base, err := storepath.Base(storeDir, s)
	if err != nil {
		return StorePath{}, err
	}
	return StorePath{dir: storeDir, base: base}, nil
}

// ParseDrvPath validates s as a .drv store path under storeDir.
func ParseDrvPath(storeDir, s string) (DrvPath, error) {
	p, err := ParseStorePath(storeDir, s)
	if err != nil {
		return DrvPath{}, err
	}
	if !strings.HasSuffix(p.base, ".drv") {
		return DrvPath{}, fmt.Errorf("%q is not a .drv path", s)
	}
	return DrvPath{p}, nil
}

// ValidateBaseName checks a store path base name "HASH-NAME".
func ValidateBaseName(base string) error { return storepath.CheckBase(base) }

// ValidateName checks a store path name (the part after "HASH-").
func ValidateName(name string) error { return storepath.CheckName(name) }

// String returns the absolute path.
func (p StorePath) String() string {
	if p.base == "" {
		return ""
	}
	return p.dir + "/" + p.base
}

// Base returns "HASH-NAME".
func (p StorePath) Base() string { return p.base }

// Name returns the name part ("NAME" of HASH-NAME).
func (p StorePath) Name() string {
	if len(p.base) < 33 {
		return ""
	}
	return p.base[33:]
}

// IsZero reports whether p holds no path.
func (p StorePath) IsZero() bool { return p.base == "" }

// DrvName returns the derivation name: the store path name without ".drv".
func (p DrvPath) DrvName() string { return strings.TrimSuffix(p.Name(), ".drv") }

// Serial is a poison serial: a positive count of entries.
type Serial int

// ParseSerial parses a decimal serial of at least 1.
func ParseSerial(s string) (Serial, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("serial %q is not a positive decimal integer", truncate(s))
	}
	return Serial(n), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Serial) UnmarshalText(b []byte) error {
	v, err := ParseSerial(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (s Serial) MarshalText() ([]byte, error) {
	if s < 1 {
		return nil, fmt.Errorf("serial %d is not positive", int(s))
	}
	return []byte(strconv.Itoa(int(s))), nil
}

// truncate shortens s for messages.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// UnmarshalText implements encoding.TextUnmarshaler. The store directory is
// taken from the path itself; use ParseStorePath to require a given one.
func (p *StorePath) UnmarshalText(b []byte) error {
	s := string(b)
	i := strings.LastIndexByte(s, '/')
	if i <= 0 {
		return fmt.Errorf("%q is not an absolute store path", truncate(s))
	}
	v, err := ParseStorePath(s[:i], s)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (p StorePath) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *DrvPath) UnmarshalText(b []byte) error {
	var sp StorePath
	if err := sp.UnmarshalText(b); err != nil {
		return err
	}
	if !strings.HasSuffix(sp.base, ".drv") {
		return fmt.Errorf("%q is not a .drv path", truncate(string(b)))
	}
	p.StorePath = sp
	return nil
}
