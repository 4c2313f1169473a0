package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// InspectFunc resolves a store path given to Add: for a .drv path or an
// output path it returns the canonical .drv path (docs/formats.md: every serial
// attribute removed) and that derivation's canonical output paths. It
// returns an error wrapping fs.ErrNotExist when the path is not in the
// store.
type InspectFunc func(ctx context.Context, path string) (drv string, outputs []string, err error)

// AddOptions describes one new entry.
type AddOptions struct {
	Reason string
	Author string
	// Date is the day of the incident; Now's day when zero.
	Date   time.Time
	Group  string
	Ticket string
	Names  []string
	// Paths are .drv or output paths, resolved through Inspect.
	Paths []string
	// Slug names the file; derived from Reason when empty.
	Slug string
	// NoVerify records .drv paths as given, without outputs and without
	// Inspect (lint then warns). Output paths are refused.
	NoVerify bool
	Inspect  InspectFunc
	// Now is the current time, for the default date and the date rule.
	Now time.Time
}

var slugRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`) })

// Slugify turns text into a file name part: lowercase ASCII letters and
// digits joined by single dashes, at most 48 bytes.
func Slugify(text string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(text) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			if b.Len() >= 48 {
				break
			}
			continue
		}
		dash = true
	}
	s := strings.Trim(b.String(), "-")
	if s == "" {
		s = "entry"
	}
	return s
}

// Add writes a new entry into the registry work tree dir and returns its
// path relative to dir (entries/YYYY/MM/YYYY-MM-DD-SLUG.toml). The entry
// is validated with the lint rules before anything is written; the file is
// created atomically and never overwrites another: a taken name gets a
// numeric suffix.
func Add(ctx context.Context, dir string, opts AddOptions) (string, error) {
	cfgData, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("add: %s: %w; run 'poison init DIR' or pass --registry DIR", dir, ErrNotRegistry)
	}
	if err != nil {
		return "", fmt.Errorf("add: %w", err)
	}
	cfg, ps := DecodeConfig(cfgData)
	if errs := ps.Errors(); len(errs) > 0 {
		return "", fmt.Errorf("add: %w", errs)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	date := opts.Date
	if date.IsZero() {
		date = opts.Now.UTC()
	}
	date = time.Date(date.Year(), date.Month(), date.Day(), 0, 0, 0, 0, time.UTC)
	slug := opts.Slug
	if slug == "" {
		slug = Slugify(opts.Reason)
	} else if !slugRE().MatchString(slug) {
		return "", fmt.Errorf("add: slug %q: use lowercase letters, digits and dashes (at most 64)", truncate(slug))
	}
	if len(opts.Paths) == 0 && len(opts.Names) == 0 {
		return "", errors.New("add: nothing to poison: give a .drv or output path, or --name")
	}

	e := &Entry{Reason: opts.Reason, Author: opts.Author, Date: date, Group: opts.Group, Ticket: opts.Ticket, Names: opts.Names}
	byDrv := map[string]int{}
	for _, p := range opts.Paths {
		var drv string
		var outs []string
		switch {
		case opts.NoVerify:
			if _, err := ParseDrvPath(cfg.StoreDir, p); err != nil {
				return "", fmt.Errorf("add %s: %w; --no-verify records only .drv paths", p, err)
			}
			drv = p
		case opts.Inspect == nil:
			return "", fmt.Errorf("add %s: no way to inspect the store; pass --no-verify to record a .drv path as given", p)
		default:
			if _, err := ParseStorePath(cfg.StoreDir, p); err != nil {
				return "", fmt.Errorf("add %s: %w", p, err)
			}
			drv, outs, err = opts.Inspect(ctx, p)
			if err != nil {
				return "", fmt.Errorf("add %s: %w", p, err)
			}
		}
		if i, ok := byDrv[drv]; ok {
			for _, o := range outs {
				if !contains(e.Derivations[i].Outputs, o) {
					e.Derivations[i].Outputs = append(e.Derivations[i].Outputs, o)
				}
			}
			continue
		}
		byDrv[drv] = len(e.Derivations)
		e.Derivations = append(e.Derivations, Derivation{Path: drv, Outputs: outs})
	}

	dirRel := path.Join(EntriesDir, date.Format("2006"), date.Format("01"))
	stem := date.Format(time.DateOnly) + "-" + slug
	data := EncodeEntry(e)
	// Fail closed: what we write must pass lint.
	if _, ps := DecodeEntry(path.Join(dirRel, stem+".toml"), data, cfg, opts.Now); len(ps.Errors()) > 0 {
		var msgs []string
		for _, p := range ps.Errors() {
			if p.Key != "" {
				msgs = append(msgs, p.Key+": "+p.Message)
			} else {
				msgs = append(msgs, p.Message)
			}
		}
		return "", fmt.Errorf("add: %s", strings.Join(msgs, "\nadd: "))
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	abs := filepath.Join(dir, filepath.FromSlash(dirRel))
	if err := mkdirInside(dir, dirRel); err != nil {
		return "", fmt.Errorf("add: %w", err)
	}
	for n := 1; n < 100; n++ {
		name := stem + ".toml"
		if n > 1 {
			name = stem + "-" + strconv.Itoa(n) + ".toml"
		}
		err := createExclusive(filepath.Join(abs, name), data)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("add: %w", err)
		}
		return path.Join(dirRel, name), nil
	}
	return "", fmt.Errorf("add: %s/%s-*.toml: 99 entries with this name exist; pass --slug", dirRel, stem)
}

// mkdirInside creates the slash-separated directory rel under root,
// refusing to follow a symlink on the way: nothing in a registry can make
// poison write outside it.
func mkdirInside(root, rel string) error {
	cur := root
	for _, part := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symlink; entries must be plain directories inside the registry (remove the link)", cur)
		case !fi.IsDir():
			return fmt.Errorf("%s is not a directory", cur)
		}
	}
	return nil
}

// createExclusive writes data to a temporary file and links it to name,
// which fails if name exists: the entry appears complete or not at all,
// and never replaces another.
func createExclusive(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".poison-add-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Link(tmp.Name(), name)
}

// EncodeEntry returns the canonical TOML text of e (the format poison add
// writes).
func EncodeEntry(e *Entry) []byte {
	var b strings.Builder
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-6s = %s\n", k, tomlString(v))
		}
	}
	kv("reason", e.Reason)
	kv("author", e.Author)
	fmt.Fprintf(&b, "%-6s = %s\n", "date", e.Date.Format(time.DateOnly))
	kv("group", e.Group)
	kv("ticket", e.Ticket)
	if len(e.Names) > 0 {
		fmt.Fprintf(&b, "%-6s = %s\n", "names", tomlList(e.Names))
	}
	for _, d := range e.Derivations {
		fmt.Fprintf(&b, "\n[[derivation]]\npath    = %s\n", tomlString(d.Path))
		if len(d.Outputs) > 0 {
			fmt.Fprintf(&b, "outputs = %s\n", tomlList(d.Outputs))
		}
	}
	return []byte(b.String())
}

func tomlList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = tomlString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
