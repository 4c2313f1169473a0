package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/settings"
)

// rewriteOptions are the settings of one `poison rewrite`.
type rewriteOptions struct {
	settings settings.Settings
	noWrite  bool
	json     bool
	stdin    bool
	explain  bool
	byName   bool
	storeDir string
	store    string
	drvs     []string
}

func rewriteCommand() command {
	return command{
		name:    "rewrite",
		summary: "rewrite derivations with the serials of poison.lock and print the new .drv paths",
		usage:   "[--lock FILE] [--no-write] [--json] [--stdin] [--explain] [--by-name] [--store URI] [--store-dir DIR] DRV...",
		setup: func(fs *flag.FlagSet) runFunc {
			var o rewriteOptions
			sf := settings.Register(fs, "lock", "max-age")
			fs.BoolVar(&o.noWrite, "no-write", false, "compute the paths without adding the .drv files to the store")
			fs.BoolVar(&o.json, "json", false, "print one JSON document instead of one path per line")
			fs.BoolVar(&o.stdin, "stdin", false, "read the .drv paths from standard input, one per line")
			fs.BoolVar(&o.explain, "explain", false, "say on stderr which derivations are poisoned, how many are rewritten, and old → new output paths")
			fs.BoolVar(&o.byName, "by-name", false, "also apply the serials of derivation names (what the Nix overlay does)")
			fs.StringVar(&o.store, "store", "auto", "store `URI` to add the rewritten .drv files to (daemon, unix://PATH, auto, ssh-ng://HOST, local?root=DIR)")
			storeDirVar(fs, &o.storeDir, "logical store `DIR` (default: the lock's, else /nix/store)")
			return func(ctx context.Context, e *env, args []string) error {
				var err error
				if o.drvs, err = argsAndStdin(e, args, o.stdin); err != nil {
					return err
				}
				if len(o.drvs) == 0 {
					return &exitErr{code: exitUsage, err: errors.New("rewrite: no derivations given"), hint: "pass .drv paths as arguments or with --stdin"}
				}
				if o.settings, err = loadSettings(e, sf); err != nil {
					return err
				}
				return runRewrite(ctx, e, o)
			}
		},
	}
}

func runRewrite(ctx context.Context, e *env, o rewriteOptions) error {
	// The closure stays in memory for the whole rewrite, most of it .drv
	// bytes the collector does not scan: collecting at 1.2× the live heap
	// instead of 2× costs little marking and reuses pages already faulted
	// in instead of faulting in new ones (on the 20,000-derivation
	// benchmark: peak RSS 233 MB instead of 264, and less system time).
	defer debug.SetGCPercent(debug.SetGCPercent(20))
	hugeHeap(256 << 20)
	lk, err := readLock(e, "rewrite", o.settings)
	if err != nil {
		return err
	}

	storeDir := o.storeDir
	if storeDir == "" {
		storeDir = lk.Store()
	}
	roots := make([]string, len(o.drvs))
	for i, d := range o.drvs {
		roots[i] = rootPath(e, storeDir, d)
	}
	// Nearly everything LoadClosure allocates stays live until the end:
	// collecting while it runs only re-marks the growing closure.
	gc := debug.SetGCPercent(-1)
	c, err := builder.LoadClosure(ctx, builder.LoadOptions{StoreDir: storeDir, RealStoreDir: chrootStoreDir(o.store, storeDir)}, roots)
	debug.SetGCPercent(gc)
	if err != nil {
		return err
	}
	opts := builder.Options{
		Lock:    lk,
		ByName:  o.byName,
		NoATerm: o.noWrite,
		Warn: func(w builder.Warning) {
			fmt.Fprintf(e.stderr, "poison: warning: %s\n", w.Message)
		},
	}
	var res *builder.Result
	if o.noWrite {
		res, err = builder.Rewrite(ctx, c, opts)
	} else {
		// Written while the rewrite goes on; connected when the first
		// rewritten derivation is ready.
		var conn *daemon.Conn
		res, err = builder.RewriteWrite(ctx, c, opts, func(ctx context.Context) (*daemon.Conn, error) {
			var err error
			conn, err = daemon.Dial(ctx, o.store, daemon.Options{StoreDir: storeDir, SocketPath: e.getenv("NIX_DAEMON_SOCKET_PATH"), SSHOpts: strings.Fields(e.getenv("NIX_SSHOPTS"))})
			if err != nil {
				return nil, withHint(fmt.Errorf("rewrite: connect to store %s: %w", o.store, err), connectHint(o.store, "pass --store URI, or --no-write to only print the paths"))
			}
			return conn, nil
		})
		if conn != nil {
			conn.Close()
		}
		if err != nil && strings.HasPrefix(err.Error(), "write") {
			// The writer's (the rewrite's and dial's say what they are).
			err = fmt.Errorf("rewrite: %w", err)
		}
	}
	if err != nil {
		return err
	}
	if o.explain {
		explain(e.stderr, c, res)
	}
	w := bufio.NewWriter(e.stdout)
	if o.json {
		if err := writeRewriteJSON(w, roots, res); err != nil {
			return err
		}
	} else {
		for _, r := range res.Roots {
			w.WriteString(r)
			w.WriteByte('\n')
		}
	}
	return w.Flush()
}

// chrootStoreDir is where the .drv files of a chroot store live: Nix's
// "local?root=DIR" or a plain "/DIR" store keeps them in DIR + storeDir.
// Other stores are read at storeDir.
func chrootStoreDir(store, storeDir string) string {
	root := ""
	switch {
	case strings.HasPrefix(store, "/"):
		root = store
	case strings.HasPrefix(store, "local?"):
		if q, err := url.ParseQuery(strings.TrimPrefix(store, "local?")); err == nil {
			root = q.Get("root")
		}
	}
	if root == "" {
		return ""
	}
	return filepath.Join(root, storeDir)
}

// rootPath accepts what Nix tools print (path!output) and symlinks to
// .drv files (gc roots), and returns the store path.
func rootPath(e *env, storeDir, arg string) string {
	if i := strings.LastIndexByte(arg, '!'); i > 0 && strings.HasSuffix(arg[:i], ".drv") {
		arg = arg[:i]
	}
	if strings.HasPrefix(arg, storeDir+"/") {
		return arg
	}
	p := arg
	if !filepath.IsAbs(p) {
		p = filepath.Join(e.dir, p)
	}
	if r, err := filepath.EvalSymlinks(p); err == nil && strings.HasPrefix(r, storeDir+"/") {
		return r
	}
	return arg // LoadClosure reports it
}

func explain(w io.Writer, c *builder.Closure, res *builder.Result) {
	if len(res.Poisoned) == 0 {
		fmt.Fprintf(w, "poison: no derivation of the %d in the closure is poisoned\n", c.Len())
	}
	for _, p := range res.Poisoned {
		how := strings.Join(p.Entries, ", ")
		fmt.Fprintf(w, "poison: poisoned %s: serial %d (lock %s)\n", p.Name, p.Serial, how)
		fmt.Fprintf(w, "poison:   canonical %s\n", p.CanonicalDrvPath)
		fmt.Fprintf(w, "poison:   rewritten %s\n", p.NewDrvPath)
		if p.FixedOutput {
			fmt.Fprintf(w, "poison:   fixed-output: its output path does not change\n")
		}
	}
	poisoned := make(map[string]bool, len(res.Poisoned))
	for _, p := range res.Poisoned {
		poisoned[p.DrvPath] = true
	}
	down := 0
	for _, d := range res.Changed {
		if !poisoned[d.OldPath] {
			down++
		}
	}
	fmt.Fprintf(w, "poison: %d of %d derivations rewritten (%d downstream of poisoned ones)\n", len(res.Changed), c.Len(), down)
	var olds []string
	for old, nw := range res.OutPaths {
		if old != nw {
			olds = append(olds, old)
		}
	}
	slices.Sort(olds)
	for _, old := range olds {
		fmt.Fprintf(w, "poison:   %s -> %s\n", old, res.OutPaths[old])
	}
}

type rewriteJSON struct {
	Roots    []rootJSON    `json:"roots"`
	Poisoned []poisonJSON  `json:"poisoned"`
	Changed  []changedJSON `json:"changed"`
}

type rootJSON struct {
	DrvPath    string `json:"drvPath"`    // as given
	NewDrvPath string `json:"newDrvPath"` // rewritten under the lock
}

type poisonJSON struct {
	DrvPath          string   `json:"drvPath"`
	CanonicalDrvPath string   `json:"canonicalDrvPath"`
	NewDrvPath       string   `json:"newDrvPath"`
	Name             string   `json:"name"`
	Serial           int      `json:"serial"`
	ByName           bool     `json:"byName"`
	FixedOutput      bool     `json:"fixedOutput"`
	Entries          []string `json:"entries"`
}

type changedJSON struct {
	DrvPath    string            `json:"drvPath"`    // as in the closure
	NewDrvPath string            `json:"newDrvPath"` // rewritten under the lock
	Outputs    map[string]string `json:"outputs"`    // of the rewritten derivation
}

func writeRewriteJSON(w io.Writer, roots []string, res *builder.Result) error {
	doc := rewriteJSON{Roots: []rootJSON{}, Poisoned: []poisonJSON{}, Changed: []changedJSON{}}
	for i, r := range res.Roots {
		doc.Roots = append(doc.Roots, rootJSON{DrvPath: roots[i], NewDrvPath: r})
	}
	for _, p := range res.Poisoned {
		doc.Poisoned = append(doc.Poisoned, poisonJSON{
			DrvPath: p.DrvPath, CanonicalDrvPath: p.CanonicalDrvPath, NewDrvPath: p.NewDrvPath,
			Name: p.Name, Serial: p.Serial, ByName: p.ByName, FixedOutput: p.FixedOutput, Entries: p.Entries,
		})
	}
	for _, d := range res.Changed {
		doc.Changed = append(doc.Changed, changedJSON{DrvPath: d.OldPath, NewDrvPath: d.Path, Outputs: d.Outputs})
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// argsAndStdin returns args followed, with --stdin, by the lines of
// standard input.
func argsAndStdin(e *env, args []string, stdin bool) ([]string, error) {
	if !stdin {
		return args, nil
	}
	lines, err := readLines(e.stdin)
	if err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	return append(args, lines...), nil
}

// readLines returns the non-empty lines of r, trimmed (for --stdin).
func readLines(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}
