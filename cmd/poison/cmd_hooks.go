package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/poison-nix/poison/hooks"
)

type hooksInstallOptions struct {
	registry string
	force    bool
	poison   string
}

func hooksCommand() command {
	c := command{
		name:    "hooks",
		summary: "install the git hooks: pre-commit in a registry work tree, pre-receive in a bare repository",
		usage:   "install [--registry DIR] [--force] [--poison PATH]",
	}
	c.run = func(ctx context.Context, e *env, args []string) error {
		var o hooksInstallOptions
		var pb postBuildOptions
		fs := newFlags(e, &c)
		fs.StringVar(&pb.path, "post-build", "", "write Nix's post-build-hook (the build journal) to `FILE` instead of git hooks")
		fs.StringVar(&pb.journal, "journal", "", "with --post-build: the journal `FILE` the hook appends to (default "+defaultJournal+")")
		fs.StringVar(&pb.host, "host", "", "with --post-build: record this host `NAME` instead of the hostname")
		fs.StringVar(&o.registry, "registry", ".", "the registry's work tree or bare repository `DIR`")
		fs.BoolVar(&o.force, "force", false, "replace an existing hook that differs from poison's")
		fs.StringVar(&o.poison, "poison", "", "write this poison binary `PATH` into the hook (default: $POISON, else poison from the hook's $PATH)")
		switch {
		case len(args) > 0 && args[0] == "install":
			args = args[1:]
		case len(args) > 0 && !strings.HasPrefix(args[0], "-"):
			return usageErrorf("hooks: unknown subcommand %q; want install", args[0])
		default: // no subcommand: --help prints the usage, anything else is an error
			if err := parseFlags(e, &c, fs, args); err != nil {
				return err
			}
			return withHint(usageErrorf("hooks: want a subcommand: poison hooks install"), "run 'poison hooks --help' for usage")
		}
		if err := parseFlags(e, &c, fs, args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usageErrorf("hooks install takes no arguments, got %q", fs.Arg(0))
		}
		if pb.path != "" {
			return runHooksInstallPostBuild(e, pb, o.poison, o.force)
		}
		return runHooksInstall(ctx, e, o)
	}
	return c
}

func runHooksInstall(ctx context.Context, e *env, o hooksInstallOptions) error {
	dir := o.registry
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(e.dir, dir)
	}
	poison := o.poison
	if poison != "" && !filepath.IsAbs(poison) {
		poison = filepath.Join(e.dir, poison)
	}
	results, err := hooks.Install(ctx, dir, hooks.Options{Force: o.force, Poison: poison})
	var conflict *hooks.ConflictError
	switch {
	case errors.As(err, &conflict):
		return withHint(fmt.Errorf("hooks install: %s: a different %s hook is already installed", hooksRel(e, conflict.Path), conflict.Name),
			"pass --force to replace it (save it first if it does more than poison's hook)")
	case errors.Is(err, hooks.ErrNotRepository):
		return withHint(fmt.Errorf("hooks install: %s: not a git repository", o.registry),
			"pass --registry DIR: a registry's work tree (made by poison init) or its bare repository")
	case errors.Is(err, hooks.ErrNotRegistry):
		return withHint(fmt.Errorf("hooks install: %w", err),
			"pass --registry DIR of a registry made by poison init; its pre-commit hook would refuse every commit here")
	case err != nil:
		return fmt.Errorf("hooks install: %w", err)
	}
	for _, r := range results {
		switch r.Action {
		case hooks.Unchanged:
			fmt.Fprintf(e.stdout, "unchanged %s (already installed)\n", hooksRel(e, r.Path))
		default:
			fmt.Fprintf(e.stdout, "%s %s\n", r.Action, hooksRel(e, r.Path))
		}
	}
	return nil
}

// hooksRel returns path relative to the working directory where it lies below
// it, else path itself.
func hooksRel(e *env, path string) string {
	if r, err := filepath.Rel(e.dir, path); err == nil && r != ".." && !strings.HasPrefix(r, "../") {
		return r
	}
	return path
}
