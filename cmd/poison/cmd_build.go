package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/fleet/dispatch"
	"github.com/poison-nix/poison/fleet/machines"
	"github.com/poison-nix/poison/internal/installable"
	"github.com/poison-nix/poison/internal/nixconf"
	"github.com/poison-nix/poison/internal/progress"
	"github.com/poison-nix/poison/internal/settings"
)

// buildOptions are the settings of one `poison build`.
type buildOptions struct {
	settings      settings.Settings
	store         string
	storeDir      string
	jobs          string
	keepGoing     bool
	printLogs     bool
	dryRun        bool
	json          bool
	printOutPaths bool
	perDrv        bool
	builders      string
	unit          string
	byName        bool
	copyBack      bool
	logFormat     string
	attrs         stringsFlag
	args          nixArgs
	include       stringsFlag
	file          string
	expr          string
	nixConf       *nixconf.Config
	outLink       string
	noLink        bool
	installables  []string
}

func buildCommand() command {
	return command{
		name:    "build",
		summary: "rewrite derivations with the serials of poison.lock and build them through the nix-daemon",
		usage:   "[--lock FILE] [--store URI] [-j N] [-k] [-L] [--dry-run] [--json] [--print-out-paths] [--log-format internal-json] [--per-derivation] [--builders SPEC|@FILE] [--unit NAME [--registry DIR]] [--by-name] [--copy-back] [-A ATTR] INSTALLABLE...",
		setup: func(fs *flag.FlagSet) runFunc {
			var o buildOptions
			sf := settings.Register(fs, "lock", "max-age", "registry", "closure-cache")
			fs.StringVar(&o.store, "store", "auto", "store `URI` to build in (daemon, unix://PATH, auto, ssh-ng://HOST, local?root=DIR)")
			storeDirVar(fs, &o.storeDir, "logical store `DIR` (default: the lock's, else /nix/store)")
			for _, n := range []string{"j", "max-jobs"} {
				fs.StringVar(&o.jobs, n, "", "local builds to run at once: a number `N`, 'auto' (all cores), or 0 (only remote builders build); default: max-jobs of nix.conf and NIX_CONFIG, else 1")
			}
			for _, n := range []string{"k", "keep-going"} {
				fs.BoolVar(&o.keepGoing, n, false, "keep building what does not depend on a failure")
			}
			for _, n := range []string{"L", "print-build-logs"} {
				fs.BoolVar(&o.printLogs, n, false, "print the builders' output on stderr")
			}
			fs.BoolVar(&o.dryRun, "dry-run", false, "write the rewritten .drv files and say what would be built, substituted or is valid, and why; build nothing")
			fs.BoolVar(&o.json, "json", false, "print the results as JSON on stdout (drvPath, outputs, startTime, stopTime)")
			fs.BoolVar(&o.printOutPaths, "print-out-paths", false, "print the output paths on stdout")
			for _, n := range []string{"o", "out-link"} {
				fs.StringVar(&o.outLink, n, "result", "name the symlinks to the outputs `PATH`, PATH-OUT, PATH-2, ... (each a garbage collector root), as nix-build")
			}
			fs.BoolVar(&o.noLink, "no-link", false, "make no result symlinks (and no garbage collector roots)")
			fs.StringVar(&o.logFormat, "log-format", "", "`FORMAT` of the log on stderr: 'internal-json' passes the daemon's activity messages through as Nix's @nix lines (for nom --json); 'raw' (the default) plain lines")
			fs.BoolVar(&o.perDrv, "per-derivation", false, "send each derivation with BuildDerivation in topological order (needs a trusted user)")
			fs.StringVar(&o.builders, "builders", "", "remote build machines, `SPEC|@FILE` in Nix's machines format (default: builders of nix.conf and NIX_CONFIG); with --per-derivation poison sends each derivation to one of them itself")
			fs.StringVar(&o.unit, "unit", "", "treat all installables as one coordinated unit `NAME`: if a derivation fails, write a draft registry entry (group NAME) poisoning what did build")
			fs.BoolVar(&o.byName, "by-name", false, "also apply the serials of derivation names (what the Nix overlay does)")
			fs.BoolVar(&o.copyBack, "copy-back", false, "with --store ssh-ng://HOST: copy the outputs' closures back to this machine's store (by default they stay there, as with nix build --store)")
			for _, n := range []string{"A", "attr"} {
				fs.Var(&o.attrs, n, "attribute `ATTR` of the Nix file to build (repeatable); the file defaults to ./default.nix")
			}
			fs.Var(&nixArg{list: &o.args}, "arg", "pass `NAME EXPR` to the Nix file's function, as nix-build --arg (two values)")
			fs.Var(&nixArg{list: &o.args, str: true}, "argstr", "pass `NAME STRING` to the Nix file's function, as nix-build --argstr (two values)")
			fs.Var(&o.include, "I", "add `PATH` to the Nix search path, as nix-build -I (repeatable)")
			for _, n := range []string{"f", "file"} {
				fs.StringVar(&o.file, n, "", "build attributes of the Nix `FILE`: the arguments are attribute paths in it, as nix build --file")
			}
			for _, n := range []string{"E", "expr"} {
				fs.StringVar(&o.expr, n, "", "build attributes of the Nix `EXPR`ession: the arguments are attribute paths in it, as nix build --expr")
			}
			return func(ctx context.Context, e *env, args []string) error {
				o.installables = args
				if o.file != "" && o.expr != "" {
					return usageErrorf("build: --file and --expr exclude each other")
				}
				if len(args) == 0 && len(o.attrs) == 0 && len(o.args) == 0 && o.file == "" && o.expr == "" && !installable.HasDefault(e.dir) {
					return &exitErr{code: exitUsage, err: errors.New("build: nothing to build: no default.nix or flake.nix here"),
						hint: "pass .drv paths, output paths, a Nix file (with -A ATTR) or a flake reference"}
				}
				if o.logFormat != "" && o.logFormat != "internal-json" && o.logFormat != "raw" {
					return usageErrorf("build: --log-format %q: want internal-json or raw", o.logFormat)
				}
				var err error
				if o.nixConf, err = nixconf.Load(e.getenv); err != nil {
					return withHint(fmt.Errorf("build: %w", err), "fix the Nix configuration (nix.conf or NIX_CONFIG)")
				}
				if o.jobs == "" {
					o.jobs = "1"
					if v, ok := o.nixConf.Get("max-jobs"); ok && v != "" {
						o.jobs = v
					}
				}
				if o.settings, err = loadSettings(e, sf); err != nil {
					return err
				}
				return runBuild(ctx, e, o)
			}
		},
	}
}

func (o *buildOptions) maxJobs() (int, error) {
	if o.jobs == "auto" {
		return runtime.NumCPU(), nil
	}
	n, err := strconv.Atoi(o.jobs)
	if err != nil || n < 0 {
		return 0, usageErrorf("build: -j %q: want a number (0: only remote builders build) or 'auto'", o.jobs)
	}
	return n, nil
}

func runBuild(ctx context.Context, e *env, o buildOptions) error {
	jobs, err := o.maxJobs()
	if err != nil {
		return err
	}
	if o.copyBack && !remoteStore(o.store) {
		return usageErrorf("build: --copy-back needs a remote store (--store ssh-ng://HOST)")
	}
	lk, err := readLock(e, "build", o.settings)
	if err != nil {
		return err
	}
	storeDir := o.storeDir
	if storeDir == "" {
		storeDir = lk.Store()
	}

	prog := progress.New(e.stderr, progress.Options{
		Terminal:     progress.IsTerminal(e.stderr, e.getenv),
		Logs:         o.printLogs,
		InternalJSON: o.logFormat == "internal-json",
	})
	// max-jobs goes to the daemon as given: 0 lets only remote builders
	// build, as with nix-build -j 0.
	ds := daemon.DefaultSettings()
	ds.MaxBuildJobs = jobs
	ds.KeepGoing = o.keepGoing
	ds.Overrides = o.nixConf.Overrides()
	dopts := daemon.Options{
		StoreDir:   storeDir,
		SocketPath: e.getenv("NIX_DAEMON_SOCKET_PATH"),
		SSHOpts:    strings.Fields(e.getenv("NIX_SSHOPTS")),
		Settings:   &ds,
		Log:        prog.Message,
	}
	failLog := &failedLog{next: prog.Message}
	if o.unit != "" {
		dopts.Log = failLog.message
	}
	// --per-derivation with builders: poison sends every derivation to
	// a machine; the store builds nothing (max-jobs 0), so a broken
	// setup fails instead of building here without a word.
	builders := o.builders
	if builders == "" {
		builders = nixSetting(e, "builders", "")
	}
	fleet := o.perDrv && strings.TrimSpace(builders) != ""
	switch {
	case fleet:
		ds.MaxBuildJobs = 0
	case o.perDrv && jobs == 0:
		return withHint(errors.New("build: --per-derivation with max-jobs 0 and no builders: nothing would build the derivations"),
			"pass --builders SPEC|@FILE (poison sends each derivation to a machine), or -j N to build here")
	case o.builders != "":
		if ds.Overrides == nil {
			ds.Overrides = map[string]string{}
		}
		ds.Overrides["builders"] = absBuilders(e, o.builders)
	}
	poolSize := max(jobs, 1) + 1
	var ms []machines.Machine
	if fleet {
		if ms, err = parseBuilders(e, builders); err != nil {
			return err
		}
		poolSize = totalJobs(ms) + 2
	}
	p := daemon.NewPool(o.store, dopts, poolSize)
	defer p.Close()
	var ex builder.Executor
	if fleet {
		dp, err := newDispatcher(ms, p, dopts)
		if err != nil {
			return err
		}
		defer dp.Close()
		ex, jobs = dp, dp.Slots()
	}
	// Connect while nix-instantiate evaluates: the daemon forks its
	// worker meanwhile (on a build with nothing to do, connecting was a
	// fifth of what poison adds to nix-build). A missing daemon is the
	// most common problem: a failed connection stops the evaluation and
	// is what is reported.
	rctx, stopResolve := context.WithCancel(ctx)
	defer stopResolve()
	wc := &waitConn{done: make(chan struct{})}
	go func() {
		defer close(wc.done)
		if wc.c, wc.err = p.Get(ctx); wc.err != nil {
			wc.err = withHint(fmt.Errorf("build: connect to store %s: %w", o.store, wc.err), connectHint(o.store, "pass --store URI"))
		} else if o.builders != "" && !fleet {
			if wc.err = checkBuilders(ctx, o.store, dopts); wc.err != nil {
				p.Put(wc.c, false)
			}
		}
		if wc.err != nil {
			stopResolve()
		}
	}()
	// Output paths name paths of this machine: with a remote build store
	// their derivers are looked up here, where the .drv files are read.
	var lookup installable.Store = wc
	if remoteStore(o.store) {
		home := &homeLookup{dopts: dopts}
		defer home.close()
		lookup = home
	}
	iroots, err := installable.Resolve(rctx, lookup, installable.Options{
		Dir: e.dir, StoreDir: storeDir, Attrs: o.attrs, Args: o.args, Include: o.include,
		File: absOrEmpty(e, o.file), Expr: o.expr, Store: instantiateStore(o.store),
	}, o.installables)
	<-wc.done
	if wc.err != nil {
		return wc.err
	}
	p.Put(wc.c, err != nil)
	if err != nil {
		return fmt.Errorf("%w", err)
	}
	roots := make([]string, len(iroots))
	for i, r := range iroots {
		roots[i] = r.DrvPath
	}

	realDir := chrootStoreDir(o.store, storeDir)
	// A record of the closure that shows the lock poisons nothing in it
	// spares reading it: the roots are built as they are.
	cc := newClosureCache(o, lk, storeDir, realDir, roots)
	res, closureLen := cc.unpoisoned(lk, o.byName)
	written := false // res.Changed is in the store
	if res == nil {
		// Nearly everything LoadClosure allocates stays live: collecting
		// while it runs only re-marks the growing closure.
		gc := debug.SetGCPercent(-1)
		c, err := builder.LoadClosure(ctx, builder.LoadOptions{StoreDir: storeDir, RealStoreDir: realDir}, roots)
		debug.SetGCPercent(gc)
		if err != nil {
			return fmt.Errorf("build: %w", err)
		}
		defer cc.save(c)()
		ropts := builder.Options{
			Lock:   lk,
			ByName: o.byName,
			Warn:   func(w builder.Warning) { fmt.Fprintf(e.stderr, "poison: warning: %s\n", w.Message) },
		}
		if remoteStore(o.store) {
			// The inputs are copied there before anything is written.
			res, err = builder.Rewrite(ctx, c, ropts)
		} else {
			// Written while the rewrite goes on, on a connection that
			// stays in the pool (its temporary roots with it).
			var conn *daemon.Conn
			res, err = builder.RewriteWrite(ctx, c, ropts, func(ctx context.Context) (*daemon.Conn, error) {
				var err error
				conn, err = p.Get(ctx)
				return conn, err
			})
			if conn != nil {
				p.Put(conn, err != nil)
			}
			written = err == nil
		}
		if err != nil {
			return fmt.Errorf("build: %w", err)
		}
		if o.dryRun {
			explain(e.stderr, c, res)
		}
		closureLen = c.Len()
	}
	if !o.dryRun {
		fmt.Fprintf(e.stderr, "poison: %s poisoned, %d of %d rewritten\n", progress.Count(len(res.Poisoned), "derivation", "derivations"), len(res.Changed), closureLen)
	}
	if remoteStore(o.store) {
		if err := copyInputs(ctx, e, p, o.store, dopts, res); err != nil {
			return err
		}
	}
	if !written {
		if err := builder.WritePool(ctx, p, res, min(jobs, 2)); err != nil {
			return fmt.Errorf("build: %w", err)
		}
	}
	if o.dryRun {
		return dryRun(ctx, e, o, p, roots, res)
	}

	rep, err := builder.Build(ctx, builder.DaemonStore(p), res.Roots, builder.BuildOptions{
		PerDerivation: o.perDrv,
		Executor:      ex,
		Jobs:          jobs,
		KeepGoing:     o.keepGoing,
		StoreDir:      storeDir,
		RealStoreDir:  realDir,
		Drvs:          res.Changed,
		OnPlan:        func(m *daemon.Missing) { prog.Plan(len(m.WillBuild)) },
	})
	prog.Finish()
	if err != nil {
		if errors.Is(err, builder.ErrNotTrusted) {
			return withHint(err, "run without --per-derivation (building by path works for any user), or add the user to trusted-users")
		}
		var nm *dispatch.NoMachineError
		if errors.As(err, &nm) {
			return withHint(fmt.Errorf("build: %w", err), "add a machine for that system and those features to --builders, or build without --per-derivation")
		}
		var pe *daemon.ProtocolError
		if errors.As(err, &pe) {
			return withHint(err, "the connection to the nix-daemon broke; run the build again (finished builds are kept)")
		}
		return err
	}
	if o.copyBack && remoteStore(o.store) {
		if err := copyBack(ctx, e, p, o.store, dopts, rep); err != nil {
			return err
		}
	}
	if !o.noLink && !o.dryRun {
		if err := resultLinks(ctx, e, o, p, rep); err != nil {
			return err
		}
	}
	if err := printBuildResults(e.stdout, o, roots, rep); err != nil {
		return err
	}
	var statuses []daemon.BuildStatus
	var failures []string
	for _, r := range append(slices.Clone(rep.Derivations), rep.Roots...) {
		statuses = append(statuses, r.Status)
		if !r.Status.Success() && r.Status != daemon.DependencyFailed {
			failures = append(failures, fmt.Sprintf("build of %s failed (%s): %s", r.DrvPath, r.Status, r.Error))
		}
	}
	code := builder.ExitStatus(statuses, prog.FailureBits())
	if code == 0 {
		return nil
	}
	if o.unit != "" {
		unitDraft(ctx, e, o, builder.DaemonStore(p), res, rep, failLog.drvs())
	}
	if len(failures) == 0 {
		for _, r := range rep.Roots {
			if !r.Status.Success() {
				failures = append(failures, fmt.Sprintf("build of %s failed (%s): %s", r.DrvPath, r.Status, r.Error))
			}
		}
	}
	return &exitErr{code: code, err: errors.New(strings.Join(failures, "\n"))}
}

// dryRun says what a build would do, and why each derivation is rebuilt.
func dryRun(ctx context.Context, e *env, o buildOptions, p *daemon.Pool, roots []string, res *builder.Result) error {
	targets := make([]string, len(res.Roots))
	for i, r := range res.Roots {
		targets[i] = r + "!*"
	}
	var m *daemon.Missing
	err := p.Do(ctx, func(c *daemon.Conn) (err error) {
		m, err = c.QueryMissing(ctx, targets)
		return err
	})
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if o.json {
		if err := dryRunJSON(e.stdout, roots, res, m); err != nil {
			return err
		}
	}
	why := reasons(res)
	w := bufio.NewWriter(e.stderr)
	if len(m.WillBuild) == 1 {
		fmt.Fprintf(w, "this derivation will be built:\n")
	} else {
		fmt.Fprintf(w, "these %d derivations will be built:\n", len(m.WillBuild))
	}
	for _, d := range m.WillBuild {
		r := why[d]
		if r == "" {
			r = "not built yet, not rewritten"
		}
		fmt.Fprintf(w, "  %s (%s)\n", d, r)
	}
	if len(m.WillSubstitute) > 0 {
		if len(m.WillSubstitute) == 1 {
			fmt.Fprintf(w, "this path will be fetched:\n")
		} else {
			fmt.Fprintf(w, "these %d paths will be fetched:\n", len(m.WillSubstitute))
		}
		for _, s := range m.WillSubstitute {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	for _, r := range res.Roots {
		if !slices.Contains(m.WillBuild, r) {
			fmt.Fprintf(w, "already valid or fetched: %s\n", r)
		}
	}
	return w.Flush()
}

// reasons says for every rewritten derivation why it changed: poisoned
// (with its serial and lock entries) or downstream of a poisoned one.
func reasons(res *builder.Result) map[string]string {
	out := map[string]string{}
	for _, p := range res.Poisoned {
		how := "lock: " + strings.Join(p.Entries, ", ")
		out[p.NewDrvPath] = fmt.Sprintf("poisoned, serial %d, %s", p.Serial, how)
	}
	cause := map[string]string{}
	for _, p := range res.Poisoned {
		cause[p.NewDrvPath] = p.Name
	}
	for _, d := range res.Changed {
		if _, ok := out[d.Path]; ok {
			continue
		}
		for _, r := range d.References {
			if c, ok := cause[r]; ok {
				cause[d.Path] = c
				out[d.Path] = "depends on poisoned " + c
				break
			}
		}
		if out[d.Path] == "" {
			out[d.Path] = "rewritten"
		}
	}
	return out
}

// buildResultJSON is one root of `poison build --json` (docs/json.md):
// drvPath as given, newDrvPath as rewritten under the lock and built.
type buildResultJSON struct {
	DrvPath         string            `json:"newDrvPath"`
	OriginalDrvPath string            `json:"drvPath"`
	Outputs         map[string]string `json:"outputs"`
	StartTime       int64             `json:"startTime"`
	StopTime        int64             `json:"stopTime"`
	Status          string            `json:"status"`
	// Machine is where the root was built (--per-derivation).
	Machine string `json:"machine,omitempty"`
	// Builds are the derivations built one by one in this run
	// (--per-derivation), each with its machine.
	Builds []buildJSON `json:"builds,omitempty"`
}

// buildJSON is one derivation built by --per-derivation.
type buildJSON struct {
	DrvPath   string `json:"newDrvPath"`
	Machine   string `json:"machine"`
	Status    string `json:"status"`
	StartTime int64  `json:"startTime"`
	StopTime  int64  `json:"stopTime"`
}

func printBuildResults(w io.Writer, o buildOptions, roots []string, rep *builder.BuildReport) error {
	bw := bufio.NewWriter(w)
	if o.json {
		doc := []buildResultJSON{}
		for i, r := range rep.Roots {
			j := buildResultJSON{DrvPath: r.DrvPath, OriginalDrvPath: roots[i], Outputs: r.Outputs, Status: r.Status.String(), Machine: r.Machine}
			for _, d := range rep.Derivations {
				b := buildJSON{DrvPath: d.DrvPath, Machine: d.Machine, Status: d.Status.String()}
				if !d.StartTime.IsZero() {
					b.StartTime, b.StopTime = d.StartTime.Unix(), d.StopTime.Unix()
				}
				j.Builds = append(j.Builds, b)
			}
			if j.Outputs == nil {
				j.Outputs = map[string]string{}
			}
			if !r.StartTime.IsZero() {
				j.StartTime, j.StopTime = r.StartTime.Unix(), r.StopTime.Unix()
			}
			doc = append(doc, j)
		}
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(doc); err != nil {
			return err
		}
	} else if o.printOutPaths {
		for _, r := range rep.Roots {
			for _, name := range slices.Sorted(maps.Keys(r.Outputs)) {
				fmt.Fprintln(bw, r.Outputs[name])
			}
		}
	}
	return bw.Flush()
}

// connectHint says what to check when the store cannot be reached; other
// is the command's own alternative.
func connectHint(store, other string) string {
	if strings.HasPrefix(store, "ssh-ng://") {
		return "check that ssh logs in to the host without a prompt (key: ?ssh-key=FILE or NIX_SSHOPTS) and finds nix-daemon there (or pass ?remote-program=PATH), or " + other
	}
	return "start the nix-daemon, or " + other
}

// nixArgs are the --arg and --argstr of a build, in order.
type nixArgs = []installable.Arg

// nixArg is the flag.Value of --arg and --argstr: NAME and VALUE come as
// two arguments (parseArgs joins them, see twoValues).
type nixArg struct {
	list *nixArgs
	str  bool
}

func (a *nixArg) String() string { return "" }

func (a *nixArg) Set(v string) error {
	name, value, ok := strings.Cut(v, "\x00")
	if !ok || name == "" {
		return errors.New("want NAME VALUE (two arguments)")
	}
	*a.list = append(*a.list, installable.Arg{Name: name, Value: value, String: a.str})
	return nil
}

// TwoValues marks a flag that takes two arguments.
func (a *nixArg) TwoValues() bool { return true }

// Placeholder names the values in help.
func (a *nixArg) Placeholder() string {
	if a.str {
		return "NAME STRING"
	}
	return "NAME EXPR"
}

// instantiateStore is the --store nix-instantiate gets: chroot and other
// local stores; the daemon and remote stores evaluate locally.
// waitConn is the installable.Store of a connection still being made:
// its methods wait for it.
type waitConn struct {
	done chan struct{} // closed when c or err is set
	c    *daemon.Conn
	err  error
}

func (w *waitConn) conn(ctx context.Context) (*daemon.Conn, error) {
	select {
	case <-w.done:
		return w.c, w.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (w *waitConn) QueryPathInfo(ctx context.Context, path string) (*daemon.PathInfo, error) {
	c, err := w.conn(ctx)
	if err != nil {
		return nil, err
	}
	return c.QueryPathInfo(ctx, path)
}

func (w *waitConn) IsValidPath(ctx context.Context, path string) (bool, error) {
	c, err := w.conn(ctx)
	if err != nil {
		return false, err
	}
	return c.IsValidPath(ctx, path)
}

func instantiateStore(store string) string {
	if store == "auto" || store == "daemon" || strings.HasPrefix(store, "ssh-ng://") {
		return ""
	}
	return store
}

func absOrEmpty(e *env, p string) string {
	if p == "" {
		return ""
	}
	return absPath(e, p)
}

// dryRunJSON prints what `nix build --dry-run --json` prints, the roots
// with their outputs, in poison's keys (docs/json.md): each root as given
// (drvPath), rewritten (newDrvPath), its outputs under the lock, and
// whether it will be built.
func dryRunJSON(w io.Writer, roots []string, res *builder.Result, m *daemon.Missing) error {
	type rootJSON struct {
		DrvPath    string            `json:"drvPath"`
		NewDrvPath string            `json:"newDrvPath"`
		Outputs    map[string]string `json:"outputs"`
		WillBuild  bool              `json:"willBuild"`
	}
	outs := map[string]map[string]string{}
	for _, d := range res.Changed {
		outs[d.Path] = d.Outputs
	}
	doc := []rootJSON{}
	for i, r := range res.Roots {
		j := rootJSON{DrvPath: roots[i], NewDrvPath: r, Outputs: outs[r], WillBuild: slices.Contains(m.WillBuild, r)}
		if j.Outputs == nil {
			j.Outputs = map[string]string{}
		}
		doc = append(doc, j)
	}
	return writeReport(w, true, doc, nil)
}

// resultLinks makes nix-build's result symlinks to the outputs of the
// roots, each a garbage collector root: OUTLINK for the first root's out,
// OUTLINK-OUT for its other outputs, OUTLINK-2, OUTLINK-2-OUT for the
// second root, and so on. A link is replaced atomically; the daemon is
// told of it with AddIndirectRoot. Outputs in a remote store get no link
// (they are not on this machine unless --copy-back brought them).
func resultLinks(ctx context.Context, e *env, o buildOptions, p *daemon.Pool, rep *builder.BuildReport) error {
	if remoteStore(o.store) && !o.copyBack {
		if len(rep.Roots) > 0 {
			fmt.Fprintf(e.stderr, "poison: note: no result link: the outputs are in %s (pass --copy-back to bring them here)\n", o.store)
		}
		return nil
	}
	base := absPath(e, o.outLink)
	var links []string
	var targets []string
	for i, r := range rep.Roots {
		if !r.Status.Success() {
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(r.Outputs)) {
			l := base
			if i > 0 {
				l += fmt.Sprintf("-%d", i+1)
			}
			if name != "out" {
				l += "-" + name
			}
			links = append(links, l)
			targets = append(targets, r.Outputs[name])
		}
	}
	if len(links) == 0 {
		return nil
	}
	return p.Do(ctx, func(c *daemon.Conn) error {
		for i, l := range links {
			if err := replaceSymlink(targets[i], l); err != nil {
				return withHint(fmt.Errorf("build: result link: %w", err), "pass --out-link PATH elsewhere, or --no-link")
			}
			if err := c.AddIndirectRoot(ctx, l); err != nil {
				return withHint(fmt.Errorf("build: register %s as a garbage collector root: %w", displayPath(e, l), err),
					"the link exists but is no root; pass --no-link to build without one")
			}
		}
		return nil
	})
}

// replaceSymlink makes link point to target, replacing an existing
// symlink atomically (temporary link + rename); a directory or file there
// is an error.
func replaceSymlink(target, link string) error {
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("%s exists and is not a symlink", link)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", link, os.Getpid())
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
