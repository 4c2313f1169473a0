package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/drvread"
	"github.com/poison-nix/poison/internal/settings"
	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/registry/lock"
)

type addOptions struct {
	registry string // absolute work tree
	commit   bool
	add      registry.AddOptions
	date     string
	builtOn  builtOnOptions
	json     bool
}

func addCommand() command {
	return command{
		name:    "add",
		summary: "write a new registry entry poisoning derivations (by .drv or output path)",
		usage:   "[--registry DIR] --reason TEXT [--author WHO] [--date YYYY-MM-DD] [--group NAME] [--ticket ID] [--name NAME]... [--slug SLUG] [--no-verify] [--commit] PATH... | --built-on HOST --since T [--until T] [--journal FILE]... --reason TEXT",
		setup: func(fs *flag.FlagSet) runFunc {
			var o addOptions
			var names stringsFlag
			sf := settings.Register(fs, "registry")
			fs.StringVar(&o.add.Reason, "reason", "", "what went wrong (required)")
			fs.StringVar(&o.add.Author, "author", "", "who files the entry, \"Name <email>\" (default: git user.name and user.email)")
			fs.StringVar(&o.date, "date", "", "day of the incident, `YYYY-MM-DD` (default: today, UTC)")
			fs.StringVar(&o.add.Group, "group", "", "coordinated build unit the derivations belong to")
			fs.StringVar(&o.add.Ticket, "ticket", "", "ticket `ID`")
			fs.Var(&names, "name", "also poison derivations by `NAME` (name-based fallback; repeatable)")
			fs.StringVar(&o.add.Slug, "slug", "", "file and branch name part (default: from the reason)")
			fs.BoolVar(&o.add.NoVerify, "no-verify", false, "record .drv paths that are not in the local store, without outputs")
			fs.BoolVar(&o.commit, "commit", false, "commit the entry on a new branch poison/SLUG")
			fs.BoolVar(&o.json, "json", false, "print the entry written (file, and with --commit branch and commit) as one JSON document")
			o.builtOn.register(fs)
			return func(ctx context.Context, e *env, args []string) error {
				o.add.Names = names
				o.add.Paths = args
				if o.builtOn.active() {
					if err := addBuiltOn(ctx, e, &o); err != nil {
						return err
					}
				}
				if strings.TrimSpace(o.add.Reason) == "" {
					return usageErrorf("add: --reason is required: say what went wrong")
				}
				if len(o.add.Paths) == 0 && len(o.add.Names) == 0 {
					return usageErrorf("add: give at least one .drv or output PATH, or --name")
				}
				if o.date != "" {
					d, err := time.Parse(time.DateOnly, o.date)
					if err != nil {
						return usageErrorf("add: --date %q: want YYYY-MM-DD", o.date)
					}
					o.add.Date = d
				}
				s, err := loadSettings(e, sf)
				if err != nil {
					return err
				}
				o.registry = s.RegistryDir(e.dir)
				return runAdd(ctx, e, o)
			}
		},
	}
}

func runAdd(ctx context.Context, e *env, o addOptions) error {
	dir := o.registry
	if o.add.Author == "" {
		o.add.Author = registry.DefaultAuthor()
		if o.add.Author == "" {
			return usageErrorf("add: --author is required: no git user.name and user.email are configured")
		}
	}
	cfgData, err := os.ReadFile(filepath.Join(dir, registry.ConfigFile))
	if err != nil {
		return withHint(fmt.Errorf("add: %w", err), "pass --registry DIR of a registry work tree (poison init creates one)")
	}
	cfg, _ := registry.DecodeConfig(cfgData) // Add reports its problems
	// Relative paths and result links name store paths; absolute paths
	// go as given (Add says what is wrong with them).
	storeDir := cfg.StoreDir
	if storeDir == "" {
		storeDir = lock.DefaultStoreDir
	}
	for i, p := range o.add.Paths {
		if fi, err := os.Lstat(p); filepath.IsAbs(p) && (err != nil || fi.Mode()&os.ModeSymlink == 0) {
			continue
		}
		sa, err := parseStoreArg(e, storeDir, p)
		if err != nil {
			return withHint(fmt.Errorf("add: %w", err), "pass .drv or output paths (result links work), and names with --name")
		}
		if sa.Name != "" {
			return withHint(fmt.Errorf("add: %q is a derivation name, not a path", p), "poison a name with --name "+p)
		}
		o.add.Paths[i] = sa.Path
	}
	o.add.Now = e.now()
	if !o.add.NoVerify {
		in := &nixInspector{env: e, storeDir: cfg.StoreDir, serialEnv: cfg.Env}
		o.add.Inspect = in.inspect
	}
	if o.builtOn.builds != nil {
		o.add.Inspect = o.builtOn.inspect(e, o.add.Inspect)
	}
	rel, err := registry.Add(ctx, dir, o.add)
	if err != nil {
		return err
	}
	shown := displayPath(e, filepath.Join(o.registry, filepath.FromSlash(rel)))
	report := addJSON{File: shown, Entry: rel}
	if !o.json {
		fmt.Fprintln(e.stdout, shown)
	}
	if !o.commit {
		if o.json {
			return writeReport(e.stdout, true, report, nil)
		}
		return nil
	}
	stem := strings.TrimSuffix(path.Base(rel), ".toml")
	slug := stem[len("2006-01-02-"):]
	msg := "poison: " + firstLine(o.add.Reason) + "\n\nAdds " + rel + ".\n"
	branch, hash, err := registry.CommitEntry(ctx, dir, rel, slug, o.add.Author, msg, e.now())
	if err != nil {
		return withHint(err, "the entry file was written; commit it yourself or remove it")
	}
	fmt.Fprintf(e.stderr, "poison: committed %s on branch %s (%s)\n", rel, branch, hash[:12])
	if o.json {
		report.Branch, report.Commit = branch, hash
		return writeReport(e.stdout, true, report, nil)
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 72 {
		s = s[:72]
	}
	return s
}

// nixInspector finds derivations and outputs in the local Nix store and
// returns their canonical paths (every serial attribute removed).
type nixInspector struct {
	env       *env
	storeDir  string
	serialEnv string
}

var errNotInStore = errors.New("not in the local Nix store")

func (n *nixInspector) inspect(ctx context.Context, p string) (string, []string, error) {
	drv := p
	if !strings.HasSuffix(p, ".drv") {
		d, err := n.deriver(ctx, p)
		if err != nil {
			return "", nil, err
		}
		drv = d
	}
	// The project's own ATerm parser reads the .drv (builder/drvread, and
	// builder.LoadClosure for its closure).
	outs, _, err := drvread.Outputs(drv)
	if errors.Is(err, fs.ErrNotExist) {
		if drv == p {
			return "", nil, fmt.Errorf("%w; instantiate it first, or pass --no-verify to record the .drv path without outputs", errNotInStore)
		}
		return "", nil, fmt.Errorf("its deriver %s is not in the local store; instantiate it, or give the .drv path with --no-verify", drv)
	}
	if err != nil {
		return "", nil, err
	}
	if drv != p && !slices.Contains(outs, p) {
		return "", nil, fmt.Errorf("%s is not an output of its deriver %s", p, drv)
	}
	c, err := builder.LoadClosure(ctx, builder.LoadOptions{StoreDir: n.storeDir}, []string{drv})
	if err != nil {
		return "", nil, fmt.Errorf("read closure of %s: %w", drv, err)
	}
	carried, err := c.CarriedSerials(n.serialEnv)
	if err != nil {
		return "", nil, fmt.Errorf("read closure of %s: %w", drv, err)
	}
	serial := false
	for _, v := range carried {
		serial = serial || v > 0
	}
	if !serial {
		return drv, outs, nil // never poisoned: canonical already
	}
	return n.canonical(ctx, c, drv, outs)
}

// deriver asks the store for the deriver of an output path.
func (n *nixInspector) deriver(ctx context.Context, p string) (string, error) {
	cmd := exec.CommandContext(ctx, "nix-store", "--query", "--deriver", p)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "is not valid") || strings.Contains(msg, "does not exist") {
			return "", fmt.Errorf("%w; build or substitute it first, or give its .drv path", errNotInStore)
		}
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("nix-store --query --deriver: %s", firstLine(msg))
	}
	d := strings.TrimSpace(string(out))
	if d == "" || d == "unknown-deriver" {
		return "", errors.New("the local store knows no deriver for it; give the .drv path instead")
	}
	return d, nil
}

// canonical rewrites the closure with an empty lock, which removes every
// serial attribute, and maps drv and its outputs to their canonical paths.
func (n *nixInspector) canonical(ctx context.Context, c *builder.Closure, drv string, outs []string) (string, []string, error) {
	res, err := builder.Rewrite(ctx, c, builder.Options{Lock: lock.New(lock.Source{}, n.serialEnv)})
	if err != nil {
		return "", nil, fmt.Errorf("canonicalise %s: %w", drv, err)
	}
	cd, ok := res.DrvPaths[drv]
	if !ok {
		return "", nil, fmt.Errorf("canonicalise %s: the rewrite did not return it", drv)
	}
	var cout []string
	for _, o := range outs {
		co, ok := res.OutPaths[o]
		if !ok {
			return "", nil, fmt.Errorf("canonicalise %s: no canonical path for output %s", drv, o)
		}
		cout = append(cout, co)
	}
	sort.Strings(cout)
	return cd, cout, nil
}

// addJSON is `poison add --json` (docs/json.md).
type addJSON struct {
	File   string `json:"file"`   // the entry file, as a path from the working directory
	Entry  string `json:"entry"`  // the same, relative to the registry (entries/...)
	Branch string `json:"branch"` // with --commit
	Commit string `json:"commit"` // with --commit
}
