package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/internal/settings"
	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/resolver"
)

// impactOptions are the settings of one `poison impact`.
type impactOptions struct {
	settings settings.Settings
	registry string // as given, for messages
	json     bool
	format   string
	stdin    bool
	byName   bool
	max      int
	drvs     []string
}

func impactCommand() command {
	return command{
		name:    "impact",
		summary: "how many derivations of a closure a pending registry change rebuilds (its blast radius)",
		usage: "[--registry DIR] [--lock FILE] [--json | --format text|json|markdown] [--stdin] [--by-name] [--max N] DRV...\n" +
			"              [--max-entries N] [--max-tree-depth N] [--max-entry-size SIZE]",
		setup: func(fs *flag.FlagSet) runFunc {
			var o impactOptions
			// A work tree has no git objects: the tree-size and total-bytes
			// limits do not apply.
			sf := settings.Register(fs, "registry", "lock", "max-age", "max-entries", "max-tree-depth", "max-entry-size")
			fs.BoolVar(&o.json, "json", false, "print one JSON document instead of text (the same as --format json)")
			fs.StringVar(&o.format, "format", "text", "report `FORMAT`: text, json, or markdown (for a pull-request comment)")
			fs.BoolVar(&o.stdin, "stdin", false, "read the .drv paths from standard input, one per line")
			fs.BoolVar(&o.byName, "by-name", false, "also apply the serials of derivation names (what the Nix overlay does)")
			fs.IntVar(&o.max, "max", -1, "exit 1 when more than `N` derivations rebuild (after the report); negative disables")
			return func(ctx context.Context, e *env, args []string) error {
				if o.json {
					o.format = "json"
				}
				if o.format != "text" && o.format != "json" && o.format != "markdown" {
					return usageErrorf("impact: --format %q: want text, json or markdown", o.format)
				}
				var err error
				if o.drvs, err = argsAndStdin(e, args, o.stdin); err != nil {
					return err
				}
				if len(o.drvs) == 0 {
					return &exitErr{code: exitUsage, err: errors.New("impact: no derivations given"), hint: "pass the .drv paths of the closure to measure as arguments or with --stdin"}
				}
				if o.settings, err = loadSettings(e, sf); err != nil {
					return err
				}
				o.registry = displayPath(e, o.settings.RegistryDir(e.dir))
				if o.registry == "" {
					o.registry = "."
				}
				return runImpact(ctx, e, o)
			}
		},
	}
}

// Reasons a derivation's rewritten .drv path differs between the base lock
// and the registry's.
const (
	reasonPoisoned   = "poisoned"   // its serial rose
	reasonUnpoisoned = "unpoisoned" // its serial fell: an entry was removed or edited
	reasonDependent  = "dependent"  // same serial, downstream of a change
)

// impactDrv is one derivation whose rewritten .drv path differs.
type impactDrv struct {
	Drv        string   `json:"drvPath"` // original .drv path, as in the closure
	Name       string   `json:"name"`
	Reason     string   `json:"reason"`
	Entries    []string `json:"entries"` // lock keys carrying the serial (poisoned: the new lock's; unpoisoned: the base lock's)
	Files      []string `json:"files"`   // registry entry files naming those keys
	BaseSerial int      `json:"baseSerial"`
	Serial     int      `json:"serial"`
	BaseDrv    string   `json:"baseDrvPath"` // rewritten with the base lock
	NewDrv     string   `json:"newDrvPath"`  // rewritten with the registry's lock
}

type impactReport struct {
	Registry        string      `json:"registry"`
	Lock            string      `json:"lock"`
	BaseCommit      string      `json:"baseCommit"`
	Total           int         `json:"total"`   // derivations in the closure
	Rebuilt         int         `json:"rebuilt"` // the blast radius: poisoned + unpoisoned + dependent
	Poisoned        int         `json:"poisoned"`
	Unpoisoned      int         `json:"unpoisoned"`
	Dependent       int         `json:"dependent"`
	SerialDecreases []string    `json:"serialDecreases"` // lock keys whose serial the registry lowers, anywhere
	Derivations     []impactDrv `json:"derivations"`     // topological order, inputs first
}

func runImpact(ctx context.Context, e *env, o impactOptions) error {
	// The registry with the pending change, as `poison resolve` would see it.
	dir := o.settings.RegistryDir(e.dir)
	reg, err := registry.LoadDir(dir, registry.LoadOptions{Now: e.now(), Limits: registryLimits(o.settings)})
	var ps registry.Problems
	if err != nil && !errors.As(err, &ps) {
		err = fmt.Errorf("impact: registry %s: %w", o.registry, err)
		if errors.Is(err, registry.ErrNotRegistry) || errors.Is(err, iofs.ErrNotExist) {
			return withHint(err, "pass --registry DIR of a registry work tree")
		}
		return err // the registry's content (a limit): its one line says what to do
	}
	// Warnings and errors in file order, as `poison lint` prints them.
	problems := append(registry.Problems{}, ps...)
	if reg != nil {
		problems = append(problems, reg.Warnings...)
	}
	problems.Sort()
	for _, p := range problems {
		fmt.Fprintf(e.stderr, "poison: %s: %s\n", p.Severity, p)
	}
	if n := len(ps.Errors()); n > 0 || reg == nil {
		fmt.Fprintf(e.stderr, "poison: error: impact: the registry %s has %d error%s; no impact computed\n", o.registry, n, plural(n, "", "s"))
		fmt.Fprintf(e.stderr, "poison: hint: fix the registry (poison lint --registry %s)\n", o.registry)
		return silentExit(exitError)
	}
	next := reg.Lock(lock.Source{URL: dir})

	// The base: the lock of the main branch.
	base, err := readLockAs(e, "impact", "base lock", "pass --lock FILE with the lock of the base branch (poison resolve writes one)", o.settings)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "poison: registry %s: %d entries\n", o.registry, len(reg.Entries))

	var decreases []string
	var sd *resolver.SerialDecreaseError
	if errors.As(resolver.CheckSerials(base, next), &sd) {
		decreases = sd.Keys
		for _, k := range decreases {
			fmt.Fprintf(e.stderr, "poison: warning: the registry lowers a serial of the base lock: %s\n", k)
		}
		fmt.Fprintf(e.stderr, "poison: warning: entries are append-only: a lowered serial brings a bad output back\n")
	}

	storeDir := next.Store()
	roots := make([]string, len(o.drvs))
	for i, d := range o.drvs {
		roots[i] = rootPath(e, storeDir, d)
	}
	c, err := builder.LoadClosure(ctx, builder.LoadOptions{StoreDir: storeDir}, roots)
	if err != nil {
		return err
	}
	var warnings []builder.Warning
	baseRes, err := builder.Rewrite(ctx, c, builder.Options{Lock: base, ByName: o.byName, NoATerm: true})
	if err != nil {
		return fmt.Errorf("impact: with the base lock: %w", err)
	}
	newRes, err := builder.Rewrite(ctx, c, builder.Options{Lock: next, ByName: o.byName, NoATerm: true,
		Warn: func(w builder.Warning) { warnings = append(warnings, w) }})
	if err != nil {
		return fmt.Errorf("impact: with the registry: %w", err)
	}

	rep := compareRewrites(c, reg, baseRes, newRes)
	rep.Registry, rep.Lock, rep.BaseCommit = o.registry, displayPath(e, o.settings.Lock), base.Registry.Commit
	rep.SerialDecreases = append([]string{}, decreases...)
	changed := make(map[string]bool, len(rep.Derivations))
	for _, d := range rep.Derivations {
		changed[d.Drv] = true
	}
	for _, w := range warnings {
		if changed[w.DrvPath] {
			fmt.Fprintf(e.stderr, "poison: warning: %s\n", w.Message)
		}
	}

	text := func(w io.Writer) { writeImpactText(w, rep) }
	if o.format == "markdown" {
		text = func(w io.Writer) { writeImpactMarkdown(w, rep, o.max) }
	}
	if err := writeReport(e.stdout, o.format == "json", rep, text); err != nil {
		return err
	}
	if o.max >= 0 && rep.Rebuilt > o.max {
		return withHint(fmt.Errorf("impact: %d derivations rebuild, more than --max %d", rep.Rebuilt, o.max),
			"a change this large needs a closer review")
	}
	return nil
}

// compareRewrites lists the members of c whose rewritten .drv path differs
// between base and next, in topological order, and classifies them by how
// their own serial moved.
func compareRewrites(c *builder.Closure, reg *registry.Registry, base, next *builder.Result) impactReport {
	basePoison := make(map[string]builder.Poison, len(base.Poisoned))
	for _, p := range base.Poisoned {
		basePoison[p.DrvPath] = p
	}
	newPoison := make(map[string]builder.Poison, len(next.Poisoned))
	for _, p := range next.Poisoned {
		newPoison[p.DrvPath] = p
	}
	rep := impactReport{Total: c.Len(), Derivations: []impactDrv{}, SerialDecreases: []string{}}
	for _, p := range c.Paths() {
		b, n := base.DrvPaths[p], next.DrvPaths[p]
		if b == n {
			continue
		}
		bp, np := basePoison[p], newPoison[p]
		d := impactDrv{Drv: p, Name: drvName(p), BaseSerial: bp.Serial, Serial: np.Serial, BaseDrv: b, NewDrv: n, Entries: []string{}, Files: []string{}}
		switch {
		case np.Serial > bp.Serial:
			d.Reason = reasonPoisoned
			d.Entries = append(d.Entries, np.Entries...)
			d.Files = entryFiles(reg, np.Entries)
			rep.Poisoned++
		case np.Serial < bp.Serial:
			d.Reason = reasonUnpoisoned
			d.Entries = append(d.Entries, bp.Entries...)
			rep.Unpoisoned++
		default:
			d.Reason = reasonDependent
			rep.Dependent++
		}
		rep.Derivations = append(rep.Derivations, d)
	}
	rep.Rebuilt = len(rep.Derivations)
	return rep
}

// drvName is the derivation name of a .drv path ("HASH-NAME.drv").
func drvName(p string) string {
	b := filepath.Base(p)
	if i := strings.IndexByte(b, '-'); i >= 0 {
		b = b[i+1:]
	}
	return strings.TrimSuffix(b, ".drv")
}

// entryFiles returns the registry files behind lock keys
// ("derivations/BASE", "outputs/BASE", "names/NAME"), sorted, each once.
func entryFiles(reg *registry.Registry, keys []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, k := range keys {
		kind, v, _ := strings.Cut(k, "/")
		var es []*registry.Entry
		if kind == "names" {
			es = reg.EntriesForName(v)
		} else {
			es = reg.EntriesFor(v)
		}
		for _, en := range es {
			if !seen[en.File] {
				seen[en.File] = true
				out = append(out, en.File)
			}
		}
	}
	slices.Sort(out)
	return out
}

func writeImpactText(w io.Writer, rep impactReport) {
	parts := []string{fmt.Sprintf("%d newly poisoned", rep.Poisoned)}
	if rep.Unpoisoned > 0 {
		parts = append(parts, fmt.Sprintf("%d UNPOISONED", rep.Unpoisoned))
	}
	parts = append(parts, fmt.Sprintf("%d dependent", rep.Dependent))
	fmt.Fprintf(w, "impact: %d of %d derivations rebuild (%s)\n", rep.Rebuilt, rep.Total, strings.Join(parts, ", "))
	if len(rep.SerialDecreases) > 0 {
		fmt.Fprintf(w, "impact: the registry lowers %d serial(s) of the base lock: %s\n", len(rep.SerialDecreases), strings.Join(rep.SerialDecreases, ", "))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, d := range rep.Derivations {
		fmt.Fprintf(tw, "%s\t%s\t%s", d.Reason, d.Name, d.Drv)
		if d.Reason != reasonDependent {
			fmt.Fprintf(tw, "\tserial %d -> %d\t%s", d.BaseSerial, d.Serial, strings.Join(d.Entries, ", "))
			if len(d.Files) > 0 {
				fmt.Fprintf(tw, " (%s)", strings.Join(d.Files, ", "))
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// markdownRows bounds the table of a Markdown report (a PR comment).
const markdownRows = 50

// writeImpactMarkdown writes the report as a pull-request comment: a
// summary line, lowered serials as a warning, and a table of the
// derivations that rebuild (poisoned and unpoisoned first).
func writeImpactMarkdown(w io.Writer, rep impactReport, max int) {
	fmt.Fprintf(w, "### poison impact\n\n")
	verdict := ""
	if max >= 0 && rep.Rebuilt > max {
		verdict = fmt.Sprintf(" — **more than the limit of %d**", max)
	}
	fmt.Fprintf(w, "**%d of %d derivations rebuild**%s: %d newly poisoned, %d dependent", rep.Rebuilt, rep.Total, verdict, rep.Poisoned, rep.Dependent)
	if rep.Unpoisoned > 0 {
		fmt.Fprintf(w, ", **%d unpoisoned**", rep.Unpoisoned)
	}
	fmt.Fprintf(w, ".\n\nBase: lock `%s` (registry commit `%s`).\n", rep.Lock, shortCommit(rep.BaseCommit))
	if len(rep.SerialDecreases) > 0 {
		fmt.Fprintf(w, "\n> [!WARNING]\n> This change lowers %d serial(s) of the base lock; entries are append-only, and a lowered serial brings a bad output back: %s\n",
			len(rep.SerialDecreases), mdCode(rep.SerialDecreases))
	}
	if len(rep.Derivations) == 0 {
		fmt.Fprintf(w, "\nNothing in the measured closure rebuilds.\n")
		return
	}
	rows := slices.Clone(rep.Derivations)
	rank := map[string]int{reasonPoisoned: 0, reasonUnpoisoned: 1, reasonDependent: 2}
	slices.SortStableFunc(rows, func(a, b impactDrv) int { return rank[a.Reason] - rank[b.Reason] })
	fmt.Fprintf(w, "\n| | derivation | serial | entries |\n|---|---|---|---|\n")
	for i, d := range rows {
		if i == markdownRows {
			fmt.Fprintf(w, "\n… and %d more (run `poison impact` for the full list).\n", len(rows)-markdownRows)
			break
		}
		serial, files := "", ""
		if d.Reason != reasonDependent {
			serial = fmt.Sprintf("%d → %d", d.BaseSerial, d.Serial)
			files = mdCode(d.Files)
			if files == "" {
				files = mdCode(d.Entries)
			}
		}
		fmt.Fprintf(w, "| %s | `%s` | %s | %s |\n", d.Reason, mdEscape(d.Name), serial, files)
	}
}

// mdCode writes items as `a`, `b`.
func mdCode(items []string) string {
	var parts []string
	for _, it := range items {
		parts = append(parts, "`"+mdEscape(it)+"`")
	}
	return strings.Join(parts, ", ")
}

// mdEscape keeps a value from breaking a table cell or a code span.
func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "`", "'", "\n", " ").Replace(s)
}
