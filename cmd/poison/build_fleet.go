package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/fleet/dispatch"
	"github.com/poison-nix/poison/fleet/machines"
	"github.com/poison-nix/poison/internal/nixconf"
)

// nixSetting returns a Nix setting as a client reads it (nix.conf, the
// user's files, NIX_CONFIG: see internal/nixconf); def when none sets it
// or the configuration does not read.
func nixSetting(e *env, name, def string) string {
	c, err := nixconf.Load(e.getenv)
	if err != nil {
		return def
	}
	if v, ok := c.Get(name); ok {
		return v
	}
	return def
}

// thisSystem returns Nix's name for this machine's system
// ("x86_64-linux"), or the `system` setting.
func thisSystem(e *env) string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "riscv64": "riscv64", "ppc64le": "powerpc64le"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return nixSetting(e, "system", arch+"-"+runtime.GOOS)
}

// absBuilders makes a relative "@FILE" builders value absolute, so that
// the daemon, whose working directory is not ours, reads the same file.
func absBuilders(e *env, spec string) string {
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "@") {
		if p := strings.TrimSpace(spec[1:]); !filepath.IsAbs(p) {
			spec = "@" + filepath.Join(e.dir, p)
		}
	}
	return spec
}

// parseBuilders reads the machines of a builders value (SPEC or @FILE);
// relative @FILEs are read from the working directory, as Nix does.
func parseBuilders(e *env, spec string) ([]machines.Machine, error) {
	spec = absBuilders(e, spec)
	s, err := machines.Parse(spec, machines.Options{DefaultSystem: thisSystem(e)})
	if err != nil {
		return nil, withHint(fmt.Errorf("build: --builders: %w", err), "each machine is: URI SYSTEMS SSH-KEY MAX-JOBS SPEED-FACTOR SUPPORTED-FEATURES MANDATORY-FEATURES HOST-KEY ('-' for a default); see docs/fleet.md")
	}
	if len(s.Machines) == 0 {
		err := fmt.Errorf("build: --builders %q names no machine", spec)
		if len(s.Missing) > 0 {
			err = fmt.Errorf("build: --builders: no machine: %s does not exist", strings.Join(s.Missing, ", "))
		}
		return nil, withHint(err, "pass --builders 'ssh-ng://HOST SYSTEM - JOBS' or @FILE in Nix's machines format, or build without --per-derivation")
	}
	return s.Machines, nil
}

// totalJobs returns how many builds the machines run at once.
func totalJobs(ms []machines.Machine) int {
	n := 0
	for _, m := range ms {
		n += m.MaxJobs
	}
	return n
}

// newDispatcher prepares per-derivation builds on machines, with inputs
// copied from and outputs copied to the store behind home. dopts are the
// connection options of the home store (ssh options, settings, log).
func newDispatcher(ms []machines.Machine, home *daemon.Pool, dopts daemon.Options) (*dispatch.Dispatcher, error) {
	if totalJobs(ms) == 0 {
		return nil, withHint(errors.New("build: every machine of --builders has max jobs 0"), "give a machine at least one job (the fourth column)")
	}
	return dispatch.New(dispatch.Options{
		Machines: ms,
		Home:     home,
		Copy:     dispatch.StoreCopier,
		Daemon:   dopts,
		OnEvent:  dispatchEvents(dopts.Log),
	})
}

// dispatchEvents shows where each derivation goes, as log lines of
// the progress.
func dispatchEvents(log func(daemon.Message)) func(dispatch.Event) {
	return func(ev dispatch.Event) {
		var msg string
		switch ev.Kind {
		case dispatch.Started:
			msg = fmt.Sprintf("building '%s' on '%s'", ev.DrvPath, ev.Machine)
		case dispatch.Lost:
			msg = fmt.Sprintf("poison: warning: lost '%s' while building '%s' (%v); trying another machine", ev.Machine, ev.DrvPath, ev.Err)
		default:
			return
		}
		log(daemon.Message{Kind: daemon.LogLine, Text: msg})
	}
}
