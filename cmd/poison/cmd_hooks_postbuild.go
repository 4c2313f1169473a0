package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/poison-nix/poison/hooks"
)

// postBuildOptions are the flags of 'poison hooks install --post-build'.
type postBuildOptions struct {
	path    string // where to write the hook script
	journal string
	host    string
}

// runHooksInstallPostBuild writes Nix's post-build-hook script and prints
// the nix.conf line that enables it; nix.conf itself is left to the
// administrator.
func runHooksInstallPostBuild(e *env, o postBuildOptions, poison string, force bool) error {
	path := o.path
	if !filepath.IsAbs(path) {
		path = filepath.Join(e.dir, path)
	}
	if poison != "" && !filepath.IsAbs(poison) {
		poison = filepath.Join(e.dir, poison)
	}
	if poison == "" {
		self, err := os.Executable()
		if err != nil {
			return withHint(fmt.Errorf("hooks install --post-build: cannot tell where this poison binary is: %w", err), "pass --poison PATH")
		}
		poison = self
	}
	journal := o.journal
	if journal != "" && !filepath.IsAbs(journal) {
		journal = filepath.Join(e.dir, journal)
	}
	// poison-journal-hook, installed beside poison, starts faster.
	hook := filepath.Join(filepath.Dir(poison), "poison-journal-hook")
	if fi, err := os.Stat(hook); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		hook = ""
	}
	r, err := hooks.InstallPostBuild(path, hooks.PostBuildOptions{Poison: poison, Hook: hook, Journal: journal, Host: o.host, Force: force})
	var conflict *hooks.ConflictError
	switch {
	case errors.As(err, &conflict):
		return withHint(fmt.Errorf("hooks install: %s: a different file is already there", hooksRel(e, conflict.Path)),
			"pass --force to replace it, or another --post-build PATH")
	case err != nil:
		return fmt.Errorf("hooks install --post-build: %w", err)
	}
	fmt.Fprintf(e.stdout, "%s %s\n", r.Action, r.Path)
	fmt.Fprintf(e.stdout, "enable it in nix.conf, then restart the nix-daemon:\n  post-build-hook = %s\n", r.Path)
	return nil
}
