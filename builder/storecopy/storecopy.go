// Package storecopy copies store paths between Nix stores the way
// `nix copy` does: it computes the closure the destination lacks (path
// infos from the source, QueryValidPaths on the destination) and streams
// the NARs from the source into the destination, references first, with
// their path info (narHash, narSize, references, deriver, signatures,
// content address). NARs pass through a small buffer: a copy never holds
// a NAR whole in memory, whatever its size.
//
// Stores are small interfaces; Daemon adapts a pool of nix-daemon
// connections (a socket, `nix-daemon --stdio`, ssh-ng://) to both.
package storecopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/poison-nix/poison/builder/daemon"
)

// Source is a store paths are copied from.
type Source interface {
	// QueryPathInfos returns the path infos of paths; nil for a path
	// that is not valid.
	QueryPathInfos(ctx context.Context, paths []string) ([]*daemon.PathInfo, error)
	// NarsFromPaths hands the NAR of each path to each, in order, as a
	// reader of exactly NarSize bytes valid until each returns.
	NarsFromPaths(ctx context.Context, infos []*daemon.PathInfo, each func(i int, r io.Reader) error) error
}

// Dest is a store paths are copied to.
type Dest interface {
	// QueryValidPaths returns the subset of paths valid in the store.
	QueryValidPaths(ctx context.Context, paths []string) ([]string, error)
	// AddNars adds n paths in order; next gives each with its NAR, which
	// must be read before next is called again.
	AddNars(ctx context.Context, n int, next func(i int) (daemon.NarSource, error), opts AddOptions) error
}

// AddOptions say how a destination takes paths.
type AddOptions struct {
	// NoCheckSigs asks the destination not to check signatures (Nix's
	// --no-check-sigs). A daemon honours it only for a trusted client.
	NoCheckSigs bool
	// Repair re-adds paths that are already valid (trusted clients only).
	Repair bool
	// OnePerPath asks for one request per path (AddToStoreNar) instead
	// of one stream of all of them (AddMultipleToStore), so that each
	// refusal is the refused path's own and a path that turned valid
	// meanwhile cannot put the stream out of step. Copy falls back to it
	// when a stream is refused.
	OnePerPath bool
}

// Options configure a copy.
type Options struct {
	AddOptions
	// Progress, when set, is called after each path is handed to the
	// destination with the number of paths and NAR bytes sent so far.
	Progress func(paths int, bytes uint64)
}

// Result says what a copy did.
type Result struct {
	// Copied are the paths added to the destination, references first.
	Copied []string
	// Bytes is the sum of their NAR sizes.
	Bytes uint64
	// Valid is how many paths of the closure the destination had.
	Valid int
}

// Closure returns the path infos of the closure of paths in src,
// references first (each path after everything it refers to), in a
// deterministic order. A path that is not valid in src is an error.
func Closure(ctx context.Context, src Source, paths []string) ([]*daemon.PathInfo, error) {
	byPath := map[string]*daemon.PathInfo{}
	frontier := dedupe(paths)
	for _, p := range frontier {
		byPath[p] = nil
	}
	for len(frontier) > 0 {
		infos, err := src.QueryPathInfos(ctx, frontier)
		if err != nil {
			return nil, fmt.Errorf("query the source store: %w", err)
		}
		var next []string
		for i, info := range infos {
			if info == nil {
				return nil, fmt.Errorf("%s is not valid in the source store", frontier[i])
			}
			byPath[info.Path] = info
			for _, r := range info.References {
				if _, seen := byPath[r]; !seen {
					byPath[r] = nil
					next = append(next, r)
				}
			}
		}
		frontier = next
	}
	return topoSort(byPath)
}

// Missing returns the path infos of the closure of paths in src that dst
// lacks, references first, and how many paths of the closure dst has.
func Missing(ctx context.Context, src Source, dst Dest, paths []string) ([]*daemon.PathInfo, int, error) {
	closure, err := Closure(ctx, src, paths)
	if err != nil {
		return nil, 0, err
	}
	return Lacking(ctx, dst, closure)
}

// Lacking returns the path infos of closure (from Closure) that dst
// lacks, in the same order, and how many of them dst has.
func Lacking(ctx context.Context, dst Dest, closure []*daemon.PathInfo) ([]*daemon.PathInfo, int, error) {
	all := make([]string, len(closure))
	for i, info := range closure {
		all[i] = info.Path
	}
	valid, err := dst.QueryValidPaths(ctx, all)
	if err != nil {
		return nil, 0, fmt.Errorf("query the destination store: %w", err)
	}
	have := make(map[string]bool, len(valid))
	for _, v := range valid {
		have[v] = true
	}
	missing := make([]*daemon.PathInfo, 0, len(closure)-len(valid))
	for _, info := range closure {
		if !have[info.Path] {
			missing = append(missing, info)
		}
	}
	return missing, len(closure) - len(missing), nil
}

// Warmer is a Dest that can connect before its first request (a Daemon
// logs in), which CopyClosure overlaps with walking the closure.
type Warmer interface {
	Warm(ctx context.Context) error
}

// CopyClosure copies the closure of paths from src to dst: what dst lacks,
// references first. A Warmer destination connects while the closure is
// walked.
func CopyClosure(ctx context.Context, src Source, dst Dest, paths []string, opts Options) (*Result, error) {
	var closure []*daemon.PathInfo
	var err error
	if w, ok := dst.(Warmer); ok {
		closure, err = closureWarming(ctx, src, w, paths)
	} else {
		closure, err = Closure(ctx, src, paths)
	}
	if err != nil {
		return nil, err
	}
	missing, valid, err := Lacking(ctx, dst, closure)
	if err != nil {
		return nil, err
	}
	res, err := Copy(ctx, src, dst, missing, opts)
	if res != nil {
		res.Valid = valid
	}
	return res, err
}

// closureWarming is Closure while w connects.
func closureWarming(ctx context.Context, src Source, w Warmer, paths []string) ([]*daemon.PathInfo, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	warmed := make(chan error, 1)
	go func() { warmed <- w.Warm(wctx) }()
	closure, err := Closure(ctx, src, paths)
	if err != nil {
		cancel()
		<-warmed
		return nil, err
	}
	if err := <-warmed; err != nil {
		return nil, fmt.Errorf("connect to the destination store: %w", err)
	}
	return closure, nil
}

// Copy streams the NARs of infos from src into dst, in the order given
// (references first: see Missing). Each path is registered with its
// source path info, not marked ultimately trusted (as `nix copy` does).
//
// A Daemon destination takes them in one stream (AddMultipleToStore)
// when it speaks it. Nix 2.8 skips the NAR of a path that is already
// valid there, which puts the rest of such a stream out of step, so only
// missing paths must be given; if the destination refuses the stream
// (a refused path, or one another client added meanwhile), Copy asks
// again which paths it lacks and adds those one request per path, whose
// refusals then name each path.
func Copy(ctx context.Context, src Source, dst Dest, infos []*daemon.PathInfo, opts Options) (*Result, error) {
	if p := opts.Progress; p != nil {
		// Monotonic: a stream handed over may be more than the fallback
		// finds added.
		var mu sync.Mutex
		high := 0
		opts.Progress = func(n int, b uint64) {
			mu.Lock()
			defer mu.Unlock()
			if n > high {
				high = n
				p(n, b)
			}
		}
	}
	res, err := copyOnce(ctx, src, dst, infos, opts)
	var se *streamError
	if err == nil || !errors.As(err, &se) || opts.OnePerPath {
		return res, err
	}
	paths := make([]string, len(infos))
	for i, info := range infos {
		paths[i] = info.Path
	}
	valid, qerr := dst.QueryValidPaths(ctx, paths)
	if qerr != nil {
		return res, fmt.Errorf("%w; then asking what the destination lacks: %w", err, qerr)
	}
	have := make(map[string]bool, len(valid))
	for _, v := range valid {
		have[v] = true
	}
	// What the stream added before it stopped: handed over and valid now.
	done := &Result{}
	sent := make(map[string]bool, len(res.Copied))
	for _, p := range res.Copied {
		sent[p] = true
	}
	var rest []*daemon.PathInfo
	var validBytes uint64
	for _, info := range infos {
		switch {
		case !have[info.Path]:
			rest = append(rest, info)
			continue
		case sent[info.Path]:
			done.Copied = append(done.Copied, info.Path)
			done.Bytes += info.NarSize
		}
		validBytes += info.NarSize
	}
	o := opts
	o.OnePerPath = true
	if opts.Progress != nil {
		base := len(infos) - len(rest)
		o.Progress = func(n int, b uint64) { opts.Progress(base+n, validBytes+b) }
	}
	more, err := copyOnce(ctx, src, dst, rest, o)
	if more != nil {
		done.Copied = append(done.Copied, more.Copied...)
		done.Bytes += more.Bytes
	}
	return done, err
}

// streamError is a destination's refusal of a stream of paths (Daemon's
// AddMultipleToStore): Copy retries what is still missing path by path.
type streamError struct{ err error }

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

func copyOnce(ctx context.Context, src Source, dst Dest, infos []*daemon.PathInfo, opts Options) (*Result, error) {
	res := &Result{}
	if len(infos) == 0 {
		return res, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o, ok := src.(NarOpener); ok {
		return copyOpened(ctx, o, dst, infos, opts)
	}

	// The source pushes NARs (a callback per NAR), the destination pulls
	// them (next): hand each reader over and wait until the destination
	// asks for the next one, which means it has read this one.
	type handoff struct {
		r    io.Reader
		done chan struct{}
	}
	ch := make(chan handoff)
	srcDone := make(chan error, 1)
	go func() {
		srcDone <- src.NarsFromPaths(ctx, infos, func(i int, r io.Reader) error {
			h := handoff{r: r, done: make(chan struct{})}
			select {
			case ch <- h:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case <-h.done:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	// next runs on the destination's writer, which may outlive AddNars
	// after a failure: mu guards what it shares.
	var mu sync.Mutex
	var cur *handoff
	release := func() {
		if cur != nil {
			close(cur.done)
			cur = nil
		}
	}
	var srcErr error
	srcEnded := false
	next := func(i int) (daemon.NarSource, error) {
		mu.Lock()
		release()
		if i > 0 {
			res.handed(infos, i, opts.Progress)
		}
		mu.Unlock()
		select {
		case h := <-ch:
			mu.Lock()
			cur = &h
			mu.Unlock()
			info := *infos[i]
			info.Ultimate = false
			return daemon.NarSource{Info: &info, NAR: h.r}, nil
		case err := <-srcDone:
			if err == nil {
				err = errors.New("the source store sent fewer NARs than asked for")
			}
			mu.Lock()
			srcErr, srcEnded = err, true
			mu.Unlock()
			return daemon.NarSource{}, fmt.Errorf("read %s from the source store: %w", infos[i].Path, err)
		case <-ctx.Done():
			return daemon.NarSource{}, ctx.Err()
		}
	}
	err := dst.AddNars(ctx, len(infos), next, opts.AddOptions)
	mu.Lock()
	release()
	if err != nil {
		cancel()
	}
	ended := srcEnded
	mu.Unlock()
	if !ended {
		if e := <-srcDone; e != nil {
			mu.Lock()
			srcErr = e
			mu.Unlock()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		// res is what was handed over before the failure.
		return &Result{Copied: slices.Clone(res.Copied), Bytes: res.Bytes}, err
	}
	if srcErr != nil {
		return res, fmt.Errorf("read from the source store: %w", srcErr)
	}
	res.handed(infos, len(infos), opts.Progress)
	return res, nil
}

// topoSort orders the infos so that every path comes after its
// references (self-references aside), ties broken by path.
func topoSort(byPath map[string]*daemon.PathInfo) ([]*daemon.PathInfo, error) {
	keys := make([]string, 0, len(byPath))
	for k := range byPath {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	const (
		unseen = iota
		active
		done
	)
	state := make(map[string]int, len(keys))
	out := make([]*daemon.PathInfo, 0, len(keys))
	// Iterative depth-first search: closures can be deep chains.
	type frame struct {
		p    string
		refs []string
	}
	for _, k := range keys {
		if state[k] != unseen {
			continue
		}
		state[k] = active
		stack := []frame{{k, sortedRefs(byPath[k])}}
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if len(top.refs) == 0 {
				state[top.p] = done
				out = append(out, byPath[top.p])
				stack = stack[:len(stack)-1]
				continue
			}
			r := top.refs[0]
			top.refs = top.refs[1:]
			if r == top.p {
				continue
			}
			switch state[r] {
			case active:
				return nil, fmt.Errorf("reference cycle through %s and %s", top.p, r)
			case unseen:
				state[r] = active
				stack = append(stack, frame{r, sortedRefs(byPath[r])})
			}
		}
	}
	return out, nil
}

func sortedRefs(info *daemon.PathInfo) []string {
	refs := slices.Clone(info.References)
	slices.Sort(refs)
	return refs
}

func dedupe(paths []string) []string {
	out := slices.Clone(paths)
	slices.Sort(out)
	return slices.Compact(out)
}

// Daemon adapts a pool of daemon connections to Source and Dest.
type Daemon struct {
	Pool *daemon.Pool
}

// QueryPathInfos implements Source.
func (d Daemon) QueryPathInfos(ctx context.Context, paths []string) (infos []*daemon.PathInfo, err error) {
	err = d.Pool.Do(ctx, func(c *daemon.Conn) error {
		infos, err = c.QueryPathInfos(ctx, paths)
		return err
	})
	return infos, err
}

// NarsFromPaths implements Source.
func (d Daemon) NarsFromPaths(ctx context.Context, infos []*daemon.PathInfo, each func(int, io.Reader) error) error {
	return d.Pool.Do(ctx, func(c *daemon.Conn) error { return c.NarsFromPaths(ctx, infos, each) })
}

// Warm implements Warmer: it dials a connection (an ssh login) and puts
// it in the pool for the requests that follow.
func (d Daemon) Warm(ctx context.Context) error {
	c, err := d.Pool.Get(ctx)
	if err != nil {
		return err
	}
	d.Pool.Put(c, false)
	return nil
}

// QueryValidPaths implements Dest (without substituting).
func (d Daemon) QueryValidPaths(ctx context.Context, paths []string) (valid []string, err error) {
	err = d.Pool.Do(ctx, func(c *daemon.Conn) error {
		valid, err = c.QueryValidPaths(ctx, paths, false)
		return err
	})
	return valid, err
}

// AddNars implements Dest: one AddMultipleToStore stream when the
// daemon speaks it (protocol 1.32, Nix 2.4) and opts.OnePerPath is not
// set, as `nix copy` sends; pipelined AddToStoreNar requests otherwise,
// whose refusals of single paths are joined into the error. Give only
// paths the store lacks (see Copy).
func (d Daemon) AddNars(ctx context.Context, n int, next func(int) (daemon.NarSource, error), opts AddOptions) error {
	return d.Pool.Do(ctx, func(c *daemon.Conn) error {
		if c.Version() >= daemon.MultipleMinVersion && !opts.OnePerPath {
			err := c.AddMultipleToStore(ctx, n, func(i int) (daemon.PathInfo, io.Reader, error) {
				s, err := next(i)
				if err == nil && (s.Info == nil || s.NAR == nil) {
					err = fmt.Errorf("path %d of %d: no path info or NAR", i+1, n)
				}
				if err != nil {
					return daemon.PathInfo{}, nil, err
				}
				return *s.Info, s.NAR, nil
			}, opts.Repair, opts.NoCheckSigs)
			var de *daemon.Error
			if errors.As(err, &de) {
				return &streamError{err}
			}
			return err
		}
		errs, err := c.AddToStoreNars(ctx, n, next, opts.Repair, opts.NoCheckSigs)
		if err != nil {
			return err
		}
		return joinRefusals(errs)
	})
}

// joinRefusals reports the first refusals (a refused path makes every
// path referring to it fail too: the first is the cause).
func joinRefusals(errs []error) error {
	var first error
	n := 0
	for _, e := range errs {
		if e != nil {
			if first == nil {
				first = e
			}
			n++
		}
	}
	switch n {
	case 0:
		return nil
	case 1:
		return first
	}
	return fmt.Errorf("%w (and %d more paths refused)", first, n-1)
}

// handed records infos[n-1] as copied (the destination has read its NAR)
// and reports n paths to progress.
func (r *Result) handed(infos []*daemon.PathInfo, n int, progress func(int, uint64)) {
	last := infos[n-1]
	r.Copied = append(r.Copied, last.Path)
	r.Bytes += last.NarSize
	if progress != nil {
		progress(n, r.Bytes)
	}
}

// NarOpener is a Source that opens each NAR when asked (a store on this
// machine's files): Copy then reads NARs on the destination's writer, with
// no hand-over between goroutines.
type NarOpener interface {
	OpenNar(ctx context.Context, info *daemon.PathInfo) (io.ReadCloser, error)
}

func copyOpened(ctx context.Context, src NarOpener, dst Dest, infos []*daemon.PathInfo, opts Options) (*Result, error) {
	res := &Result{}
	// next runs on the destination's writer, which may outlive AddNars
	// after a failure: mu guards what it shares, ended stops it.
	var mu sync.Mutex
	var cur io.ReadCloser
	ended := false
	closeCur := func() {
		if cur != nil {
			cur.Close()
			cur = nil
		}
	}
	next := func(i int) (daemon.NarSource, error) {
		mu.Lock()
		defer mu.Unlock()
		closeCur()
		if ended {
			return daemon.NarSource{}, errors.New("the copy has ended")
		}
		if i > 0 {
			res.handed(infos, i, opts.Progress)
		}
		r, err := src.OpenNar(ctx, infos[i])
		if err != nil {
			return daemon.NarSource{}, fmt.Errorf("read from the source store: %w", err)
		}
		cur = r
		info := *infos[i]
		info.Ultimate = false
		return daemon.NarSource{Info: &info, NAR: r}, nil
	}
	err := dst.AddNars(ctx, len(infos), next, opts.AddOptions)
	mu.Lock()
	defer mu.Unlock()
	closeCur()
	ended = true
	if err != nil {
		return &Result{Copied: slices.Clone(res.Copied), Bytes: res.Bytes}, err
	}
	res.handed(infos, len(infos), opts.Progress)
	return res, nil
}
