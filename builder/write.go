package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

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
// made temporary roots, and the daemon roots each path it adds, so
// nothing written here is garbage collected while c stays open: build on
// c, or keep it open while building on other connections.
//
// Writing costs a few round trips per chunk of derivations, not one per
// derivation (see writeWith).
func Write(ctx context.Context, c *daemon.Conn, res *Result) error {
	return writeAll(ctx, c, res, true)
}

// writeAll is Write; multiple false leaves out AddMultipleToStore.
func writeAll(ctx context.Context, c *daemon.Conn, res *Result, multiple bool) error {
	w := newWriter(c, multiple)
	for start := 0; start < len(res.Changed); start += chunkMax {
		if err := w.write(ctx, res.Changed[start:min(start+chunkMax, len(res.Changed))]); err != nil {
			return err
		}
	}
	return w.root(ctx, res.Roots)
}

// RewriteWrite is Rewrite and Write at once: each rewritten derivation
// is handed to the writer as soon as it is computed, and written in
// chunks (inputs first) while the rest of the closure is rewritten, so
// that the daemon, which takes most of the time, starts early.
//
// dial is called once, from another goroutine, when the first rewritten
// derivation is ready (never when nothing is rewritten); its error is
// returned as it is. The connection stays the caller's: Write's notes on
// temporary roots apply to it. opts.NoATerm is ignored.
//
// When the rewrite fails, the writing stops and the rewrite's error is
// returned; when the daemon refuses a derivation, the rewrite stops and
// the WriteError naming it is returned. Either way the derivations
// written before are valid store paths that nothing refers to (the next
// garbage collection removes them), as when nix-instantiate fails half
// way through an evaluation.
func RewriteWrite(ctx context.Context, cl *Closure, opts Options, dial func(context.Context) (*daemon.Conn, error)) (*Result, error) {
	return rewriteWrite(ctx, cl, opts, dial, streamOptions{})
}

// streamOptions are the knobs of rewriteWrite that tests turn.
type streamOptions struct {
	chunk int        // chunkMax when 0
	edit  func(*Drv) // applied to each derivation as it is queued, one at a time
}

func rewriteWrite(ctx context.Context, cl *Closure, opts Options, dial func(context.Context) (*daemon.Conn, error), so streamOptions) (*Result, error) {
	if so.chunk <= 0 {
		so.chunk = chunkMax
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	q := &drvQueue{wake: make(chan struct{}, 1), edit: so.edit}
	opts.NoATerm = false
	opts.emit = q.push
	var w *writer
	done := make(chan error, 1)
	go func() {
		err := func() error {
			for {
				drvs, err := q.next(ctx, so.chunk)
				if err != nil || drvs == nil {
					return err
				}
				if w == nil {
					c, err := dial(ctx)
					if err != nil {
						return err
					}
					w = newWriter(c, true)
				}
				if err := w.write(ctx, drvs); err != nil {
					return err
				}
			}
		}()
		if err != nil {
			cancel(err)
		}
		done <- err
	}()
	res, err := Rewrite(ctx, cl, opts)
	if err != nil {
		cancel(err)
	}
	q.close()
	if werr := <-done; werr != nil || err != nil {
		// The first failure is the cause; the other side only saw the
		// cancellation.
		return nil, context.Cause(ctx)
	}
	if w == nil {
		return res, nil
	}
	if err := w.root(ctx, res.Roots); err != nil {
		return nil, err
	}
	return res, nil
}

// chunkMax bounds the derivations of one chunk: one QueryValidPaths and
// one AddMultipleToStore request. Small enough that a chunk refused
// because another client wrote one of its paths meanwhile (Nix 2.8
// cannot skip a valid path inside the request) costs little, large
// enough that the round trips between chunks do not count.
const chunkMax = 1024

// drvQueue hands rewritten derivations from the rewrite to the writer.
type drvQueue struct {
	mu     sync.Mutex
	drvs   []Drv
	closed bool
	wake   chan struct{} // one pending wake-up
	edit   func(*Drv)    // tests: applied to each derivation pushed
}

func (q *drvQueue) push(d Drv) {
	q.mu.Lock()
	if q.edit != nil {
		q.edit(&d)
	}
	q.drvs = append(q.drvs, d)
	q.mu.Unlock()
	q.signal()
}

func (q *drvQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

func (q *drvQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// next returns up to n derivations in the order they were pushed,
// waiting for one; nil once the queue is closed and empty.
func (q *drvQueue) next(ctx context.Context, n int) ([]Drv, error) {
	for {
		q.mu.Lock()
		if len(q.drvs) > 0 {
			k := min(n, len(q.drvs))
			out := slices.Clone(q.drvs[:k])
			q.drvs = slices.Delete(q.drvs, 0, k)
			q.mu.Unlock()
			return out, nil
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, nil
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// writer adds rewritten derivations to the store chunk by chunk, and
// makes the paths they need that it does not add temporary roots.
type writer struct {
	c        *daemon.Conn
	multiple bool
	added    map[string]bool // the derivations of every chunk so far
	rooted   map[string]bool
}

func newWriter(c *daemon.Conn, multiple bool) *writer {
	return &writer{c: c, multiple: multiple, added: map[string]bool{}, rooted: map[string]bool{}}
}

// write adds drvs, in order: each derivation's rewritten inputs are
// earlier in drvs or in an earlier chunk. Its other references are made
// temporary roots first.
func (w *writer) write(ctx context.Context, drvs []Drv) error {
	for _, d := range drvs {
		w.added[d.Path] = true
	}
	var roots []string
	for _, d := range drvs {
		for _, r := range d.References {
			if !w.added[r] && !w.rooted[r] {
				w.rooted[r] = true
				roots = append(roots, r)
			}
		}
	}
	return writeWith(ctx, w.c, drvs, roots, w.multiple)
}

// root makes the paths of paths that were not written temporary roots.
func (w *writer) root(ctx context.Context, paths []string) error {
	var roots []string
	for _, p := range paths {
		if !w.added[p] && !w.rooted[p] {
			w.rooted[p] = true
			roots = append(roots, p)
		}
	}
	if len(roots) == 0 {
		return nil
	}
	if err := w.c.AddTempRoots(ctx, roots); err != nil {
		return fmt.Errorf("write: protect inputs from garbage collection: %w", err)
	}
	return nil
}

// writeWith makes roots temporary roots on c, then adds drvs in order.
//
// Against a daemon of protocol 1.32 or newer (and multiple true) it asks
// once which of drvs are valid already, roots those, and sends the others
// in one AddMultipleToStore request (the .drv files as NARs with their
// text CA field, which is what lets an untrusted client add them). The
// daemon checks each NAR against its hash, the CA field against the
// content, the path against the CA field, and the output paths of each
// .drv. When it refuses anything, or is older, the derivations still
// missing are added with pipelined AddToStore requests, one per
// derivation: the daemon then computes every path itself and its first
// refusal names the derivation.
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
