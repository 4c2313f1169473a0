package builder_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
)

// TestBuildPoisoned: the original graph is built, then node b is poisoned:
// exactly b and what depends on it (c, top) run again, seen from the log
// the builders write outside the store. In both modes.
func TestBuildPoisoned(t *testing.T) {
	d := daemontest.Start(t)
	for _, perDrv := range []bool{false, true} {
		name := map[bool]string{false: "default", true: "per-derivation"}[perDrv]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g, res := rewriteGraph(t, daemontest.WorldDir(t), "b")
			ctx := daemontest.Context(t, time.Minute)
			p := daemon.NewPool(d.URI(), offlineOpts(), 3)
			defer p.Close()
			opts := builder.BuildOptions{PerDerivation: perDrv, Jobs: 2}
			rep, err := builder.Build(ctx, builder.DaemonStore(p), []string{g.Drvs["top"]}, opts)
			if err != nil || rep.Failed() {
				t.Fatalf("build original: %+v, %v", rep, err)
			}
			if got := sorted(g.Ran(t)); !slices.Equal(got, []string{"a", "b", "c", "d", "top"}) {
				t.Fatalf("original build ran %v", got)
			}
			os.WriteFile(g.Log, nil, 0o666)

			if err := builder.WritePool(ctx, p, res, 2); err != nil {
				t.Fatal(err)
			}
			opts.Drvs = res.Changed
			var plan *daemon.Missing
			opts.OnPlan = func(m *daemon.Missing) { plan = m }
			rep, err = builder.Build(ctx, builder.DaemonStore(p), res.Roots, opts)
			if err != nil || rep.Failed() {
				t.Fatalf("build poisoned: %+v, %v", rep, err)
			}
			if got := sorted(g.Ran(t)); !slices.Equal(got, []string{"b", "c", "top"}) {
				t.Errorf("poisoned build ran %v, want [b c top]", got)
			}
			if plan == nil || len(plan.WillBuild) != 3 {
				t.Errorf("plan %+v, want 3 to build", plan)
			}
			newTop := rep.Roots[0]
			if newTop.DrvPath != res.Roots[0] || newTop.Outputs["out"] == "" || newTop.Outputs["out"] == res.OutPaths[""] {
				t.Errorf("root result %+v", newTop)
			}
			for old, nw := range res.OutPaths {
				if old != nw && newTop.Outputs["out"] == old {
					t.Errorf("top output %s not rewritten", old)
				}
			}
			if perDrv && len(rep.Derivations) != 3 {
				t.Errorf("%d per-derivation results, want 3", len(rep.Derivations))
			}
		})
	}
}

// TestBuildFailure: a failing builder gives PermanentFailure (exit 100),
// its log in the message, and (per-derivation, keep-going) the branch
// that does not depend on it still builds.
func TestBuildFailure(t *testing.T) {
	d := daemontest.Start(t)
	tests := []struct {
		name      string
		perDrv    bool
		keepGoing bool
		wantRan   []string
	}{
		{"default", false, false, nil},
		{"per-derivation keep-going", true, true, []string{"a", "b", "d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := daemontest.Instantiate(t, daemontest.WorldDir(t), daemontest.GraphArgs{Fail: "b"})
			ctx := daemontest.Context(t, time.Minute)
			p := daemon.NewPool(d.URI(), offlineOpts(), 3)
			defer p.Close()
			rep, err := builder.Build(ctx, builder.DaemonStore(p), []string{g.Drvs["top"]}, builder.BuildOptions{PerDerivation: tt.perDrv, KeepGoing: tt.keepGoing, Jobs: 2})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Failed() {
				t.Fatal("build of a failing graph succeeded")
			}
			var statuses []daemon.BuildStatus
			for _, r := range append(rep.Roots, rep.Derivations...) {
				statuses = append(statuses, r.Status)
			}
			if tt.perDrv {
				if got := builder.ExitStatus(statuses, 0); got != 100 {
					t.Errorf("exit status %d, want 100 (statuses %v)", got, statuses)
				}
			} else if rep.Roots[0].Status != daemon.DependencyFailed || builder.ExitStatus(statuses, 4) != 100 || builder.ExitStatus(statuses, 0) != 1 {
				t.Errorf("default mode root %+v", rep.Roots[0])
			}
			if tt.wantRan != nil {
				if got := sorted(g.Ran(t)); !slices.Equal(got, tt.wantRan) {
					t.Errorf("ran %v, want %v", got, tt.wantRan)
				}
			}
			if ran := g.Ran(t); slices.Contains(ran, "c") || slices.Contains(ran, "top") {
				t.Errorf("dependents of the failure ran: %v", ran)
			}
		})
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		st    []daemon.BuildStatus
		extra int
		want  int
	}{
		{[]daemon.BuildStatus{daemon.Built, daemon.AlreadyValid}, 0, 0},
		{[]daemon.BuildStatus{daemon.PermanentFailure}, 0, 100},
		{[]daemon.BuildStatus{daemon.TimedOut}, 0, 101},
		{[]daemon.BuildStatus{daemon.OutputRejected}, 0, 102},
		{[]daemon.BuildStatus{daemon.NotDeterministic}, 0, 104},
		{[]daemon.BuildStatus{daemon.TimedOut, daemon.PermanentFailure}, 0, 101},
		{[]daemon.BuildStatus{daemon.MiscFailure}, 0, 1},
		{[]daemon.BuildStatus{daemon.DependencyFailed}, builder.FailureBits("\x1b[31;1merror:\x1b[0m builder for '/nix/store/x.drv' failed with exit code 2"), 100},
		{[]daemon.BuildStatus{daemon.DependencyFailed}, builder.FailureBits("building of '/nix/store/x.drv' timed out after 1 seconds"), 101},
	}
	for _, tt := range tests {
		if got := builder.ExitStatus(tt.st, tt.extra); got != tt.want {
			t.Errorf("ExitStatus(%v, %d) = %d, want %d", tt.st, tt.extra, got, tt.want)
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestBuildSubstitutes: per derivation, what a binary cache has is
// substituted (its builder never runs) and the rest is built one by one.
func TestBuildSubstitutes(t *testing.T) {
	d := daemontest.Start(t)
	dir := daemontest.WorldDir(t)
	g := daemontest.Instantiate(t, dir, daemontest.GraphArgs{})
	ctx := daemontest.Context(t, time.Minute)
	p := daemon.NewPool(d.URI(), offlineOpts(), 2)
	defer p.Close()
	if rep, err := builder.Build(ctx, builder.DaemonStore(p), []string{g.Drvs["a"]}, builder.BuildOptions{}); err != nil || rep.Failed() {
		t.Fatalf("build a: %+v, %v", rep, err)
	}
	outA := rep0(t, p, g.Drvs["a"])
	cache := "file://" + filepath.Join(dir, "cache")
	nixtest.Output(t, "nix", "--extra-experimental-features", "nix-command", "copy", "--to", cache, outA)
	p.Close() // its connections hold a temporary root on outA
	nixtest.Output(t, "nix-store", "--delete", outA)
	os.WriteFile(g.Log, nil, 0o666)

	s := daemon.DefaultSettings()
	s.Overrides = map[string]string{"substituters": cache, "require-sigs": "false"}
	sp := daemon.NewPool(d.URI(), testOpts(daemon.Options{Settings: &s}), 3)
	defer sp.Close()
	var plan *daemon.Missing
	rep, err := builder.Build(ctx, builder.DaemonStore(sp), []string{g.Drvs["top"]}, builder.BuildOptions{PerDerivation: true, Jobs: 2, OnPlan: func(m *daemon.Missing) { plan = m }})
	if err != nil || rep.Failed() {
		t.Fatalf("build top: %+v, %v", rep, err)
	}
	if plan == nil || !slices.Equal(plan.WillSubstitute, []string{outA}) || len(plan.WillBuild) != 4 {
		t.Errorf("plan %+v, want %s substituted and 4 built", plan, outA)
	}
	if got := sorted(g.Ran(t)); !slices.Equal(got, []string{"b", "c", "d", "top"}) {
		t.Errorf("ran %v, want [b c d top] (a substituted)", got)
	}
}

// rep0 returns the out path of drv.
func rep0(t *testing.T, p *daemon.Pool, drv string) string {
	t.Helper()
	var out string
	err := p.Do(context.Background(), func(c *daemon.Conn) error {
		m, err := c.QueryDerivationOutputMap(context.Background(), drv)
		out = m["out"]
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// recordingExecutor is a team's own executor: it sees every job (in an
// order that respects dependencies) and hands it to the daemon.
type recordingExecutor struct {
	next builder.Executor
	mu   sync.Mutex
	jobs []builder.Job
}

func (r *recordingExecutor) BuildDerivation(ctx context.Context, job builder.Job) (builder.DrvResult, error) {
	r.mu.Lock()
	r.jobs = append(r.jobs, job)
	r.mu.Unlock()
	res, err := r.next.BuildDerivation(ctx, job)
	res.Machine = "recorded:" + res.Machine
	return res, err
}

// TestBuildExecutor: per-derivation builds go through the Executor given,
// inputs first, each job's inputs resolved to output paths, and the
// machine it names is reported.
func TestBuildExecutor(t *testing.T) {
	d := daemontest.Start(t)
	g := daemontest.Instantiate(t, daemontest.WorldDir(t), daemontest.GraphArgs{})
	ctx := daemontest.Context(t, time.Minute)
	p := daemon.NewPool(d.URI(), offlineOpts(), 3)
	defer p.Close()
	store := builder.DaemonStore(p)
	ex := &recordingExecutor{next: store}
	rep, err := builder.Build(ctx, store, []string{g.Drvs["top"]}, builder.BuildOptions{PerDerivation: true, Executor: ex, Jobs: 2})
	if err != nil || rep.Failed() {
		t.Fatalf("build: %+v, %v", rep, err)
	}
	pos := map[string]int{}
	for i, j := range ex.jobs {
		pos[j.DrvPath] = i
		if j.Derivation == nil || len(j.Derivation.Outputs) == 0 {
			t.Errorf("job %s without its derivation", j.DrvPath)
		}
	}
	if len(ex.jobs) != 5 || pos[g.Drvs["a"]] > pos[g.Drvs["b"]] || pos[g.Drvs["b"]] > pos[g.Drvs["c"]] || pos[g.Drvs["c"]] > pos[g.Drvs["top"]] {
		t.Fatalf("jobs %v not in dependency order", pos)
	}
	outA := rep0(t, p, g.Drvs["a"])
	for _, j := range ex.jobs {
		if j.DrvPath == g.Drvs["b"] && !slices.Contains(j.Derivation.InputSrcs, outA) {
			t.Errorf("b's inputs %v lack a's output %s", j.Derivation.InputSrcs, outA)
		}
	}
	for _, r := range rep.Derivations {
		if !strings.HasPrefix(r.Machine, "recorded:") {
			t.Errorf("result of %s names machine %q", r.DrvPath, r.Machine)
		}
	}
	if rep.Roots[0].Machine == "" {
		t.Errorf("root result names no machine")
	}
}

// countingStore is a real daemon store that counts BuildPaths and
// QueryMissing calls.
type countingStore struct {
	builder.Store
	builds, missing int
}

func (s *countingStore) QueryMissing(ctx context.Context, targets []string) (*daemon.Missing, error) {
	s.missing++
	return s.Store.QueryMissing(ctx, targets)
}

func (s *countingStore) BuildPaths(ctx context.Context, targets []string) ([]daemon.BuildResult, error) {
	s.builds++
	return s.Store.BuildPaths(ctx, targets)
}

// TestBuildAlreadyValid: building roots whose outputs are all valid asks
// the store nothing to build (a nix-daemon would load the whole closure
// to say so) and reports AlreadyValid with the outputs the first build
// gave.
func TestBuildAlreadyValid(t *testing.T) {
	d := daemontest.Start(t)
	g := daemontest.Instantiate(t, daemontest.WorldDir(t), daemontest.GraphArgs{})
	ctx := daemontest.Context(t, time.Minute)
	p := daemon.NewPool(d.URI(), offlineOpts(), 2)
	defer p.Close()
	s := &countingStore{Store: builder.DaemonStore(p)}
	roots := []string{g.Drvs["top"], g.Drvs["d"]}
	first, err := builder.Build(ctx, s, roots, builder.BuildOptions{})
	if err != nil || first.Failed() || s.builds != 1 {
		t.Fatalf("first build: %+v, %v, %d BuildPaths calls", first, err, s.builds)
	}
	missing := s.missing
	again, err := builder.Build(ctx, s, roots, builder.BuildOptions{})
	if err != nil || s.builds != 1 || s.missing != missing {
		t.Fatalf("second build: %v, %d BuildPaths calls, want still 1; %d QueryMissing calls, want none", err, s.builds, s.missing-missing)
	}
	for i, r := range again.Roots {
		if r.DrvPath != roots[i] || r.Status != daemon.AlreadyValid || r.Outputs["out"] == "" || r.Outputs["out"] != first.Roots[i].Outputs["out"] {
			t.Errorf("second build root %d: %+v, first %+v", i, r, first.Roots[i])
		}
	}
	// One output missing again: the store is asked.
	if got := sorted(g.Ran(t)); !slices.Equal(got, []string{"a", "b", "c", "d", "top"}) {
		t.Fatalf("builders ran %v", got)
	}
	p.Close() // its connections hold the outputs as temporary roots
	nixtest.Output(t, "nix-store", "--delete", first.Roots[0].Outputs["out"])
	p2 := daemon.NewPool(d.URI(), offlineOpts(), 2)
	defer p2.Close()
	s.Store = builder.DaemonStore(p2)
	third, err := builder.Build(ctx, s, roots, builder.BuildOptions{})
	if err != nil || third.Failed() || s.builds != 2 || third.Roots[0].Status != daemon.Built {
		t.Fatalf("third build: %+v, %v, %d BuildPaths calls, want 2 and top built", third, err, s.builds)
	}
}
