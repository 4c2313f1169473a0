package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/poison-nix/poison/internal/settings"
	"github.com/poison-nix/poison/provenance"
)

type provenanceOptions struct {
	journals []string
	filter   provenance.Filter
	json     bool
}

// maxLineWarnings is how many skipped journal lines are named one by one.
const maxLineWarnings = 20

func provenanceCommand() command {
	return command{
		name:    "provenance",
		summary: "list the builds that build journals recorded (which host built what, when)",
		usage:   "[--journal FILE]... [--host H] [--since T] [--until T] [--drv PATH] [--json]",
		setup: func(fs *flag.FlagSet) runFunc {
			var o provenanceOptions
			var journals stringsFlag
			var since, until string
			fs.Var(&journals, "journal", "read this journal `FILE` (repeatable; default: the journal setting: env POISON_JOURNAL, poison.toml journal, else "+defaultJournal+")")
			fs.StringVar(&o.filter.Host, "host", "", "only builds of this host `NAME` (or machine id)")
			fs.StringVar(&since, "since", "", "only builds that ended at or after `T`: RFC 3339, a date, or an age (7d, 36h)")
			fs.StringVar(&until, "until", "", "only builds that ended before `T`")
			fs.StringVar(&o.filter.Drv, "drv", "", "only builds of this .drv `PATH` (or producing this output path)")
			fs.BoolVar(&o.json, "json", false, "print the matching journal lines as they are (JSON lines: a journal itself)")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) > 0 {
					return usageErrorf("provenance takes no arguments, got %q; filter with --host, --since, --until, --drv", args[0])
				}
				var err error
				if o.filter.Since, o.filter.Until, err = parseWindow(e, since, until); err != nil {
					return err
				}
				if o.journals, err = journalPaths(e, journals); err != nil {
					return err
				}
				return runProvenance(ctx, e, o)
			}
		},
	}
}

// parseWindow reads --since and --until (either may be empty).
func parseWindow(e *env, since, until string) (s, u time.Time, err error) {
	now := e.now()
	if since != "" {
		if s, err = provenance.ParseTime(since, now); err != nil {
			return s, u, usageErrorf("--since: %v", err)
		}
	}
	if until != "" {
		if u, err = provenance.ParseTime(until, now); err != nil {
			return s, u, usageErrorf("--until: %v", err)
		}
	}
	if !s.IsZero() && !u.IsZero() && !s.Before(u) {
		return s, u, usageErrorf("--since %s is not before --until %s", s.Format(time.RFC3339), u.Format(time.RFC3339))
	}
	return s, u, nil
}

// journalPaths returns the journals given, else the journal setting
// (POISON_JOURNAL, poison.toml journal, else the default journal);
// relative paths are taken from the working directory.
func journalPaths(e *env, given []string) ([]string, error) {
	if len(given) == 0 {
		s, err := settings.Load(e.dir, e.getenv)
		if err != nil {
			return nil, withHint(err, "fix the value, or pass --journal FILE")
		}
		given = []string{s.Journal}
	}
	out := make([]string, len(given))
	for i, j := range given {
		if !filepath.IsAbs(j) && j != "-" {
			j = filepath.Join(e.dir, j)
		}
		out[i] = j
	}
	return out, nil
}

// readJournals streams every journal through fn, in the order given and
// file order within each. onBad decides about unreadable lines.
func readJournals(ctx context.Context, e *env, files []string, f provenance.Filter, onBad func(*provenance.LineError) error, fn func(*provenance.Entry) error) error {
	for _, name := range files {
		var r io.Reader
		display := name
		if name == "-" {
			r, display = e.stdin, "<stdin>"
		} else {
			fh, err := os.Open(name)
			if errors.Is(err, fs.ErrNotExist) {
				return withHint(fmt.Errorf("journal %s: no such file", name),
					"pass --journal FILE: each build machine keeps its own (poison hooks install --post-build)")
			}
			if err != nil {
				return fmt.Errorf("journal: %w", err)
			}
			defer fh.Close()
			if fi, err := fh.Stat(); err == nil && !fi.Mode().IsRegular() {
				return fmt.Errorf("journal %s: not a regular file", name)
			}
			r = fh
		}
		if err := provenance.Read(ctx, r, display, provenance.ReadOptions{Filter: f, OnError: onBad}, fn); err != nil {
			return err
		}
	}
	return nil
}

func runProvenance(ctx context.Context, e *env, o provenanceOptions) error {
	w := bufio.NewWriterSize(e.stdout, 1<<16)
	skipped := 0
	onBad := func(le *provenance.LineError) error {
		skipped++
		if skipped <= maxLineWarnings {
			fmt.Fprintf(e.stderr, "poison: warning: %s (line skipped)\n", le)
		}
		return nil
	}
	var buf []byte
	n := 0
	err := readJournals(ctx, e, o.journals, o.filter, onBad, func(en *provenance.Entry) error {
		n++
		buf = buf[:0]
		if o.json {
			buf = append(append(buf, en.Raw...), '\n')
		} else {
			buf = en.End.UTC().AppendFormat(buf, time.RFC3339)
			buf = append(buf, ' ')
			buf = append(buf, en.Host...)
			buf = append(buf, ' ')
			buf = append(buf, en.Drv...)
			for _, out := range en.Outputs {
				buf = append(buf, ' ')
				buf = append(buf, out...)
			}
			buf = append(buf, '\n')
		}
		_, err := w.Write(buf)
		return err
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	if skipped > maxLineWarnings {
		fmt.Fprintf(e.stderr, "poison: warning: %d more unreadable lines skipped\n", skipped-maxLineWarnings)
	}
	if skipped > 0 {
		fmt.Fprintf(e.stderr, "poison: %d build(s) listed; %d unreadable journal line(s) skipped\n", n, skipped)
	}
	return nil
}
