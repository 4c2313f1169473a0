package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/builder/storecopy"
	"github.com/poison-nix/poison/internal/progress"
)

// homeStore is the store the .drv files of a build are read from when the
// build store is remote: this machine's, through its daemon.
const homeStore = "auto"

// remoteStore reports whether store is on another machine, so that the
// .drv files poison read here may be missing there.
func remoteStore(store string) bool { return strings.HasPrefix(store, "ssh-ng://") }

// remoteInputs returns what the build store must hold before the
// rewritten .drv files are written to it: the references of every
// rewritten .drv that are not rewritten themselves (unchanged .drv files
// and input sources), and the roots left unchanged.
func remoteInputs(res *builder.Result) []string {
	changed := make(map[string]bool, len(res.Changed))
	for _, d := range res.Changed {
		changed[d.Path] = true
	}
	need := map[string]bool{}
	for _, d := range res.Changed {
		for _, r := range d.References {
			if !changed[r] {
				need[r] = true
			}
		}
	}
	for _, r := range res.Roots {
		if !changed[r] {
			need[r] = true
		}
	}
	return slices.Sorted(maps.Keys(need))
}

// openHome connects to the home store with the build's options (its
// messages are not shown: copies report themselves).
func openHome(ctx context.Context, dopts daemon.Options) (storecopy.Daemon, error) {
	dopts.Log = nil
	p := daemon.NewPool(homeStore, dopts, 1)
	c, err := p.Get(ctx)
	if err != nil {
		p.Close()
		return storecopy.Daemon{}, withHint(fmt.Errorf("build: connect to this machine's store to copy from it: %w", err), "start the nix-daemon here, or build with --store auto")
	}
	p.Put(c, false)
	return storecopy.Daemon{Pool: p}, nil
}

// copyInputs copies to the remote build store what it lacks of the
// closure of remoteInputs, from the home store, before the rewritten .drv
// files are written there. Everything copied is content-addressed (.drv
// files and sources), which any store accepts unsigned.
func copyInputs(ctx context.Context, e *env, build *daemon.Pool, store string, dopts daemon.Options, res *builder.Result) error {
	need := remoteInputs(res)
	if len(need) == 0 {
		return nil
	}
	home, err := openHome(ctx, dopts)
	if err != nil {
		return err
	}
	defer home.Pool.Close()
	start := time.Now()
	r, err := storecopy.CopyClosure(ctx, localSource(home, homeStore, dopts.StoreDir), storecopy.Daemon{Pool: build}, need, storecopy.Options{})
	if err != nil {
		return copyError(fmt.Errorf("build: copy the inputs the store %s lacks: %w", store, err))
	}
	if len(r.Copied) > 0 {
		fmt.Fprintf(e.stderr, "poison: copied %d paths (%s) that %s lacked in %s\n", len(r.Copied), progress.MiB(r.Bytes), store, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// copyBack copies the closures of the built outputs of the roots from the
// remote build store to the home store. It asks the home store not to
// check signatures (these are the user's own builds); the daemon honours
// that for trusted users only, others need the outputs signed.
func copyBack(ctx context.Context, e *env, build *daemon.Pool, store string, dopts daemon.Options, rep *builder.BuildReport) error {
	var outs []string
	for _, r := range rep.Roots {
		if r.Status.Success() {
			outs = append(outs, slices.Collect(maps.Values(r.Outputs))...)
		}
	}
	if len(outs) == 0 {
		return nil
	}
	home, err := openHome(ctx, dopts)
	if err != nil {
		return err
	}
	defer home.Pool.Close()
	start := time.Now()
	r, err := storecopy.CopyClosure(ctx, storecopy.Daemon{Pool: build}, home, outs, storecopy.Options{AddOptions: storecopy.AddOptions{NoCheckSigs: true}})
	if err != nil {
		err = fmt.Errorf("build: copy the outputs back from %s: %w", store, err)
		if strings.Contains(err.Error(), "lacks a valid signature") {
			return withHint(err, "this machine's nix-daemon takes unsigned paths from trusted users only: add the user to trusted-users, or sign the outputs on the builder (secret-key-files)")
		}
		return err
	}
	fmt.Fprintf(e.stderr, "poison: copied %d paths (%s) back from %s in %s\n", len(r.Copied), progress.MiB(r.Bytes), store, time.Since(start).Round(time.Millisecond))
	return nil
}

// homeLookup answers installable resolution from the home store when the
// build store is remote: an output path or result link given here names
// a path of this machine, and its deriver is here (as the .drv files
// poison reads are). It connects on the first question only.
type homeLookup struct {
	dopts daemon.Options
	once  sync.Once
	pool  *daemon.Pool
	c     *daemon.Conn
	err   error
}

func (h *homeLookup) conn(ctx context.Context) (*daemon.Conn, error) {
	h.once.Do(func() {
		o := h.dopts
		o.Log = nil
		h.pool = daemon.NewPool(homeStore, o, 1)
		if h.c, h.err = h.pool.Get(ctx); h.err != nil {
			h.err = withHint(fmt.Errorf("build: connect to this machine's store to find the derivation of an output path: %w", h.err), "start the nix-daemon here, or pass the .drv path")
		}
	})
	return h.c, h.err
}

// QueryPathInfo asks the home store (installable.Store).
func (h *homeLookup) QueryPathInfo(ctx context.Context, path string) (*daemon.PathInfo, error) {
	c, err := h.conn(ctx)
	if err != nil {
		return nil, err
	}
	return c.QueryPathInfo(ctx, path)
}

// IsValidPath asks the home store (installable.Store).
func (h *homeLookup) IsValidPath(ctx context.Context, path string) (bool, error) {
	c, err := h.conn(ctx)
	if err != nil {
		return false, err
	}
	return c.IsValidPath(ctx, path)
}

// close ends the connection, if one was made.
func (h *homeLookup) close() {
	if h.pool == nil {
		return
	}
	if h.c != nil {
		h.pool.Put(h.c, false)
	}
	h.pool.Close()
}
