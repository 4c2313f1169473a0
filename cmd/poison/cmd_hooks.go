package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/poison-nix/poison/hooks"
	"github.com/poison-nix/poison/internal/settings"
)

type hooksInstallOptions struct {
	pathLookup bool
	registry   string // as shown
	dir        string
	force      bool
	poison     string
}

func hooksCommand() command {
	return command{
		name:    "hooks",
		words:   []string{"install"},
		summary: "install the git hooks: pre-commit in a registry work tree, pre-receive in a bare repository",
		usage:   "install [--registry DIR] [--force] [--poison PATH | --path-lookup]",
		setup: func(fs *flag.FlagSet) runFunc {
			var o hooksInstallOptions
			var pb postBuildOptions
			fs.StringVar(&pb.path, "post-build", "", "write Nix's post-build-hook (the build journal) to `FILE` instead of git hooks")
			fs.StringVar(&pb.journal, "journal", "", "with --post-build: the journal `FILE` the hook appends to (default "+defaultJournal+")")
			fs.StringVar(&pb.host, "host", "", "with --post-build: record this host `NAME` instead of the hostname")
			sf := settings.Register(fs, "registry")
			fs.BoolVar(&o.force, "force", false, "replace an existing hook that differs from poison's")
			fs.StringVar(&o.poison, "poison", "", "write this poison binary `PATH` into the hook (default: the running poison's absolute path; $POISON still overrides it when the hook runs)")
			fs.BoolVar(&o.pathLookup, "path-lookup", false, "write plain 'poison' into the hook: it runs whatever poison git's $PATH has")
			return func(ctx context.Context, e *env, args []string) error {
				switch {
				case len(args) == 0:
					return withHint(usageErrorf("hooks: want a subcommand: poison hooks install"), "run 'poison hooks --help' for usage")
				case args[0] != "install":
					return usageErrorf("hooks: unknown subcommand %q; want install", args[0])
				case len(args) > 1:
					return usageErrorf("hooks install takes no arguments, got %q", args[1])
				}
				if pb.path != "" {
					return runHooksInstallPostBuild(e, pb, o.poison, o.force)
				}
				s, err := loadSettings(e, sf)
				if err != nil {
					return err
				}
				o.dir = s.RegistryDir(e.dir)
				o.registry = displayPath(e, o.dir)
				return runHooksInstall(ctx, e, o)
			}
		},
	}
}

func runHooksInstall(ctx context.Context, e *env, o hooksInstallOptions) error {
	dir := o.dir
	poison, err := hookBinary(ctx, e, o)
	if err != nil {
		return err
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

// hookBinary picks the poison binary the hook runs and checks that it
// runs: --poison, else (unless --path-lookup) the running binary. A binary
// that does not run is refused; with $PATH lookup, a $PATH without poison
// is a warning (git's $PATH may differ from this shell's).
func hookBinary(ctx context.Context, e *env, o hooksInstallOptions) (string, error) {
	if o.pathLookup && o.poison != "" {
		return "", usageErrorf("hooks install: --poison and --path-lookup exclude each other")
	}
	poison := o.poison
	switch {
	case poison != "":
		poison = absPath(e, poison)
	case o.pathLookup:
	case e.exe != "":
		poison = e.exe
	default:
		fmt.Fprintf(e.stderr, "poison: warning: hooks install: cannot tell where this poison binary is; the hook runs poison from git's $PATH\n")
	}
	if poison == "" {
		if _, err := exec.LookPath("poison"); err != nil {
			fmt.Fprintf(e.stderr, "poison: warning: hooks install: no poison in this $PATH: the hook fails (and refuses every commit or push) until git's $PATH has one; or pass --poison PATH\n")
		}
		return "", nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, poison, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "poison ") {
		msg := strings.TrimSpace(string(out))
		if err != nil {
			msg = err.Error()
		}
		return "", withHint(fmt.Errorf("hooks install: %s does not run as poison (%s): the hook would refuse every commit", poison, firstLine(msg)),
			"pass --poison PATH of a working poison binary, or --path-lookup")
	}
	return poison, nil
}

// hooksRel returns path relative to the working directory where it lies below
// it, else path itself.
func hooksRel(e *env, path string) string {
	if r, err := filepath.Rel(e.dir, path); err == nil && r != ".." && !strings.HasPrefix(r, "../") {
		return r
	}
	return path
}
