package hooks

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// PostBuild names Nix's post-build-hook that poison provides: a script that
// runs poison-journal-hook (or `poison journal-hook`), which appends one line per build to a build
// journal (docs/provenance.md).
const PostBuild = "post-build-hook"

// PostBuildOptions configure the post-build-hook script.
type PostBuildOptions struct {
	// Poison is the absolute path of the poison binary: the nix-daemon's
	// $PATH rarely has it. Required unless Hook is set.
	Poison string
	// Hook is the absolute path of the poison-journal-hook binary, which
	// starts faster than poison; when set the script runs it instead of
	// 'poison journal-hook'.
	Hook string
	// Journal is the absolute path of the journal; empty: poison's default.
	Journal string
	// Host is recorded in place of the hostname (boards that share one).
	Host string
	// Force replaces a different file at the path.
	Force bool
}

var hostRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`) })

// PostBuildScript returns the post-build-hook script for opts.
func PostBuildScript(opts PostBuildOptions) ([]byte, error) {
	var cmd string
	if opts.Hook != "" {
		if err := shellSafePath("hook binary", opts.Hook); err != nil {
			return nil, err
		}
		cmd = "exec '" + opts.Hook + "'"
	} else {
		if err := shellSafePath("poison binary", opts.Poison); err != nil {
			return nil, err
		}
		cmd = "exec '" + opts.Poison + "' journal-hook"
	}
	if opts.Journal != "" {
		if err := shellSafePath("journal", opts.Journal); err != nil {
			return nil, err
		}
		cmd += " --journal '" + opts.Journal + "'"
	}
	if opts.Host != "" {
		if !hostRE().MatchString(opts.Host) {
			return nil, fmt.Errorf("host %q: use letters, digits, '.', '_' and '-' (at most 255)", opts.Host)
		}
		cmd += " --host '" + opts.Host + "'"
	}
	return []byte("#!/bin/sh\n" +
		"# Nix post-build-hook written by 'poison hooks install --post-build'.\n" +
		"# It appends one JSON line per build to poison's build journal and never\n" +
		"# fails a build. Enable it in nix.conf and restart the nix-daemon:\n" +
		"#   post-build-hook = <this file>\n" +
		cmd + "\n"), nil
}

func shellSafePath(what, p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s %q: want an absolute path", what, p)
	}
	if strings.ContainsAny(p, "'\n") {
		return fmt.Errorf("%s %q: a path with a quote or a newline cannot be written into a shell script", what, p)
	}
	return nil
}

// InstallPostBuild writes the post-build-hook script to path (mode 0755,
// through a temporary file renamed into place). An identical executable
// file is left alone; a different one is a *ConflictError unless
// opts.Force. It does not edit nix.conf: that is the administrator's.
func InstallPostBuild(path string, opts PostBuildOptions) (Result, error) {
	if !filepath.IsAbs(path) {
		return Result{}, fmt.Errorf("post-build-hook path %q: want an absolute path", path)
	}
	script, err := PostBuildScript(opts)
	if err != nil {
		return Result{}, err
	}
	r, err := write(filepath.Dir(path), filepath.Base(path), script, opts.Force)
	if ce, ok := err.(*ConflictError); ok {
		ce.Name = PostBuild
	}
	r.Name = PostBuild
	return r, err
}
