package builder

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/registry/lock"
)

// AuditStore is what Audit asks the store: path infos (references and
// deriver) and which derivations are still there.
type AuditStore interface {
	QueryPathInfo(ctx context.Context, path string) (*daemon.PathInfo, error)
	QueryValidPaths(ctx context.Context, paths []string, substitute bool) ([]string, error)
}

// AuditOptions configure Audit.
type AuditOptions struct {
	// Lock gives the serials.
	Lock *lock.File
	// ByName also applies the serials of derivation names.
	ByName bool
	// StoreDir is the logical store directory; RealStoreDir where its
	// files are read ("" for StoreDir).
	StoreDir, RealStoreDir string
}

// Statuses of an audited path.
const (
	// AuditPoisoned: its derivation gets a serial it was not built with.
	AuditPoisoned = "poisoned"
	// AuditDependent: its derivation was built against a poisoned input.
	AuditDependent = "dependent"
)

// AuditPath is one stale path of a closure.
type AuditPath struct {
	Path   string
	Status string // AuditPoisoned or AuditDependent
	// DrvPath is the deriver the store records; NewDrvPath the deriver
	// under the lock.
	DrvPath, NewDrvPath string
	// NewPath is the output path under the lock ("" when not known in
	// advance); Rebuilds is true when it differs from Path.
	NewPath  string
	Rebuilds bool
	// Serial is the lock's serial for the deriver (0 for dependents);
	// BuiltSerial the serial it was built with.
	Serial, BuiltSerial int
	// Entries are the lock keys carrying the serial; Causes the poisoned
	// derivations upstream (dependents).
	Entries, Causes []string
	FixedOutput     bool
}

// AuditUndetermined is a path whose provenance could not be determined.
type AuditUndetermined struct {
	Path, DrvPath, Reason string
}

// AuditFailure is a path the store could not be asked about.
type AuditFailure struct {
	Path string
	Err  error
}

// AuditReport is the result of Audit.
type AuditReport struct {
	// Total is the number of paths in the runtime closure.
	Total        int
	Paths        []AuditPath // stale paths: poisoned first, then by name
	Undetermined []AuditUndetermined
	Failures     []AuditFailure
	// Notes and Warnings are for the user (a path built with a higher
	// serial than the lock gives, warnings of the rewrite).
	Notes, Warnings []string
}

// Errors Audit wraps when it stops.
var (
	// ErrAuditQuery: the store could not be queried (connection, protocol).
	ErrAuditQuery = errors.New("store query failed")
	// ErrAuditUndetermined: the derivations could not be rewritten.
	ErrAuditUndetermined = errors.New("derivations could not be judged")
)

// Audit judges the runtime closure of roots (store paths) against the
// lock: which paths are outputs of poisoned derivations (their outputs
// predate the poisoning), which were built against one, and which cannot
// be judged (no deriver, derivation gone or unreadable). Each path is
// queried once; the derivers are loaded as one closure and rewritten once.
func Audit(ctx context.Context, st AuditStore, roots []string, o AuditOptions) (*AuditReport, error) {
	rep := &AuditReport{}
	// 1. The runtime closure.
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
		info, err := st.QueryPathInfo(ctx, p)
		if err != nil {
			var pe *daemon.ProtocolError
			if errors.As(err, &pe) || ctx.Err() != nil {
				return nil, fmt.Errorf("%w: %w", ErrAuditQuery, err)
			}
			if errors.Is(err, daemon.ErrNotValid) {
				err = errors.New("not valid in the store")
			}
			rep.Failures = append(rep.Failures, AuditFailure{Path: p, Err: err})
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
		rep.Undetermined = append(rep.Undetermined, AuditUndetermined{Path: p, DrvPath: drv, Reason: reason})
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
		vs, err := st.QueryValidPaths(ctx, derivers, false)
		if err != nil {
			return nil, fmt.Errorf("%w: query the derivations: %w", ErrAuditQuery, err)
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
	var drvRoots []string
	for _, p := range judged {
		drvRoots = append(drvRoots, infos[p].Deriver)
	}
	slices.Sort(drvRoots)
	drvRoots = slices.Compact(drvRoots)
	loadOpts := LoadOptions{StoreDir: o.StoreDir, RealStoreDir: o.RealStoreDir}
	var c *Closure
	var err error
	if len(drvRoots) > 0 {
		c, err = LoadClosure(ctx, loadOpts, drvRoots)
		if err != nil && ctx.Err() == nil {
			// Find the derivations that do not load (an input missing,
			// an unreadable file) and judge the rest.
			bad := map[string]error{}
			var good []string
			for _, r := range drvRoots {
				if _, err := LoadClosure(ctx, loadOpts, []string{r}); err != nil {
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
				c, err = LoadClosure(ctx, loadOpts, good)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrAuditUndetermined, err)
		}
	}
	if c != nil {
		var warnings []Warning
		res, err := Rewrite(ctx, c, Options{Lock: o.Lock, ByName: o.ByName, NoATerm: true,
			Warn: func(w Warning) { warnings = append(warnings, w) }})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrAuditUndetermined, err)
		}
		carried, err := c.CarriedSerials(o.Lock.Env)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrAuditUndetermined, err)
		}
		classify(rep, judged, infos, res, carried, warnings)
	}
	slices.SortFunc(rep.Paths, func(a, b AuditPath) int {
		if a.Status != b.Status {
			return cmp.Compare(statusRank(a.Status), statusRank(b.Status))
		}
		return cmp.Or(cmp.Compare(pathName(a.Path), pathName(b.Path)), cmp.Compare(a.Path, b.Path))
	})
	slices.SortFunc(rep.Undetermined, func(a, b AuditUndetermined) int {
		return cmp.Or(cmp.Compare(pathName(a.Path), pathName(b.Path)), cmp.Compare(a.Path, b.Path))
	})
	return rep, nil
}

// classify sorts the judged paths into poisoned, dependent and clean.
func classify(rep *AuditReport, judged []string, infos map[string]*daemon.PathInfo, res *Result, carried map[string]int, warnings []Warning) {
	poisons := make(map[string]Poison, len(res.Poisoned))
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
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s was built with serial %d, higher than the lock gives its derivation %s (built through the overlay? then pass --by-name); not stale", p, carried[d], d))
			}
			continue
		}
		ap := AuditPath{Path: p, DrvPath: d, NewDrvPath: nd, BuiltSerial: carried[d], Entries: []string{}, Causes: []string{}}
		if np, ok := res.OutPaths[p]; ok {
			ap.NewPath = np
			ap.Rebuilds = np != p
		}
		if pz, ok := poisons[d]; ok && selfPoisoned(d) {
			ap.Status, ap.Serial, ap.FixedOutput = AuditPoisoned, pz.Serial, pz.FixedOutput
			ap.Entries = append(ap.Entries, pz.Entries...)
			for _, w := range warnings {
				if w.DrvPath == d && !warned[d] {
					warned[d] = true
					rep.Warnings = append(rep.Warnings, w.Message)
				}
			}
		} else {
			ap.Status = AuditDependent
			ap.Causes = append(ap.Causes, upstream[d]...)
		}
		rep.Paths = append(rep.Paths, ap)
	}
}

func statusRank(s string) int {
	if s == AuditPoisoned {
		return 0
	}
	return 1
}

// pathName is the name part of a store path ("HASH-NAME").
func pathName(p string) string {
	b := p[strings.LastIndexByte(p, '/')+1:]
	if i := strings.IndexByte(b, '-'); i >= 0 {
		return b[i+1:]
	}
	return b
}
