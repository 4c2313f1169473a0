package gittree

import (
	"errors"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Limits bound the work one tree may cause: whoever can push a branch to
// a registry chooses the tree, so every count and size has a cap. A zero
// field takes its default (DefaultLimits); there is no "unlimited".
type Limits struct {
	// Entries caps the tree entries read in all (files and directories of
	// every tree decoded).
	Entries int64
	// Depth caps the directory levels below the root.
	Depth int
	// FileSize caps the bytes of one file (blob) that is read. Its size is
	// taken from the object header, so a larger blob is refused before a
	// byte of it is inflated.
	FileSize int64
	// TreeSize caps the bytes of one tree object.
	TreeSize int64
	// TotalBytes caps the bytes of all trees and files read.
	TotalBytes int64
}

// DefaultLimits fit a registry of a few million small entries laid out in
// entries/YEAR/MONTH/ directories, with a large margin, and keep a hostile
// tree from costing more than a few hundred megabytes.
var DefaultLimits = Limits{
	Entries:    4_000_000,
	Depth:      64,
	FileSize:   64 << 10,
	TreeSize:   64 << 20,
	TotalBytes: 4 << 30,
}

// WithDefaults returns l with every zero (or negative) field replaced by
// its default.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits
	if l.Entries <= 0 {
		l.Entries = d.Entries
	}
	if l.Depth <= 0 {
		l.Depth = d.Depth
	}
	if l.FileSize <= 0 {
		l.FileSize = d.FileSize
	}
	if l.TreeSize <= 0 {
		l.TreeSize = d.TreeSize
	}
	if l.TotalBytes <= 0 {
		l.TotalBytes = d.TotalBytes
	}
	return l
}

// ErrLimit is wrapped by every *Error that reports a limit, and
// ErrFileTooLarge by those of Limits.FileSize.
var (
	ErrLimit        = errors.New("limit exceeded")
	ErrFileTooLarge = fmt.Errorf("file too large: %w", ErrLimit)
	// ErrInvalidTree is wrapped by every *Error about a tree git fsck
	// would refuse.
	ErrInvalidTree = errors.New("invalid git tree")
)

// Error is a refused tree or file: a limit reached or a tree that git
// fsck would refuse. It names the object by its path in the tree and its
// id, on one line.
type Error struct {
	Path string // slash-separated path in the tree; "." for the root
	Kind string // "tree" or "blob"
	ID   string // object id (40 hex digits)
	Msg  string // what is wrong and what to do
	Err  error  // ErrFileTooLarge, ErrLimit or ErrInvalidTree
	// Limit names the field of Limits that was reached ("Entries",
	// "Depth", "FileSize", "TreeSize", "TotalBytes"), so that a caller can
	// say which setting raises it; "" for an invalid tree.
	Limit string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (%s %s): %s", QuotePath(e.Path), e.Kind, e.ID, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// QuotePath returns p as is when it is valid UTF-8 of printable
// characters, and Go-quoted otherwise (a newline, a control character or
// an invalid byte would break a one-line message).
func QuotePath(p string) string {
	if !utf8.ValidString(p) {
		return strconv.Quote(p)
	}
	for _, r := range p {
		if !unicode.IsPrint(r) && r != ' ' {
			return strconv.Quote(p)
		}
	}
	return p
}

// size formats a byte count for messages: exact, with a readable unit
// when large.
func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%d bytes (%.1f GiB)", n, float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d bytes (%.1f KiB)", n, float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
