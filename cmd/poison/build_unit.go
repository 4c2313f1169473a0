package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/progress"
	"github.com/poison-nix/poison/registry"
)

// failedBuilderRE finds the derivation in Nix's "builder for '…' failed"
// log line.
var failedBuilderRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`builder for '([^']+\.drv)' failed`) })

// failedDrv returns the derivation a daemon log line says failed, or "".
func failedDrv(line string) string {
	if m := failedBuilderRE().FindStringSubmatch(daemon.StripANSI(line)); m != nil {
		return m[1]
	}
	return ""
}

// failureText says in one short line why a build failed.
func failureText(msg string) string {
	msg = strings.TrimSpace(daemon.StripANSI(msg))
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	msg = strings.TrimSuffix(msg, ";")
	if m := failedBuilderRE().FindStringIndex(msg); m != nil {
		msg = "its builder" + msg[m[1]-len(" failed"):]
	}
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}

// unitOutcome is what one run of a coordinated unit built and what failed,
// as original (not rewritten) .drv paths.
type unitOutcome struct {
	built  []string
	failed []string // "NAME (DRV): why"
}

// unitResult sorts the derivations of a failed build of a unit: those
// built in this run (per derivation: the results; by the daemon: what was
// to be built and is now valid) and those that failed themselves.
func unitResult(ctx context.Context, s builder.Store, res *builder.Result, rep *builder.BuildReport, logFailed []string) (*unitOutcome, error) {
	orig := make(map[string]string, len(res.DrvPaths))
	for old, nw := range res.DrvPaths {
		orig[nw] = old
	}
	name := func(p string) string {
		if o, ok := orig[p]; ok {
			p = o
		}
		return p
	}
	u := &unitOutcome{}
	if len(rep.Derivations) > 0 {
		for _, r := range rep.Derivations {
			switch {
			case r.Status == daemon.Built:
				u.built = append(u.built, name(r.DrvPath))
			case r.Status != daemon.DependencyFailed && !r.Status.Success():
				why := failureText(r.Error)
				if r.Machine != "" {
					why += " on " + r.Machine
				}
				u.failed = append(u.failed, fmt.Sprintf("%s (%s): %s", progress.DrvName(r.DrvPath), name(r.DrvPath), why))
			}
		}
	} else if rep.Missing != nil {
		for _, d := range rep.Missing.WillBuild {
			outs, err := s.QueryDerivationOutputMap(ctx, d)
			if err != nil {
				return nil, fmt.Errorf("outputs of %s: %w", d, err)
			}
			var paths []string
			for _, p := range outs {
				paths = append(paths, p)
			}
			valid, err := s.QueryValidPaths(ctx, paths)
			if err != nil {
				return nil, err
			}
			if len(paths) > 0 && len(valid) == len(paths) {
				u.built = append(u.built, name(d))
			}
		}
		for _, d := range logFailed {
			u.failed = append(u.failed, fmt.Sprintf("%s (%s): its builder failed", progress.DrvName(d), name(d)))
		}
	}
	if len(u.failed) == 0 {
		for _, r := range rep.Roots {
			if !r.Status.Success() {
				u.failed = append(u.failed, fmt.Sprintf("%s (%s): %s", progress.DrvName(r.DrvPath), name(r.DrvPath), r.Status))
			}
		}
	}
	slices.Sort(u.built)
	u.built = slices.Compact(u.built)
	slices.Sort(u.failed)
	u.failed = slices.Compact(u.failed)
	return u, nil
}

// writeUnitDraft writes the draft registry entry of a failed unit with
// the code of `poison add` (registry.Add, the same store inspection):
// group = unit, the reason naming the failed derivations, poisoning every
// derivation of the unit built in this run. It returns the entry's path,
// or "" when nothing was built (nothing to poison).
func writeUnitDraft(ctx context.Context, e *env, dir, unit string, u *unitOutcome) (string, error) {
	if len(u.built) == 0 {
		return "", nil
	}
	reason := fmt.Sprintf("Coordinated unit %s failed: %s. The derivations of the unit that built in the same run are poisoned so that the unit is rebuilt as a whole.",
		unit, strings.Join(u.failed, "; "))
	author := registry.DefaultAuthor()
	if author == "" {
		author = "poison build --unit <poison@localhost>"
	}
	data, err := os.ReadFile(filepath.Join(dir, registry.ConfigFile))
	if err != nil {
		return "", fmt.Errorf("%w; pass --registry DIR of a registry work tree", err)
	}
	cfg, _ := registry.DecodeConfig(data) // Add reports its problems
	in := &nixInspector{env: e, storeDir: cfg.StoreDir, serialEnv: cfg.Env}
	rel, err := registry.Add(ctx, dir, registry.AddOptions{
		Reason:  reason,
		Author:  author,
		Group:   unit,
		Paths:   u.built,
		Slug:    registry.Slugify("unit " + unit + " failed"),
		Inspect: in.inspect,
		Now:     e.now(),
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.FromSlash(rel)), nil
}

// unitDraft writes the draft entry of a failed unit and says where it
// is; a failure to write it is reported, and the build's failure stands.
func unitDraft(ctx context.Context, e *env, o buildOptions, s builder.Store, res *builder.Result, rep *builder.BuildReport, logFailed []string) {
	u, err := unitResult(ctx, s, res, rep, logFailed)
	var path string
	if err == nil {
		path, err = writeUnitDraft(ctx, e, o.settings.RegistryDir(e.dir), o.unit, u)
	}
	switch {
	case err != nil:
		fmt.Fprintf(e.stderr, "poison: error: unit %s failed, and its draft registry entry could not be written: %v\n", o.unit, err)
	case path == "":
		fmt.Fprintf(e.stderr, "poison: unit %s failed; nothing of it was built in this run, so there is nothing to poison (no draft written)\n", o.unit)
	default:
		fmt.Fprintf(e.stderr, "poison: unit %s failed; draft registry entry poisoning the %d derivations of it built in this run (review it; nothing is committed):\n", o.unit, len(u.built))
		fmt.Fprintln(e.stderr, displayPath(e, path))
	}
}

// failedLog notes the derivations whose builders failed, from the
// daemon's log lines, and passes every message on.
type failedLog struct {
	next   func(daemon.Message)
	mu     sync.Mutex
	failed []string
}

func (f *failedLog) message(m daemon.Message) {
	if m.Kind == daemon.LogLine {
		if d := failedDrv(m.Text); d != "" {
			f.mu.Lock()
			f.failed = append(f.failed, d)
			f.mu.Unlock()
		}
	}
	f.next(m)
}

func (f *failedLog) drvs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.failed)
}
