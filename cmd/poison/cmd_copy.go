package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/builder/storecopy"
	"github.com/poison-nix/poison/internal/nixconf"
	"github.com/poison-nix/poison/internal/progress"
	"github.com/poison-nix/poison/storepath"
)

// copyOptions are the settings of one `poison copy`.
type copyOptions struct {
	to, from    string
	storeDir    string
	noCheckSigs bool
	paths       []string
}

func copyCommand() command {
	return command{
		name:    "copy",
		summary: "copy store paths and their closures to another store (what it lacks), as nix copy does",
		usage:   "--to URI [--from URI] [--no-check-sigs] PATH...",
		setup: func(fs *flag.FlagSet) runFunc {
			var o copyOptions
			fs.StringVar(&o.to, "to", "", "store `URI` to copy to (ssh-ng://HOST, daemon, unix://PATH, local?root=DIR)")
			fs.StringVar(&o.from, "from", "auto", "store `URI` to copy from")
			o.storeDir = "/nix/store"
			storeDirVar(fs, &o.storeDir, "logical store `DIR` of both stores (default /nix/store)")
			fs.BoolVar(&o.noCheckSigs, "no-check-sigs", false, "do not ask the destination to check signatures (honoured for trusted users only)")
			return func(ctx context.Context, e *env, args []string) error {
				o.paths = args
				if o.to == "" {
					return &exitErr{code: exitUsage, err: errors.New("copy: no destination"), hint: "pass --to URI, e.g. --to ssh-ng://builder"}
				}
				if len(o.paths) == 0 {
					return &exitErr{code: exitUsage, err: errors.New("copy: nothing to copy"), hint: "pass store paths (or symlinks to them, such as ./result)"}
				}
				return runCopy(ctx, e, o)
			}
		},
	}
}

func runCopy(ctx context.Context, e *env, o copyOptions) error {
	var paths []string
	for _, arg := range o.paths {
		p, err := storePathArg(e, o.storeDir, arg)
		if err != nil {
			return err
		}
		paths = append(paths, p)
	}
	dopts := func() daemon.Options {
		s := daemon.DefaultSettings()
		s.Overrides = nixconf.ParseOverrides(e.getenv("NIX_CONFIG"))
		return daemon.Options{
			StoreDir:   o.storeDir,
			SocketPath: e.getenv("NIX_DAEMON_SOCKET_PATH"),
			SSHOpts:    strings.Fields(e.getenv("NIX_SSHOPTS")),
			Settings:   &s,
		}
	}
	src, err := openStore(ctx, o.from, dopts(), "--from")
	if err != nil {
		return err
	}
	defer src.Pool.Close()

	// Log in to the destination while the closure is walked: both take a
	// while (an ssh login; a round trip per level of the closure).
	start := time.Now()
	type dialled struct {
		dst storecopy.Daemon
		err error
	}
	dialCtx, cancelDial := context.WithCancel(ctx)
	defer cancelDial()
	dialling := make(chan dialled, 1)
	go func() {
		d, err := openStore(dialCtx, o.to, dopts(), "--to")
		dialling <- dialled{d, err}
	}()
	source := localSource(src, o.from, o.storeDir)
	closure, cerr := storecopy.Closure(ctx, source, paths)
	if cerr != nil {
		cancelDial()
	}
	dd := <-dialling
	if dd.err == nil {
		defer dd.dst.Pool.Close()
	}
	if cerr != nil {
		return copyError(fmt.Errorf("copy to %s: %w", o.to, cerr))
	}
	if dd.err != nil {
		return dd.err
	}
	dst := dd.dst
	missing, valid, err := storecopy.Lacking(ctx, dst, closure)
	if err != nil {
		return copyError(fmt.Errorf("copy to %s: %w", o.to, err))
	}
	copts := storecopy.Options{AddOptions: storecopy.AddOptions{NoCheckSigs: o.noCheckSigs}}
	finish := func() {}
	if progress.IsTerminal(e.stderr, e.getenv) && len(missing) > 0 {
		// A live line on a terminal, as nix copy draws.
		var total uint64
		for _, in := range missing {
			total += in.NarSize
		}
		bar := progress.NewCopyBar(e.stderr, o.to, len(missing), total)
		copts.Progress = bar.Update
		finish = bar.Finish
	}
	res, err := storecopy.Copy(ctx, source, dst, missing, copts)
	finish()
	if err != nil {
		return copyError(fmt.Errorf("copy to %s: %w", o.to, err))
	}
	res.Valid = valid
	// Done and acknowledged: do not wait for the stores to shut down.
	dst.Pool.Release()
	src.Pool.Release()
	fmt.Fprintf(e.stderr, "poison: copied %d paths (%s) to %s in %s; %d were there already\n",
		len(res.Copied), progress.MiB(res.Bytes), o.to, time.Since(start).Round(time.Millisecond), res.Valid)
	return nil
}

// openStore dials store once (a missing daemon or a failing ssh login is
// reported here) and returns a copy endpoint on a pool of one connection.
func openStore(ctx context.Context, uri string, opts daemon.Options, flagName string) (storecopy.Daemon, error) {
	p := daemon.NewPool(uri, opts, 1)
	c, err := p.Get(ctx)
	if err != nil {
		p.Close()
		return storecopy.Daemon{}, withHint(fmt.Errorf("copy: connect to store %s: %w", uri, err), connectHint(uri, "pass "+flagName+" URI"))
	}
	p.Put(c, false)
	return storecopy.Daemon{Pool: p}, nil
}

// localSource reads the NARs of a store on this machine from its files
// (the daemon still gives the path infos), which spares the daemon
// copying every byte through its socket; other stores stream NARs.
func localSource(d storecopy.Daemon, uri, storeDir string) storecopy.Source {
	switch {
	case uri == "auto" || uri == "daemon" || uri == "" || uri == "local":
		return storecopy.Local{Infos: d, StoreDir: storeDir}
	case chrootStoreDir(uri, storeDir) != "":
		return storecopy.Local{Infos: d, StoreDir: storeDir, RealDir: chrootStoreDir(uri, storeDir)}
	}
	return d
}

// copyError adds what to do when a destination refuses paths.
func copyError(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "lacks a valid signature"):
		return withHint(err, "sign the paths (nix store sign) with a key the destination trusts, or, as a trusted user of the destination, pass --no-check-sigs")
	case strings.Contains(msg, "not valid in the source store"):
		return withHint(err, "build or fetch the path first, or pass --from URI of a store that has it")
	}
	return err
}

// storePathArg turns an argument (a store path, a path inside one, or a
// symlink to one such as ./result) into a store path.
func storePathArg(e *env, storeDir, arg string) (string, error) {
	p := rootPath(e, storeDir, arg)
	if !strings.HasPrefix(p, storeDir+"/") {
		return "", withHint(fmt.Errorf("copy: %s is not in the store %s", arg, storeDir), "pass store paths, or symlinks to them such as ./result")
	}
	root, err := storepath.Root(storeDir, p)
	if err != nil {
		return "", withHint(fmt.Errorf("copy: %s is not a store path: %w", arg, err), "pass store paths, or symlinks to them such as ./result")
	}
	return root, nil
}
