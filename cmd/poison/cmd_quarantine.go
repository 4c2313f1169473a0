package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/poison-nix/poison/binarycache"
	"github.com/poison-nix/poison/internal/settings"
)

type quarantineOptions struct {
	settings settings.Settings
	cache    string
	dryRun   bool
	restore  bool
	json     bool
}

func quarantineCommand() command {
	return command{
		name:    "quarantine",
		summary: "move the narinfos of poisoned outputs in a binary cache you own aside (reversible)",
		usage:   "--cache URI [--lock FILE] [--dry-run] [--restore] [--json]",
		setup: func(fs *flag.FlagSet) runFunc {
			var o quarantineOptions
			sf := settings.Register(fs, "lock", "max-age")
			fs.StringVar(&o.cache, "cache", "", "the binary cache `URI`: file:///DIR (required)")
			fs.BoolVar(&o.dryRun, "dry-run", false, "print what would move; change nothing")
			fs.BoolVar(&o.restore, "restore", false, "put back every narinfo quarantine moved (no lock needed)")
			fs.BoolVar(&o.json, "json", false, "print one JSON document instead of text")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) > 0 {
					return usageErrorf("quarantine takes no arguments, got %q", args[0])
				}
				if o.cache == "" {
					return withHint(usageErrorf("quarantine: --cache URI is required"), "pass the binary cache you own, e.g. --cache file:///srv/nix-cache")
				}
				var err error
				if o.settings, err = loadSettings(e, sf); err != nil {
					return err
				}
				return runQuarantine(ctx, e, o)
			}
		},
	}
}

// cacheDir parses --cache for commands that change a cache: file:// only.
func cacheDir(e *env, cmd, uri string) (string, error) {
	loc, err := binarycache.ParseURI(uri)
	if err != nil {
		return "", usageErrorf("%s: %v", cmd, err)
	}
	if loc.Dir == "" {
		return "", withHint(usageErrorf("%s: %s: poison changes only file:// caches (it needs to move files)", cmd, uri),
			"run it where the cache's directory is, with --cache file:///DIR; 'poison check --cache URI' reads an HTTP cache")
	}
	if !filepath.IsAbs(loc.Dir) {
		loc.Dir = filepath.Join(e.dir, loc.Dir)
	}
	return loc.Dir, nil
}

func runQuarantine(ctx context.Context, e *env, o quarantineOptions) error {
	dir, err := cacheDir(e, "quarantine", o.cache)
	if err != nil {
		return err
	}
	var problems []binarycache.Problem
	if o.restore {
		res, err := binarycache.Restore(ctx, dir, o.dryRun)
		if err != nil {
			return cacheError("quarantine --restore", err)
		}
		problems = res.Problems
		verb := "restored"
		if o.dryRun {
			verb = "would restore"
		}
		err = writeReport(e.stdout, o.json, res, func(w io.Writer) {
			for _, m := range res.Restored {
				fmt.Fprintf(w, "%s %s\n", verb, m.StorePath)
			}
		})
		if err != nil {
			return err
		}
		if !o.json {
			fmt.Fprintf(e.stderr, "poison: %d narinfo(s) %s in %s\n", len(res.Restored), verb, dir)
		}
	} else {
		lk, err := readLock(e, "quarantine", o.settings)
		if err != nil {
			return err
		}
		src := fmt.Sprintf("%s (registry %s at %s)", displayPath(e, o.settings.Lock), lk.Registry.URL, lk.Registry.Commit)
		res, err := binarycache.Quarantine(ctx, dir, binarycache.FromLock(lk), binarycache.QuarantineOptions{Source: src, Now: e.now(), DryRun: o.dryRun})
		if err != nil {
			return cacheError("quarantine", err)
		}
		problems = res.Problems
		verb := "quarantined"
		if o.dryRun {
			verb = "would quarantine"
		}
		err = writeReport(e.stdout, o.json, res, func(w io.Writer) {
			for _, m := range res.Moved {
				fmt.Fprintf(w, "%s %s: %s\n", verb, m.StorePath, m.Why)
			}
		})
		if err != nil {
			return err
		}
		if !o.json {
			fmt.Fprintf(e.stderr, "poison: %d narinfo(s) %s into %s (%d already there)\n", len(res.Moved), verb, filepath.Join(dir, binarycache.QuarantineDir), len(res.Already))
		}
	}
	for _, p := range problems {
		fmt.Fprintf(e.stderr, "poison: warning: %s: %s\n", p.Name, p.Err)
	}
	if len(problems) > 0 {
		return withHint(fmt.Errorf("%d narinfo(s) could not be judged or moved", len(problems)), "see the warnings above")
	}
	return nil
}

func cacheError(cmd string, err error) error {
	if errors.Is(err, binarycache.ErrNotCache) {
		return withHint(fmt.Errorf("%s: %w", cmd, err), "pass the directory that holds nix-cache-info (what nix copy --to file://DIR made)")
	}
	return fmt.Errorf("%s: %w", cmd, err)
}
