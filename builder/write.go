package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/poison-nix/poison/builder/daemon"
)

// WriteError is the daemon's refusal of one rewritten derivation.
type WriteError struct {
	DrvPath    string // the .drv path the rewrite computed
	OldDrvPath string // the original it was rewritten from
	Err        error
}

func (e *WriteError) Error() string {
	return fmt.Sprintf("write %s (rewritten from %s): %v", e.DrvPath, e.OldDrvPath, e.Err)
}

func (e *WriteError) Unwrap() error { return e.Err }

// Write adds the rewritten derivations of res to the store behind c, in
// topological order, as text objects whose references are their inputs
// (inputDrvs ∪ inputSrcs). The daemon checks every output path of every
// .drv it registers, so it is the referee of the rewrite: a path it
// registers under another name than res computed, or refuses, is an
// error naming the derivation.
//
// The unchanged inputs of the rewritten derivations and the roots are
// made temporary roots first, and the daemon roots each path it adds, so
// nothing written here is garbage collected while c stays open: build on
// c, or keep it open while building on other connections.
//
// Writing costs a few round trips in all, not one per derivation (see
// write).
func Write(ctx context.Context, c *daemon.Conn, res *Result) error {
	return write(ctx, c, res.Changed, tempRoots(res))
}

// tempRoots returns the unchanged inputs of the rewritten derivations and
// the unchanged roots: the paths a build of res needs that Write does not
// add.
func tempRoots(res *Result) []string {
	changed := make(map[string]bool, len(res.Changed))
	for _, d := range res.Changed {
		changed[d.Path] = true
	}
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if !changed[p] && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, d := range res.Changed {
		for _, r := range d.References {
			add(r)
		}
	}
	for _, r := range res.Roots {
		add(r)
	}
	return out
}

// write makes roots temporary roots on c, then adds drvs in order.
//
// Against a daemon of protocol 1.32 or newer it asks once which of drvs
// are valid already, roots those, and sends the others in one
// AddMultipleToStore request (the .drv files as NARs with their text CA
// field, which is what lets an untrusted client add them). The daemon
// checks each NAR against its hash, the CA field against the content, the
// path against the CA field, and the output paths of each .drv.
// When it refuses anything, or is older, the derivations still missing
// are added with pipelined AddToStore requests, one per derivation: the
// daemon then computes every path itself and its first refusal names the
// derivation.
func write(ctx context.Context, c *daemon.Conn, drvs []Drv, roots []string) error {
	return writeWith(ctx, c, drvs, roots, true)
}

// writeWith is write; multiple false leaves out AddMultipleToStore (the
// benchmarks compare both).
func writeWith(ctx context.Context, c *daemon.Conn, drvs []Drv, roots []string, multiple bool) error {
	if multiple && len(drvs) > 0 && c.Version() >= daemon.MultipleMinVersion {
		var err error
		drvs, roots, err = writeMultiple(ctx, c, drvs, roots)
		if err != nil {
			return err
		}
	}
	if len(roots) > 0 {
		if err := c.AddTempRoots(ctx, roots); err != nil {
			return fmt.Errorf("write: protect inputs from garbage collection: %w", err)
		}
	}
	if len(drvs) == 0 {
		return nil
	}
	return addTexts(ctx, c, drvs)
}

// writeMultiple adds drvs with AddMultipleToStore, after rooting roots
// and the derivations already valid. It returns what is left for
// AddToStore: nothing after success; after a refusal, the derivations
// still not valid (roots are then all rooted).
func writeMultiple(ctx context.Context, c *daemon.Conn, drvs []Drv, roots []string) (left []Drv, leftRoots []string, err error) {
	paths := make([]string, len(drvs))
	for i, d := range drvs {
		paths[i] = d.Path
	}
	valid, err := c.QueryValidPaths(ctx, paths, false)
	if err != nil {
		return nil, nil, fmt.Errorf("write: query which rewritten derivations are valid: %w", err)
	}
	if len(valid) > 0 {
		// Root the valid ones, then ask again: one collected in between
		// is added below like the others.
		roots = append(slices.Clone(roots), valid...)
	}
	if len(roots) > 0 {
		if err := c.AddTempRoots(ctx, roots); err != nil {
			return nil, nil, fmt.Errorf("write: protect inputs from garbage collection: %w", err)
		}
	}
	if len(valid) > 0 {
		if valid, err = c.QueryValidPaths(ctx, valid, false); err != nil {
			return nil, nil, fmt.Errorf("write: query which rewritten derivations are valid: %w", err)
		}
	}
	isValid := make(map[string]bool, len(valid))
	for _, p := range valid {
		isValid[p] = true
	}
	todo := make([]Drv, 0, len(drvs)-len(valid))
	for _, d := range drvs {
		if !isValid[d.Path] {
			todo = append(todo, d)
		}
	}
	if len(todo) == 0 {
		return nil, nil, nil
	}
	err = c.AddMultipleToStore(ctx, len(todo), func(i int) (daemon.PathInfo, io.Reader, error) {
		d := todo[i]
		info, r := daemon.TextNAR(d.Path, daemon.Text{Name: d.Name + ".drv", Content: d.ATerm, References: d.References})
		return info, r, nil
	}, false, false)
	var de *daemon.Error
	switch {
	case err == nil:
		return nil, nil, nil
	case !errors.As(err, &de):
		return nil, nil, fmt.Errorf("write %d rewritten derivations: %w", len(todo), err)
	}
	// Refused (a wrong derivation, or one that turned valid meanwhile,
	// which Nix 2.8 cannot skip in this request): add what is still
	// missing one by one, so that the daemon names the culprit.
	todoPaths := make([]string, len(todo))
	for i, d := range todo {
		todoPaths[i] = d.Path
	}
	if valid, err = c.QueryValidPaths(ctx, todoPaths, false); err != nil {
		return nil, nil, fmt.Errorf("write: query which rewritten derivations are valid: %w", err)
	}
	clear(isValid)
	for _, p := range valid {
		isValid[p] = true
	}
	left = todo[:0]
	for _, d := range todo {
		if !isValid[d.Path] {
			left = append(left, d)
		}
	}
	return left, nil, nil
}

// addTexts adds drvs with pipelined AddToStore requests and checks that
// the daemon registered each under the path the rewrite computed.
func addTexts(ctx context.Context, c *daemon.Conn, drvs []Drv) error {
	texts := make([]daemon.Text, len(drvs))
	for i, d := range drvs {
		texts[i] = daemon.Text{Name: d.Name + ".drv", Content: d.ATerm, References: d.References}
	}
	paths, errs, err := c.AddTexts(ctx, texts)
	if err != nil {
		return fmt.Errorf("write %d rewritten derivations: %w", len(texts), err)
	}
	// Report the first refusal: later ones usually only say that it is
	// missing.
	var first error
	for i, d := range drvs {
		var e error
		switch {
		case errs[i] != nil:
			e = errs[i]
			var de *daemon.Error
			if errors.As(e, &de) {
				e = errors.New(de.Message)
			}
		case paths[i] != d.Path:
			e = fmt.Errorf("the daemon registered it as %s; the rewrite and Nix disagree on its hash", paths[i])
		}
		if e != nil && first == nil {
			first = &WriteError{DrvPath: d.Path, OldDrvPath: d.OldPath, Err: e}
		}
	}
	return first
}

// WritePool is Write on one connection of p, which stays in the pool
// (and so keeps every written path a temporary root) until p is closed.
//
// conns is how many connections the caller would allow; writing uses one
// whatever it is. The daemon's workers share one SQLite database: two
// writing at once make Nix retry conflicting transactions after random
// sleeps of up to 100 ms (measured on Nix 2.8: about one transaction in
// ten), which costs more than the second core gains. See
// docs/performance.md.
func WritePool(ctx context.Context, p *daemon.Pool, res *Result, conns int) error {
	_ = conns
	return p.Do(ctx, func(c *daemon.Conn) error { return Write(ctx, c, res) })
}
