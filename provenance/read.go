package provenance

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// LineError is a journal line that could not be read: too long, not a
// JSON object, or a record that fails Validate.
type LineError struct {
	File string
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Entry is a record and where it was read.
type Entry struct {
	Record
	File string
	Line int
	// Raw is the line as read, without its newline: a valid journal line
	// (unknown fields of a newer poison kept). It is valid only until the
	// callback returns.
	Raw []byte
}

// Filter selects records. Zero fields select everything.
type Filter struct {
	// Host matches Record.Host or Record.MachineID exactly.
	Host string
	// Since and Until bound the end time of a build: Since <= End < Until.
	Since, Until time.Time
	// Drv matches the .drv path, or one of the output paths.
	Drv string
}

// Match reports whether r passes the filter.
func (f *Filter) Match(r *Record) bool {
	if f.Host != "" && r.Host != f.Host && r.MachineID != f.Host {
		return false
	}
	if !f.Since.IsZero() && r.End.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.End.Before(f.Until) {
		return false
	}
	if f.Drv != "" && r.Drv != f.Drv {
		found := false
		for _, o := range r.Outputs {
			if o == f.Drv {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// ReadOptions configure Read.
type ReadOptions struct {
	Filter Filter
	// OnError is called for every line that cannot be read. Returning nil
	// skips the line; returning an error stops Read with it. When nil, the
	// first bad line stops Read.
	OnError func(*LineError) error
}

// Read streams the journal r (named name in errors) and calls fn for each
// record that passes opts.Filter, in file order. Every line must be a JSON
// object of a known format version; a line that fails the host filter is
// not checked further, one that passes it is validated whole, so a bad
// line of the host asked about is always reported. Lines longer than MaxLine
// are never buffered whole: they are reported and skipped. Empty lines are
// ignored. A final line without its newline is read like any other.
func Read(ctx context.Context, r io.Reader, name string, opts ReadOptions, fn func(*Entry) error) error {
	br := bufio.NewReaderSize(r, 1<<20)
	dec := newDecoder()
	onErr := opts.OnError
	if onErr == nil {
		onErr = func(e *LineError) error { return e }
	}
	var ent Entry
	ent.File = name
	for n := 1; ; n++ {
		if n&0xfff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		raw, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || len(raw) > MaxLine {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				return fmt.Errorf("read %s: %w", name, err)
			}
			if e := onErr(&LineError{File: name, Line: n, Err: fmt.Errorf("line longer than %d bytes", MaxLine)}); e != nil {
				return e
			}
			if err == io.EOF {
				return nil
			}
			continue
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("read %s: %w", name, err)
		}
		eof := err == io.EOF
		text := bytes.TrimRight(raw, "\r\n")
		if len(bytes.TrimSpace(text)) > 0 {
			ent.Record = Record{}
			if ok, perr := dec.decode(text, &ent.Record, &opts.Filter); perr != nil {
				if e := onErr(&LineError{File: name, Line: n, Err: perr}); e != nil {
					return e
				}
			} else if ok {
				ent.Line = n
				ent.Raw = text
				if err := fn(&ent); err != nil {
					return err
				}
			}
		}
		if eof {
			return nil
		}
	}
}

// ParseTime reads a time bound as poison's flags take it: RFC 3339
// ("2026-11-25T08:00:00Z"), a date ("2026-11-25", midnight UTC), or an age
// before now: a whole number and a unit, s m h d w ("7d", "36h").
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, errors.New("empty time")
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	unit := s[len(s)-1]
	num := s[:len(s)-1]
	mult := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[unit]
	if mult != 0 && num != "" && len(num) <= 9 {
		v := 0
		ok := true
		for i := 0; i < len(num); i++ {
			if num[i] < '0' || num[i] > '9' {
				ok = false
				break
			}
			v = v*10 + int(num[i]-'0')
		}
		if ok {
			return now.Add(-time.Duration(v) * mult), nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-25T08:00:00Z), a date (2026-11-25) or an age (7d, 36h, 90m)", truncate(s))
}
