package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
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

// Statuses of a checked path.
const (
	statusPoisoned     = "poisoned"     // its derivation gets a serial it was not built with
	statusDependent    = "dependent"    // its derivation was built against a poisoned input
	statusUndetermined = "undetermined" // no derivation to judge it by
)

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
	name       string
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

	// 1. The runtime closure, each path queried once.
	var roots []string
	for _, arg := range o.paths {
		p := rootPath(e, storeDir, arg)
		if !strings.HasPrefix(p, storeDir+"/") || len(p) == len(storeDir)+1 {
			fail(arg, fmt.Errorf("not a path in the store %s", storeDir))
			continue
		}
		if rest := p[len(storeDir)+1:]; strings.Contains(rest, "/") {
			p = storeDir + "/" + rest[:strings.IndexByte(rest, '/')]
		}
		roots = append(roots, p)
	}
	infos := map[string]*daemon.PathInfo{}
	var order []string
	queue := slices.Clone(roots)
	seen := map[string]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		info, err := conn.QueryPathInfo(ctx, p)
		if err != nil {
			var pe *daemon.ProtocolError
			if errors.As(err, &pe) || ctx.Err() != nil {
				return &exitErr{code: checkFailed, err: fmt.Errorf("check: %w", err)}
			}
			if errors.Is(err, daemon.ErrNotValid) {
				err = errors.New("not valid in the store")
			}
			fail(p, err)
			continue
		}
		infos[p] = info
		order = append(order, p)
		refs := slices.Clone(info.References)
		slices.Sort(refs)
		for _, r := range refs {
			if !seen[r] {
				queue = append(queue, r)
			}
		}
	}
	rep.Total = len(order)

	// 2. The derivers, and whether the store still has them.
	undetermined := func(p, drv, reason string) {
		rep.Unknown = append(rep.Unknown, checkUndeterminedPath{Path: p, DrvPath: drv, Reason: reason})
	}
	var derivers []string
	for _, p := range order {
		if d := infos[p].Deriver; d != "" {
			derivers = append(derivers, d)
		}
	}
	slices.Sort(derivers)
	derivers = slices.Compact(derivers)
	valid := map[string]bool{}
	if len(derivers) > 0 {
		vs, err := conn.QueryValidPaths(ctx, derivers, false)
		if err != nil {
			return &exitErr{code: checkFailed, err: fmt.Errorf("check: query the derivations: %w", err)}
		}
		for _, v := range vs {
			valid[v] = true
		}
	}
	var judged []string
	for _, p := range order {
		d := infos[p].Deriver
		switch {
		case d == "" && strings.HasSuffix(p, ".drv"):
			undetermined(p, "", "a derivation, not a build output (check its outputs, or see 'poison rewrite --explain')")
		case d == "":
			undetermined(p, "", "no deriver recorded: added to the store directly (nix-store --add) or copied without one")
		case !valid[d]:
			undetermined(p, d, "its derivation is not in the store (garbage-collected?)")
		default:
			judged = append(judged, p)
		}
	}

	// 3. One closure of all derivers, rewritten once.
	var roots2 []string
	for _, p := range judged {
		roots2 = append(roots2, infos[p].Deriver)
	}
	slices.Sort(roots2)
	roots2 = slices.Compact(roots2)
	loadOpts := builder.LoadOptions{StoreDir: storeDir, RealStoreDir: chrootStoreDir(o.store, storeDir)}
	var c *builder.Closure
	if len(roots2) > 0 {
		c, err = builder.LoadClosure(ctx, loadOpts, roots2)
		if err != nil && ctx.Err() == nil {
			// Find the derivations that do not load (an input missing,
			// an unreadable file) and judge the rest.
			bad := map[string]error{}
			var good []string
			for _, r := range roots2 {
				if _, err := builder.LoadClosure(ctx, loadOpts, []string{r}); err != nil {
					bad[r] = err
				} else {
					good = append(good, r)
				}
			}
			var keep []string
			for _, p := range judged {
				if err := bad[infos[p].Deriver]; err != nil {
					undetermined(p, infos[p].Deriver, "its derivation cannot be read: "+err.Error())
				} else {
					keep = append(keep, p)
				}
			}
			judged, c, err = keep, nil, nil
			if len(good) > 0 {
				c, err = builder.LoadClosure(ctx, loadOpts, good)
			}
		}
		if err != nil {
			return &exitErr{code: checkUndetermined, err: fmt.Errorf("check: %w", err)}
		}
	}
	if c != nil {
		var warnings []builder.Warning
		res, err := builder.Rewrite(ctx, c, builder.Options{Lock: lk, ByName: o.byName, NoATerm: true,
			Warn: func(w builder.Warning) { warnings = append(warnings, w) }})
		if err != nil {
			return &exitErr{code: checkUndetermined, err: fmt.Errorf("check: %w", err)}
		}
		carried, err := c.CarriedSerials(lk.Env)
		if err != nil {
			return &exitErr{code: checkUndetermined, err: fmt.Errorf("check: %w", err)}
		}
		classify(e, &rep, judged, infos, res, carried, warnings)
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
	slices.SortFunc(rep.Paths, func(a, b checkPath) int {
		if a.Status != b.Status {
			return cmp.Compare(statusRank(a.Status), statusRank(b.Status))
		}
		return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.Path, b.Path))
	})
	slices.SortFunc(rep.Unknown, func(a, b checkUndeterminedPath) int {
		return cmp.Or(cmp.Compare(storeName(a.Path), storeName(b.Path)), cmp.Compare(a.Path, b.Path))
	})

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

// classify sorts the judged paths into poisoned, dependent and clean.
func classify(e *env, rep *checkReport, judged []string, infos map[string]*daemon.PathInfo, res *builder.Result, carried map[string]int, warnings []builder.Warning) {
	poisons := make(map[string]builder.Poison, len(res.Poisoned))
	for _, p := range res.Poisoned {
		poisons[p.DrvPath] = p
	}
	// selfPoisoned: the lock gives the derivation a higher serial than it
	// was written with: its outputs predate the poisoning. (A higher
	// serial than the lock's, e.g. from the overlay's names or an entry
	// since removed, means it was rebuilt later: not stale.)
	selfPoisoned := func(d string) bool {
		p, ok := poisons[d]
		return ok && p.Serial > carried[d]
	}
	// The causes of every rewritten derivation: the poisoned ones it is
	// (own) or depends on (upstream). Changed is topological and lists the
	// new paths of its references.
	oldOf := make(map[string]string, len(res.Changed))
	for _, d := range res.Changed {
		oldOf[d.Path] = d.OldPath
	}
	own := map[string]string{}
	upstream := map[string][]string{}
	for _, d := range res.Changed {
		if selfPoisoned(d.OldPath) {
			own[d.OldPath] = d.Name
		}
		var cs []string
		for _, r := range d.References {
			if old, ok := oldOf[r]; ok {
				if c, ok := own[old]; ok {
					cs = append(cs, c)
				}
				cs = append(cs, upstream[old]...)
			}
		}
		slices.Sort(cs)
		upstream[d.OldPath] = slices.Compact(cs)
	}
	warned := map[string]bool{}
	for _, p := range judged {
		d := infos[p].Deriver
		nd := res.DrvPaths[d]
		if nd == d {
			continue // clean: built as the lock says
		}
		if !selfPoisoned(d) && len(upstream[d]) == 0 {
			// Rewritten only because it, or something it depends on,
			// carries a higher serial than the lock gives: built after
			// the poisoning, so not stale.
			if carried[d] > poisons[d].Serial && !warned[d] {
				warned[d] = true
				fmt.Fprintf(e.stderr, "poison: note: %s was built with serial %d, higher than the lock gives its derivation %s (built through the overlay? then pass --by-name); not stale\n", p, carried[d], d)
			}
			continue
		}
		cp := checkPath{Path: p, DrvPath: d, NewDrvPath: nd, Built: carried[d], Entries: []string{}, Causes: []string{}, name: storeName(p)}
		if np, ok := res.OutPaths[p]; ok {
			cp.NewPath = np
			cp.Rebuilds = np != p
		}
		if pz, ok := poisons[d]; ok && selfPoisoned(d) {
			cp.Status, cp.Serial, cp.Fixed = statusPoisoned, pz.Serial, pz.FixedOutput
			cp.Entries = append(cp.Entries, pz.Entries...)
			rep.Poisoned++
			for _, w := range warnings {
				if w.DrvPath == d && !warned[d] {
					warned[d] = true
					fmt.Fprintf(e.stderr, "poison: warning: %s\n", w.Message)
				}
			}
		} else {
			cp.Status = statusDependent
			cp.Causes = append(cp.Causes, upstream[d]...)
			rep.Dependent++
		}
		rep.Paths = append(rep.Paths, cp)
	}
}

func statusRank(s string) int {
	if s == statusPoisoned {
		return 0
	}
	return 1
}

// storeName is the name part of a store path ("HASH-NAME").
func storeName(p string) string {
	b := p[strings.LastIndexByte(p, '/')+1:]
	if i := strings.IndexByte(b, '-'); i >= 0 {
		return b[i+1:]
	}
	return b
}

func writeCheckText(w io.Writer, rep checkReport) {
	for _, p := range rep.Paths {
		var det []string
		det = append(det, "drv "+p.DrvPath)
		if p.Status == statusPoisoned {
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
		fmt.Fprintf(w, "%s  %s  (%s)\n", statusUndetermined, u.Path, reason)
	}
	fmt.Fprintf(w, "check: %d of %d paths stale (%d poisoned, %d dependent, %d undetermined)", rep.Stale, rep.Total, rep.Poisoned, rep.Dependent, rep.Undetermined)
	if rep.Failed > 0 {
		fmt.Fprintf(w, "; %d %s failed", rep.Failed, plural(rep.Failed, "query", "queries"))
	}
	fmt.Fprintln(w)
}
