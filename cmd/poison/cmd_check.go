package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/settings"
)

// checkOptions are the settings of one `poison check`.
type checkOptions struct {
	settings settings.Settings
	store    string
	json     bool
	byName   bool
	paths    []string
	cache    string // --cache: check a binary cache instead (cmd_check_cache.go)
}

func checkCommand() command {
	return command{
		name:    "check",
		summary: "which store paths in the runtime closure of PATH... are outputs of poisoned derivations",
		usage:   "[--lock FILE] [--store URI] [--json] [--by-name] PATH... | --cache URI [--lock FILE] [--json]",
		setup: func(fs *flag.FlagSet) runFunc {
			var o checkOptions
			sf := settings.Register(fs, "lock", "max-age")
			fs.StringVar(&o.store, "store", "auto", "store `URI` to query (daemon, unix://PATH, auto, ssh-ng://HOST, local?root=DIR)")
			fs.BoolVar(&o.json, "json", false, "print one JSON document instead of text")
			fs.BoolVar(&o.byName, "by-name", false, "also apply the serials of derivation names (what the Nix overlay does)")
			fs.StringVar(&o.cache, "cache", "", "instead of PATHs: which poisoned outputs the binary cache `URI` serves (file:///DIR, http(s)://HOST/PATH)")
			return func(ctx context.Context, e *env, args []string) error {
				o.paths = args
				if o.cache != "" {
					return runCheckCache(ctx, e, o, sf)
				}
				if len(o.paths) == 0 {
					return &exitErr{code: exitUsage, err: errors.New("check: no paths given"),
						hint: "pass store paths (or result symlinks) whose runtime closure to check"}
				}
				var err error
				if o.settings, err = loadSettings(e, sf); err != nil {
					return err
				}
				return runCheck(ctx, e, o)
			}
		},
	}
}

type checkPath struct {
	Path       string   `json:"path"`
	Status     string   `json:"status"`
	DrvPath    string   `json:"drvPath"`    // the deriver the store records
	NewDrvPath string   `json:"newDrvPath"` // the deriver under the lock
	NewPath    string   `json:"newPath"`    // the output path under the lock ("" when not known in advance)
	Serial     int      `json:"serial"`     // the lock's serial for the deriver (0 for dependents)
	Built      int      `json:"builtSerial"`
	Entries    []string `json:"entries"` // lock keys carrying the serial
	Causes     []string `json:"causes"`  // poisoned derivations upstream (dependents)
	Fixed      bool     `json:"fixedOutput"`
	Rebuilds   bool     `json:"rebuilds"` // its output path changes, so a build under the lock replaces it
}

type checkUndeterminedPath struct {
	Path    string `json:"path"`
	DrvPath string `json:"drvPath"`
	Reason  string `json:"reason"`
}

type checkFailure struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

type checkReport struct {
	Lock           string                  `json:"lock"`
	RegistryCommit string                  `json:"registryCommit"`
	Total          int                     `json:"total"` // paths in the runtime closure
	Stale          int                     `json:"stale"`
	Poisoned       int                     `json:"poisoned"`
	Dependent      int                     `json:"dependent"`
	Undetermined   int                     `json:"undetermined"`
	Failed         int                     `json:"failed"`
	Paths          []checkPath             `json:"paths"` // the stale paths
	Unknown        []checkUndeterminedPath `json:"undeterminedPaths"`
	Failures       []checkFailure          `json:"failures"`
	ExitStatus     int                     `json:"exitStatus"`
}

func runCheck(ctx context.Context, e *env, o checkOptions) error {
	lk, err := readLock(e, "check", o.settings)
	if err != nil {
		return err
	}
	storeDir := lk.Store()

	conn, err := daemon.Dial(ctx, o.store, daemon.Options{StoreDir: storeDir, SocketPath: e.getenv("NIX_DAEMON_SOCKET_PATH"), SSHOpts: strings.Fields(e.getenv("NIX_SSHOPTS"))})
	if err != nil {
		return &exitErr{code: checkFailed, err: fmt.Errorf("check: connect to store %s: %w", o.store, err), hint: connectHint(o.store, "pass --store URI")}
	}
	defer conn.Close()

	rep := checkReport{Lock: displayPath(e, o.settings.Lock), RegistryCommit: lk.Registry.Commit,
		Paths: []checkPath{}, Unknown: []checkUndeterminedPath{}, Failures: []checkFailure{}}
	fail := func(p string, err error) {
		rep.Failures = append(rep.Failures, checkFailure{Path: p, Error: err.Error()})
	}

	var roots []string
	for _, arg := range o.paths {
		sa, err := parseStoreArg(e, storeDir, arg)
		switch {
		case err != nil && !strings.ContainsRune(arg, '/'):
			fail(arg, err)
		case err != nil || sa.Name != "":
			fail(arg, fmt.Errorf("not a path in the store %s", storeDir))
		default:
			roots = append(roots, sa.Path)
		}
	}
	audit, err := builder.Audit(ctx, conn, roots, builder.AuditOptions{Lock: lk, ByName: o.byName,
		StoreDir: storeDir, RealStoreDir: chrootStoreDir(o.store, storeDir)})
	switch {
	case errors.Is(err, builder.ErrAuditQuery):
		return &exitErr{code: checkFailed, err: fmt.Errorf("check: %w", err)}
	case err != nil:
		return &exitErr{code: checkUndetermined, err: fmt.Errorf("check: %w", err)}
	}
	for _, n := range audit.Notes {
		fmt.Fprintf(e.stderr, "poison: note: %s\n", n)
	}
	for _, w := range audit.Warnings {
		fmt.Fprintf(e.stderr, "poison: warning: %s\n", w)
	}
	rep.Total = audit.Total
	for _, f := range audit.Failures {
		fail(f.Path, f.Err)
	}
	for _, ap := range audit.Paths {
		rep.Paths = append(rep.Paths, checkPath{Path: ap.Path, Status: ap.Status, DrvPath: ap.DrvPath, NewDrvPath: ap.NewDrvPath,
			NewPath: ap.NewPath, Serial: ap.Serial, Built: ap.BuiltSerial, Entries: ap.Entries, Causes: ap.Causes,
			Fixed: ap.FixedOutput, Rebuilds: ap.Rebuilds})
		if ap.Status == builder.AuditPoisoned {
			rep.Poisoned++
		} else {
			rep.Dependent++
		}
	}
	for _, u := range audit.Undetermined {
		rep.Unknown = append(rep.Unknown, checkUndeterminedPath{Path: u.Path, DrvPath: u.DrvPath, Reason: u.Reason})
	}

	rep.Undetermined = len(rep.Unknown)
	rep.Failed = len(rep.Failures)
	rep.Stale = rep.Poisoned + rep.Dependent
	code := 0
	if rep.Stale > 0 {
		code |= checkStale
	}
	if rep.Undetermined > 0 {
		code |= checkUndetermined
	}
	if rep.Failed > 0 {
		code |= checkFailed
	}
	rep.ExitStatus = code

	for _, f := range rep.Failures {
		fmt.Fprintf(e.stderr, "poison: error: check: %s: %s\n", f.Path, f.Error)
	}
	if err := writeReport(e.stdout, o.json, rep, func(w io.Writer) { writeCheckText(w, rep) }); err != nil {
		return err
	}
	if code != 0 {
		return silentExit(code) // the report says why
	}
	return nil
}

func writeCheckText(w io.Writer, rep checkReport) {
	for _, p := range rep.Paths {
		var det []string
		det = append(det, "drv "+p.DrvPath)
		if p.Status == builder.AuditPoisoned {
			how := fmt.Sprintf("serial %d", p.Serial)
			if p.Built > 0 {
				how = fmt.Sprintf("serial %d, built with %d", p.Serial, p.Built)
			}
			det = append(det, how, "lock: "+strings.Join(p.Entries, ", "))
			if p.Fixed {
				det = append(det, "fixed-output: Nix will not rebuild it; delete it from the store and fetch it again")
			}
		} else {
			switch {
			case len(p.Causes) > 0:
				det = append(det, "depends on poisoned "+strings.Join(p.Causes, ", "))
			case p.Built > 0:
				det = append(det, fmt.Sprintf("built with serial %d, which the lock does not give", p.Built))
			default:
				det = append(det, "depends on a rewritten derivation")
			}
		}
		if !p.Fixed && p.NewPath != "" && !p.Rebuilds {
			det = append(det, "its output path does not change: Nix will not rebuild it")
		}
		fmt.Fprintf(w, "%s  %s  (%s)\n", p.Status, p.Path, strings.Join(det, ", "))
	}
	for _, u := range rep.Unknown {
		reason := u.Reason
		if u.DrvPath != "" {
			reason = "drv " + u.DrvPath + ": " + reason
		}
		fmt.Fprintf(w, "undetermined  %s  (%s)\n", u.Path, reason)
	}
	fmt.Fprintf(w, "check: %d of %d paths stale (%d poisoned, %d dependent, %d undetermined)", rep.Stale, rep.Total, rep.Poisoned, rep.Dependent, rep.Undetermined)
	if rep.Failed > 0 {
		fmt.Fprintf(w, "; %d %s failed", rep.Failed, plural(rep.Failed, "query", "queries"))
	}
	fmt.Fprintln(w)
}
