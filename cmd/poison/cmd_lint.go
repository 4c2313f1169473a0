package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"

	git "github.com/go-git/go-git/v5"
	"github.com/poison-nix/poison/internal/settings"
	"github.com/poison-nix/poison/registry"
)

type lintOptions struct {
	registry string // as shown
	dir      string
	base     string
	rev      string
	ff       bool
	format   string
	limits   registry.Limits
}

func lintCommand() command {
	return command{
		name:    "lint",
		summary: "validate a registry: every entry, registry.toml and (with --base) append-only history",
		usage: "[--registry DIR] [--rev REV] [--base REV [--fast-forward]] [--json | --format text|json] [--max-entries N] [--max-tree-depth N]\n" +
			"              [--max-entry-size SIZE] [--max-tree-size SIZE] [--max-registry-bytes SIZE]",
		setup: func(fs *flag.FlagSet) runFunc {
			var o lintOptions
			sf := settings.Register(fs, append([]string{"registry"}, settings.LimitSettings...)...)
			fs.StringVar(&o.base, "base", "", "also refuse history since `REV` that deleted, renamed or modified an entry")
			fs.BoolVar(&o.ff, "fast-forward", false, "with --base: also require REV to be an ancestor (for pushes to a protected branch)")
			fs.StringVar(&o.rev, "rev", "", "lint the tree of commit `REV` instead of the work tree (works in a bare repository)")
			fs.StringVar(&o.format, "format", "text", "output `FORMAT`: text (one line per problem) or json (one object per line)")
			asJSON := fs.Bool("json", false, "print the problems as JSON, one object per line on stdout (the same as --format json)")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) > 0 {
					return usageErrorf("lint takes no arguments, got %q", args[0])
				}
				if o.ff && o.base == "" {
					return usageErrorf("--fast-forward needs --base REV")
				}
				if *asJSON {
					o.format = "json"
				}
				if o.format != "text" && o.format != "json" {
					return usageErrorf("--format %q: want text or json", o.format)
				}
				s, err := loadSettings(e, sf)
				if err != nil {
					return err
				}
				o.dir = s.RegistryDir(e.dir)
				o.registry = displayPath(e, o.dir)
				o.limits = registryLimits(s)
				return runLint(ctx, e, o)
			}
		},
	}
}

func runLint(ctx context.Context, e *env, o lintOptions) error {
	dir := o.dir
	var repo *git.Repository
	if o.rev != "" || o.base != "" {
		r, err := registry.OpenGitRepo(dir)
		if err != nil {
			return withHint(fmt.Errorf("lint: %w", err), "--base and --rev need the registry's git repository")
		}
		repo = r
	}
	// The work tree, or with --rev the tree of a commit (bare repositories
	// too, for the pre-receive hook).
	head := "HEAD"
	var reg *registry.Registry
	var err error
	if o.rev != "" {
		fsys, commit, terr := registry.TreeFS(repo, o.rev, o.limits)
		if terr != nil {
			return withHint(fmt.Errorf("lint --rev: %w", terr), "--rev takes a commit, branch or tag of the registry")
		}
		defer fsys.Close()
		head = commit
		reg, err = registry.Load(fsys, registry.LoadOptions{Now: e.now(), Limits: o.limits})
	} else {
		reg, err = registry.LoadDir(dir, registry.LoadOptions{Now: e.now(), Limits: o.limits})
	}
	var ps registry.Problems
	isProblems := errors.As(err, &ps)
	if reg == nil && !isProblems {
		err = fmt.Errorf("lint %s: %w", o.registry, err)
		if errors.Is(err, registry.ErrNotRegistry) || errors.Is(err, fs.ErrNotExist) {
			return withHint(err, "pass --registry DIR of a registry work tree")
		}
		return err // the registry's content (a refused tree, a limit): its one line says what to do
	}
	if reg == nil { // registry.toml is invalid: nothing else can be read
		reg = &registry.Registry{}
	}
	problems := append(registry.Problems{}, reg.Warnings...)
	problems = append(problems, ps...)
	problems.Sort()
	if o.base != "" {
		hist, err := registry.CheckHistory(ctx, repo, o.base, head, registry.HistoryOptions{FastForward: o.ff})
		if err != nil {
			return withHint(fmt.Errorf("lint --base %s: %w", o.base, err), "--base takes a revision of the registry's git history (a commit, branch or tag)")
		}
		problems = append(problems, hist...)
	}
	printProblems(e, o.format, problems)
	nerr := len(problems.Errors())
	if o.format == "text" {
		fmt.Fprintf(e.stderr, "poison: lint: %d entries, %d errors, %d warnings\n", len(reg.Entries), nerr, len(problems)-nerr)
	}
	if nerr > 0 {
		return silentExit(exitError)
	}
	return nil
}

// printProblems writes problems as "poison: error|warning: PATH:LINE:COL: ..."
// lines on stderr, or as JSON objects (one per line) on stdout.
func printProblems(e *env, format string, problems registry.Problems) {
	if format == "json" {
		for _, p := range problems {
			e.stdout.Write(p.JSON())
			io.WriteString(e.stdout, "\n")
		}
		return
	}
	for _, p := range problems {
		fmt.Fprintf(e.stderr, "poison: %s: %s\n", p.Severity, p)
	}
}

// registryLimits are the limits the settings give to reading a registry
// (zero fields take registry.DefaultLimits).
func registryLimits(s settings.Settings) registry.Limits {
	return registry.Limits{
		Entries:    s.MaxEntries,
		Depth:      int(min(s.MaxTreeDepth, math.MaxInt32)),
		FileSize:   s.MaxEntrySize,
		TreeSize:   s.MaxTreeSize,
		TotalBytes: s.MaxRegistryBytes,
	}
}
