package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/builder/internal/aterm"
	"github.com/poison-nix/poison/storepath"
	"github.com/sourcegraph/conc/pool"
)

// Store is the store Build plans in and collects the outputs in: the one
// the rewritten .drv files were written to. DaemonStore serves it from a
// nix-daemon; a team's own system may supply another.
type Store interface {
	// QueryMissing says what building targets ("DRV!*" or paths) would
	// build and substitute.
	QueryMissing(ctx context.Context, targets []string) (*daemon.Missing, error)
	// QueryValidPaths returns those of paths that are valid.
	QueryValidPaths(ctx context.Context, paths []string) ([]string, error)
	// QueryDerivationOutputMap returns the output paths of a derivation
	// in the store, by output name.
	QueryDerivationOutputMap(ctx context.Context, drvPath string) (map[string]string, error)
	// BuildPaths builds or substitutes targets in the store and returns
	// one result per target. A failed build is a status, not an error.
	BuildPaths(ctx context.Context, targets []string) ([]daemon.BuildResult, error)
}

// Job is one derivation for an Executor to build.
type Job struct {
	// DrvPath is the derivation's .drv path in the Store (it may exist
	// nowhere else).
	DrvPath string
	// Derivation is the derivation with its inputs resolved: InputSrcs
	// holds its input sources and the outputs of its input derivations,
	// all valid in the Store when the job starts.
	Derivation *daemon.BasicDerivation
	// RequiredFeatures are its requiredSystemFeatures, sorted.
	RequiredFeatures []string
}

// Executor builds one derivation whose inputs are valid in the Store and
// leaves its outputs valid there. Build calls it from several goroutines
// (BuildOptions.Jobs at once). A build that fails is a result with a
// failed status; an error stops the whole build.
type Executor interface {
	BuildDerivation(ctx context.Context, job Job) (DrvResult, error)
}

// BuildOptions configures Build.
type BuildOptions struct {
	// PerDerivation builds each missing derivation with the Executor, in
	// topological order, instead of handing the roots to the Store.
	PerDerivation bool
	// Executor builds the derivations one by one (PerDerivation); when
	// nil, the Store does if it is an Executor (DaemonStore sends
	// BuildDerivation to the daemon, which needs a trusted client).
	Executor Executor
	// Jobs bounds concurrent Executor calls (PerDerivation); 1 when 0.
	Jobs int
	// KeepGoing continues with what does not depend on a failure
	// (PerDerivation; in the default mode the daemon's keep-going setting
	// applies).
	KeepGoing bool
	// StoreDir is the logical store directory ("/nix/store" when empty);
	// RealStoreDir is where .drv files are read from (StoreDir when empty).
	StoreDir, RealStoreDir string
	// Drvs holds the content of derivations by path, for those not read
	// from RealStoreDir (the rewritten ones: Result.Changed).
	Drvs []Drv
	// OnPlan receives what will be built and substituted before anything
	// starts. May be nil.
	OnPlan func(*daemon.Missing)
	// OnResult receives each derivation's result as it finishes
	// (PerDerivation). May be nil; called from several goroutines.
	OnResult func(DrvResult)
}

// DrvResult is the outcome for one derivation.
type DrvResult struct {
	DrvPath   string
	Outputs   map[string]string // output name → store path
	Status    daemon.BuildStatus
	Error     string // the daemon's message for a failure
	StartTime time.Time
	StopTime  time.Time
	// Machine names where it was built (PerDerivation): the store URI of
	// the machine, empty when unknown.
	Machine string
}

// BuildReport is the outcome of Build.
type BuildReport struct {
	// Roots holds one result per root, in argument order.
	Roots []DrvResult
	// Derivations holds the result of every derivation built one by one
	// (PerDerivation), in completion order.
	Derivations []DrvResult
	// Missing is what the daemon said would be built or substituted.
	Missing *daemon.Missing
}

// Failed reports whether any root or derivation did not succeed.
func (r *BuildReport) Failed() bool {
	for _, x := range append(slices.Clone(r.Roots), r.Derivations...) {
		if !x.Status.Success() {
			return true
		}
	}
	return false
}

// ErrNotTrusted is wrapped by Build when the daemon refuses
// BuildDerivation because the client is not trusted.
var ErrNotTrusted = errors.New("the daemon does not trust this user with BuildDerivation")

// ErrNoExecutor is returned by Build for PerDerivation without an
// Executor when the Store is not one either.
var ErrNoExecutor = errors.New("per-derivation build without an executor")

// Build builds all outputs of roots (.drv paths already in the store, e.g.
// added by Write) in s. Build failures are statuses in the report, not
// errors; the error is for failures to talk to the stores and for
// refusals.
func Build(ctx context.Context, s Store, roots []string, opts BuildOptions) (*BuildReport, error) {
	targets := make([]string, len(roots))
	for i, r := range roots {
		targets[i] = r + "!*"
	}
	rep := &BuildReport{}
	// Nothing to build or substitute when every output of every root is
	// valid: the store would only answer AlreadyValid, and a nix-daemon
	// 2.8 first computes each root's hash modulo over its whole closure
	// (65-200 ms for 1,000 derivations on a new connection). Answer here,
	// before asking what is missing (which, for a root whose outputs are
	// valid, is nothing).
	done, err := allRootsValid(ctx, s, roots, rep)
	if err != nil {
		return nil, err
	}
	if done {
		rep.Missing = &daemon.Missing{}
		if opts.OnPlan != nil {
			opts.OnPlan(rep.Missing)
		}
		return rep, nil
	}
	if rep.Missing, err = s.QueryMissing(ctx, targets); err != nil {
		return nil, fmt.Errorf("build: ask what is missing: %w", err)
	}
	if opts.OnPlan != nil {
		opts.OnPlan(rep.Missing)
	}
	if opts.PerDerivation {
		if opts.Executor == nil {
			ex, ok := s.(Executor)
			if !ok {
				return nil, ErrNoExecutor
			}
			opts.Executor = ex
		}
		if err = buildEach(ctx, s, rep, opts); err != nil {
			return rep, err
		}
		if rep.Failed() {
			// Do not let the store retry what failed: report the roots
			// from the per-derivation results.
			byPath := map[string]DrvResult{}
			for _, r := range rep.Derivations {
				byPath[r.DrvPath] = r
			}
			for _, r := range roots {
				dr, ok := byPath[r]
				if !ok {
					outs, valid, err := rootValid(ctx, s, r)
					switch {
					case err != nil:
						return rep, err
					case valid:
						dr = DrvResult{DrvPath: r, Status: daemon.AlreadyValid, Outputs: outs}
					default:
						dr = DrvResult{DrvPath: r, Status: daemon.DependencyFailed, Error: "a dependency failed to build"}
					}
				}
				rep.Roots = append(rep.Roots, dr)
			}
			return rep, nil
		}
	}
	// Default mode builds everything here; per-derivation mode has built
	// what was missing and this only collects the outputs.
	results, err := s.BuildPaths(ctx, targets)
	if err != nil {
		var de *daemon.Error
		if errors.As(err, &de) {
			// Daemons older than 1.34: the failure comes as an error.
			for _, r := range roots {
				rep.Roots = append(rep.Roots, DrvResult{DrvPath: r, Status: daemon.MiscFailure, Error: de.Message})
			}
			return rep, nil
		}
		return rep, fmt.Errorf("build: %w", err)
	}
	if len(results) != len(roots) {
		return rep, fmt.Errorf("build: the store returned %d results for %d roots", len(results), len(roots))
	}
	machines := map[string]string{}
	for _, r := range rep.Derivations {
		machines[r.DrvPath] = r.Machine
	}
	for i, r := range results {
		dr := DrvResult{DrvPath: roots[i], Outputs: r.BuiltOutputs, Status: r.Status, Error: r.ErrorMsg, StartTime: r.StartTime, StopTime: r.StopTime, Machine: machines[roots[i]]}
		if dr.Status.Success() && len(dr.Outputs) == 0 {
			if dr.Outputs, err = s.QueryDerivationOutputMap(ctx, roots[i]); err != nil {
				return rep, fmt.Errorf("build: outputs of %s: %w", roots[i], err)
			}
		}
		rep.Roots = append(rep.Roots, dr)
	}
	return rep, nil
}

// allRootsValid reports whether every output of every root is valid and
// then fills rep.Roots with AlreadyValid results.
func allRootsValid(ctx context.Context, s Store, roots []string, rep *BuildReport) (bool, error) {
	results := make([]DrvResult, 0, len(roots))
	for _, r := range roots {
		outs, err := s.QueryDerivationOutputMap(ctx, r)
		if err != nil {
			return false, fmt.Errorf("build: outputs of %s: %w", r, err)
		}
		paths := make([]string, 0, len(outs))
		for _, p := range outs {
			if p == "" { // not known before it is built (content-addressed)
				return false, nil
			}
			paths = append(paths, p)
		}
		if len(paths) == 0 {
			return false, nil
		}
		valid, err := s.QueryValidPaths(ctx, paths)
		if err != nil {
			return false, fmt.Errorf("build: outputs of %s: %w", r, err)
		}
		if len(valid) != len(paths) {
			return false, nil
		}
		results = append(results, DrvResult{DrvPath: r, Status: daemon.AlreadyValid, Outputs: outs})
	}
	rep.Roots = results
	return true, nil
}

// rootValid returns the outputs of drv and whether all are valid.
func rootValid(ctx context.Context, s Store, drv string) (map[string]string, bool, error) {
	outs, err := s.QueryDerivationOutputMap(ctx, drv)
	if err != nil {
		return nil, false, err
	}
	paths := make([]string, 0, len(outs))
	for _, p := range outs {
		paths = append(paths, p)
	}
	valid, err := s.QueryValidPaths(ctx, paths)
	return outs, err == nil && len(valid) == len(paths), err
}

// buildEach substitutes what can be substituted, then gives every missing
// derivation to the executor once its inputs are built, up to opts.Jobs
// at once.
func buildEach(ctx context.Context, s Store, rep *BuildReport, opts BuildOptions) error {
	m := rep.Missing
	if len(m.WillSubstitute) > 0 {
		res, err := s.BuildPaths(ctx, m.WillSubstitute)
		if err != nil {
			return fmt.Errorf("build: substitute %d paths: %w", len(m.WillSubstitute), err)
		}
		for _, r := range res {
			if !r.Status.Success() {
				return fmt.Errorf("build: substitute %s: %s: %s", r.Path, r.Status, r.ErrorMsg)
			}
		}
	}
	g, err := newDrvGraph(ctx, s, m.WillBuild, opts)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	record := func(r DrvResult) {
		mu.Lock()
		rep.Derivations = append(rep.Derivations, r)
		mu.Unlock()
		if opts.OnResult != nil {
			opts.OnResult(r)
		}
	}
	return g.run(ctx, max(opts.Jobs, 1), opts.KeepGoing, func(ctx context.Context, i int) (bool, error) {
		n := g.nodes[i]
		res, err := opts.Executor.BuildDerivation(ctx, Job{DrvPath: n.path, Derivation: n.basic, RequiredFeatures: requiredFeatures(n.basic)})
		if err != nil {
			return false, err
		}
		if res.DrvPath == "" {
			res.DrvPath = n.path
		}
		record(res)
		return res.Status.Success(), nil
	}, func(i int) {
		record(DrvResult{DrvPath: g.nodes[i].path, Status: daemon.DependencyFailed, Error: "a dependency failed to build"})
	})
}

// requiredFeatures reads requiredSystemFeatures from the environment of
// d, or from its structured attributes.
func requiredFeatures(d *daemon.BasicDerivation) []string {
	var out []string
	if js, ok := d.Env["__json"]; ok {
		var attrs struct {
			Features any `json:"requiredSystemFeatures"`
		}
		if json.Unmarshal([]byte(js), &attrs) == nil {
			switch v := attrs.Features.(type) {
			case string:
				out = strings.Fields(v)
			case []any:
				for _, x := range v {
					if s, ok := x.(string); ok {
						out = append(out, s)
					}
				}
			}
		}
	} else {
		out = strings.Fields(d.Env["requiredSystemFeatures"])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// DaemonStore is a Store and an Executor served by a nix-daemon through a
// connection pool.
func DaemonStore(p *daemon.Pool) interface {
	Store
	Executor
} {
	return daemonStore{p}
}

type daemonStore struct{ p *daemon.Pool }

func (d daemonStore) QueryMissing(ctx context.Context, targets []string) (m *daemon.Missing, err error) {
	err = d.p.Do(ctx, func(c *daemon.Conn) error {
		m, err = c.QueryMissing(ctx, targets)
		return err
	})
	return m, err
}

func (d daemonStore) QueryValidPaths(ctx context.Context, paths []string) (v []string, err error) {
	err = d.p.Do(ctx, func(c *daemon.Conn) error {
		v, err = c.QueryValidPaths(ctx, paths, false)
		return err
	})
	return v, err
}

func (d daemonStore) QueryDerivationOutputMap(ctx context.Context, drv string) (m map[string]string, err error) {
	err = d.p.Do(ctx, func(c *daemon.Conn) error {
		m, err = c.QueryDerivationOutputMap(ctx, drv)
		return err
	})
	return m, err
}

func (d daemonStore) BuildPaths(ctx context.Context, targets []string) (r []daemon.BuildResult, err error) {
	err = d.p.Do(ctx, func(c *daemon.Conn) error {
		r, err = c.BuildPathsWithResults(ctx, targets, daemon.BuildNormal)
		return err
	})
	return r, err
}

// BuildDerivation sends the job with BuildDerivation: the daemon builds it
// itself (Nix does not hand BuildDerivation to remote builders).
func (d daemonStore) BuildDerivation(ctx context.Context, job Job) (DrvResult, error) {
	var res *daemon.BuildResult
	var machine string
	err := d.p.Do(ctx, func(c *daemon.Conn) error {
		var err error
		machine = c.Store()
		res, err = c.BuildDerivation(ctx, job.DrvPath, job.Derivation, daemon.BuildNormal)
		return err
	})
	var de *daemon.Error
	if errors.As(err, &de) && de.NotTrusted() {
		return DrvResult{}, fmt.Errorf("build %s: %w (%s)", job.DrvPath, ErrNotTrusted, de.Message)
	}
	if err != nil {
		return DrvResult{}, fmt.Errorf("build %s: %w", job.DrvPath, err)
	}
	return DrvResult{DrvPath: job.DrvPath, Outputs: res.BuiltOutputs, Status: res.Status, Error: res.ErrorMsg, StartTime: res.StartTime, StopTime: res.StopTime, Machine: machine}, nil
}

// drvGraph is the set of derivations to build one by one and their
// dependencies among each other.
type drvGraph struct {
	nodes []drvNode
}

type drvNode struct {
	path  string
	basic *daemon.BasicDerivation
	deps  []int // indices of inputs that are built here too
}

func newDrvGraph(ctx context.Context, s Store, paths []string, opts BuildOptions) (*drvGraph, error) {
	_, realDir := storepath.Dirs(opts.StoreDir, opts.RealStoreDir)
	given := make(map[string][]byte, len(opts.Drvs))
	for _, d := range opts.Drvs {
		given[d.Path] = d.ATerm
	}
	parsed := map[string]*aterm.Derivation{}
	parse := func(p string) (*aterm.Derivation, error) {
		if d, ok := parsed[p]; ok {
			return d, nil
		}
		data, ok := given[p]
		if !ok {
			var err error
			if data, err = os.ReadFile(filepath.Join(realDir, filepath.Base(p))); err != nil {
				return nil, fmt.Errorf("build: read %s: %w", p, err)
			}
		}
		d, err := aterm.Parse(string(data))
		if err != nil {
			return nil, fmt.Errorf("build: parse %s: %w", p, err)
		}
		parsed[p] = d
		return d, nil
	}
	index := make(map[string]int, len(paths))
	for i, p := range paths {
		index[p] = i
	}
	g := &drvGraph{nodes: make([]drvNode, len(paths))}
	for i, p := range paths {
		d, err := parse(p)
		if err != nil {
			return nil, err
		}
		b := &daemon.BasicDerivation{
			Platform:  d.Platform,
			Builder:   d.Builder,
			Args:      d.Args,
			Env:       make(map[string]string, len(d.Env)),
			InputSrcs: slices.Clone(d.InputSrcs),
		}
		for _, o := range d.Outputs {
			b.Outputs = append(b.Outputs, daemon.DerivationOutput{Name: o.Name, Path: o.Path, HashAlgo: o.HashAlgo, Hash: o.Hash})
		}
		for _, e := range d.Env {
			b.Env[e.Key] = e.Value
		}
		var deps []int
		for _, in := range d.InputDrvs {
			if j, ok := index[in.Path]; ok {
				deps = append(deps, j)
			}
			outs, err := outputsOf(ctx, s, parse, in.Path)
			if err != nil {
				return nil, err
			}
			for _, o := range in.Outputs {
				if outs[o] == "" {
					return nil, fmt.Errorf("build %s: input %s has no known output %q (floating content-addressed derivations cannot be built one by one yet)", p, in.Path, o)
				}
				b.InputSrcs = append(b.InputSrcs, outs[o])
			}
		}
		slices.Sort(b.InputSrcs)
		b.InputSrcs = slices.Compact(b.InputSrcs)
		g.nodes[i] = drvNode{path: p, basic: b, deps: deps}
	}
	return g, nil
}

// outputsOf returns the output paths of a derivation: from its file, or
// from the daemon when the file names none (content-addressed).
func outputsOf(ctx context.Context, s Store, parse func(string) (*aterm.Derivation, error), p string) (map[string]string, error) {
	outs := map[string]string{}
	if d, err := parse(p); err == nil {
		for _, o := range d.Outputs {
			outs[o.Name] = o.Path
		}
	}
	for _, v := range outs {
		if v == "" {
			return s.QueryDerivationOutputMap(ctx, p)
		}
	}
	if len(outs) == 0 {
		return s.QueryDerivationOutputMap(ctx, p)
	}
	return outs, nil
}

// run calls build for every node once all its deps succeeded, at most
// jobs at once. build reports success; an error stops everything. A node
// whose dependency failed is passed to skipped. Without keepGoing no new
// node starts after the first failure.
func (g *drvGraph) run(ctx context.Context, jobs int, keepGoing bool, build func(context.Context, int) (bool, error), skipped func(int)) error {
	n := len(g.nodes)
	waiting := make([]int, n)
	dependents := make([][]int, n)
	for i, nd := range g.nodes {
		waiting[i] = len(nd.deps)
		for _, d := range nd.deps {
			dependents[d] = append(dependents[d], i)
		}
	}
	type done struct {
		i  int
		ok bool
	}
	doneCh := make(chan done, n)
	ready := []int{}
	for i := range n {
		if waiting[i] == 0 {
			ready = append(ready, i)
		}
	}
	workers := pool.New().WithErrors().WithContext(ctx).WithCancelOnError().WithFirstError().WithMaxGoroutines(jobs)
	running, finished, failed := 0, 0, false
	var skip func(i int)
	skip = func(i int) {
		for _, j := range dependents[i] {
			if waiting[j] >= 0 {
				waiting[j] = -1
				skipped(j)
				finished++
				skip(j)
			}
		}
	}
	for finished < n {
		for len(ready) > 0 && running < jobs && (keepGoing || !failed) && ctx.Err() == nil {
			i := ready[0]
			ready = ready[1:]
			running++
			workers.Go(func(ctx context.Context) error {
				ok, err := build(ctx, i)
				doneCh <- done{i, ok && err == nil}
				return err
			})
		}
		if running == 0 {
			break // stopped after a failure, or cancelled
		}
		d := <-doneCh
		running--
		finished++
		if !d.ok {
			failed = true
			skip(d.i)
			continue
		}
		for _, j := range dependents[d.i] {
			if waiting[j] > 0 {
				waiting[j]--
				if waiting[j] == 0 {
					ready = append(ready, j)
				}
			}
		}
	}
	if err := workers.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// ExitStatus maps build statuses to Nix's exit code: 0 when all
// succeeded, otherwise 0x60 ORed with 4 (failed), 1 (timed out), 2 (hash
// mismatch) and 8 (not deterministic) as Nix's worker does, or 1 when no
// such failure is known. extra adds bits learned elsewhere (see
// FailureBits).
func ExitStatus(statuses []daemon.BuildStatus, extra int) int {
	mask, failed := extra, false
	for _, s := range statuses {
		switch s {
		case daemon.PermanentFailure, daemon.CachedFailure:
			mask |= 4
		case daemon.TimedOut:
			mask |= 4 | 1
		case daemon.OutputRejected:
			mask |= 4 | 2
		case daemon.NotDeterministic:
			mask |= 8
		}
		failed = failed || !s.Success()
	}
	switch {
	case mask != 0:
		return 0x60 | mask
	case failed:
		return 1
	}
	return 0
}

// FailureBits classifies a daemon error log line about a failed build
// into Nix's exit-code bits (see ExitStatus). In the default mode the
// daemon reports only the roots' results, "dependencies failed", so the
// cause of a failure deeper down is read from its log.
func FailureBits(line string) int {
	line = daemon.StripANSI(line)
	switch {
	case strings.Contains(line, "timed out after"):
		return 4 | 1
	case strings.Contains(line, "hash mismatch in fixed-output derivation"):
		return 4 | 2
	case strings.Contains(line, "may not be deterministic"):
		return 8
	case strings.Contains(line, "builder for '") && strings.Contains(line, "failed with exit code"):
		return 4
	}
	return 0
}
