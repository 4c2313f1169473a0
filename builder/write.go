package builder

import (
	"context"
	"errors"
	"fmt"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/sourcegraph/conc/pool"
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
// Requests are pipelined: writing costs no round trip per derivation.
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
func write(ctx context.Context, c *daemon.Conn, drvs []Drv, roots []string) error {
	if len(roots) > 0 {
		if err := c.AddTempRoots(ctx, roots); err != nil {
			return fmt.Errorf("write: protect inputs from garbage collection: %w", err)
		}
	}
	if len(drvs) == 0 {
		return nil
	}
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

// WritePool is Write over several connections: derivations of the same
// depth (no rewritten inputs among each other) are added in parallel, one
// batch per connection, depth after depth. Each path stays a temporary
// root while the connection that added it is open, that is until the pool
// is closed.
func WritePool(ctx context.Context, p *daemon.Pool, res *Result, conns int) error {
	if conns <= 1 || len(res.Changed) < 64 {
		return p.Do(ctx, func(c *daemon.Conn) error { return Write(ctx, c, res) })
	}
	// Temp roots for the inputs and roots, on one connection kept in the
	// pool.
	if err := p.Do(ctx, func(c *daemon.Conn) error { return write(ctx, c, nil, tempRoots(res)) }); err != nil {
		return err
	}
	level := make(map[string]int, len(res.Changed))
	var levels [][]Drv
	for _, d := range res.Changed {
		l := 0
		for _, r := range d.References {
			if rl, ok := level[r]; ok && rl+1 > l {
				l = rl + 1
			}
		}
		level[d.Path] = l
		for len(levels) <= l {
			levels = append(levels, nil)
		}
		levels[l] = append(levels[l], d)
	}
	for _, ds := range levels {
		n := min(conns, (len(ds)+31)/32)
		g := pool.New().WithContext(ctx).WithCancelOnError().WithFirstError()
		for k := range n {
			part := ds[k*len(ds)/n : (k+1)*len(ds)/n]
			g.Go(func(ctx context.Context) error {
				return p.Do(ctx, func(c *daemon.Conn) error { return write(ctx, c, part, nil) })
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	return nil
}
