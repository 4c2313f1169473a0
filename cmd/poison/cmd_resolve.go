package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/poison-nix/poison/internal/settings"
	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/resolver"
)

func resolveCommand() command {
	return command{
		name:    "resolve",
		summary: "fetch the registry, pin a commit and write poison.lock",
		usage: "[--registry URL|DIR] [--ref REF] [--lock FILE] [--nix FILE] [--offline] [--max-age DURATION]\n" +
			"              [--skip-invalid] [--allow-serial-decrease] [--trusted-keys FILE]\n" +
			"              [--ssh-key FILE] [--connect-timeout DURATION] [--stall-timeout DURATION]\n" +
			"              [--max-entries N] [--max-tree-depth N] [--max-entry-size SIZE] [--max-tree-size SIZE] [--max-registry-bytes SIZE]",
		setup: func(fs *flag.FlagSet) runFunc {
			sf := settings.Register(fs, append([]string{"registry", "ref", "lock", "nix", "max-age", "trusted-keys", "offline",
				"ssh-key", "connect-timeout", "stall-timeout"}, settings.LimitSettings...)...)
			skip := fs.Bool("skip-invalid", false, "resolve the valid entries when some are invalid (warns, naming the skipped files)")
			allowDecrease := fs.Bool("allow-serial-decrease", false, "accept a registry state that lowers serials of the previous lock")
			asJSON := fs.Bool("json", false, "print the result as one JSON document on stdout (warnings stay on stderr)")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) > 0 {
					return usageErrorf("resolve takes no arguments, got %q", args[0])
				}
				s, err := loadSettings(e, sf)
				if err != nil {
					return err
				}
				return runResolve(ctx, e, s, *skip, *allowDecrease, *asJSON)
			}
		},
	}
}

// resolveMemoryLimit is the soft memory limit of a resolve (unless
// GOMEMLIMIT sets one): the garbage collector works harder near it instead
// of letting the heap grow to twice what is live. A resolve of a
// 1,000,000-entry registry keeps about 330 MB live at its peak.
const resolveMemoryLimit = 384 << 20

func runResolve(ctx context.Context, e *env, s settings.Settings, skip, allowDecrease, asJSON bool) error {
	if e.getenv("GOMEMLIMIT") == "" {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(resolveMemoryLimit))
	}
	if s.Registry == "" {
		return withHint(errors.New("resolve: no registry configured"),
			"pass --registry URL|DIR, set POISON_REGISTRY, or put registry = \"URL\" in poison.toml")
	}
	o := resolver.UpdateOptions{
		Options: resolver.Options{
			Registry:    s.Registry,
			Ref:         s.Ref,
			BaseDir:     e.dir,
			Cache:       resolver.Cache{Dir: s.CacheDir},
			Offline:     s.Offline,
			SkipInvalid: skip,
			Now:         e.now(),
			Network:     resolveNetwork(e, s),
			Limits:      registryLimits(s),
		},
		LockPath:            s.Lock,
		NixPath:             s.Nix,
		AllowSerialDecrease: allowDecrease,
	}
	if s.TrustedKeys == "" && s.Origin("trusted-keys") == "--trusted-keys" {
		// An explicit empty value must not turn verification off silently.
		if base, err := settings.Load(e.dir, e.getenv); err == nil && base.TrustedKeys != "" {
			return withHint(usageErrorf("--trusted-keys '' would turn off the signature verification that %s asks for (%s)", base.Origin("trusted-keys"), base.TrustedKeys),
				"to stop verifying this registry, remove trusted-keys from "+base.Origin("trusted-keys")+"; otherwise drop --trusted-keys ''")
		}
	}
	if s.TrustedKeys != "" {
		k, err := resolver.ReadTrustedKeys(s.TrustedKeys)
		if err != nil {
			return err
		}
		o.TrustedKeys = k
	}
	lockName := displayPath(e, s.Lock)
	res, prev, err := resolver.Update(ctx, o)
	kept := "no previous lock"
	if prev != nil {
		kept = fmt.Sprintf("kept the previous lock %s (commit %s)", lockName, shortCommit(prev.Registry.Commit))
	}
	if err != nil {
		var ps registry.Problems
		var fe *resolver.FetchError
		var sd *resolver.SerialDecreaseError
		switch {
		case errors.As(err, &ps):
			for _, p := range ps {
				fmt.Fprintf(e.stderr, "poison: error: %s\n", p)
			}
			fmt.Fprintf(e.stderr, "poison: error: resolve: %d invalid entr%s in the registry; %s\n", len(ps), plural(len(ps), "y", "ies"), kept)
			fmt.Fprintf(e.stderr, "poison: hint: fix the entries (poison lint) or pass --skip-invalid to resolve the rest\n")
			return silentExit(exitError)
		case errors.As(err, &fe):
			return withHint(fmt.Errorf("%w; %s", err, kept), fe.Hint(e.now()))
		case errors.As(err, &sd):
			return withHint(fmt.Errorf("resolve: %w; %s", err, kept),
				"if the registry really dropped these entries on purpose, pass --allow-serial-decrease")
		}
		return fmt.Errorf("resolve: %w; %s", err, kept)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(e.stderr, "poison: warning: %s\n", w)
	}
	if len(res.Skipped) > 0 {
		for _, p := range res.Skipped {
			fmt.Fprintf(e.stderr, "poison: warning: SKIPPED: %s\n", p)
		}
		files := res.SkippedFiles()
		fmt.Fprintf(e.stderr, "poison: warning: --skip-invalid left out %d invalid entr%s: %s: whatever they poison is NOT poisoned by this lock\n",
			len(files), plural(len(files), "y", "ies"), strings.Join(files, ", "))
	}
	if res.Recloned {
		fmt.Fprintf(e.stderr, "poison: warning: the cached clone of %s was unreadable; it was cloned again and replaced\n", res.Source.URL)
	}
	if res.Signer != "" {
		fmt.Fprintf(e.stderr, "poison: commit %s signed by %s\n", shortCommit(res.Pinned.Commit), res.Signer)
	}
	if s.Offline {
		f := resolver.CheckFreshness(resolver.Cache{Dir: s.CacheDir}, &lock.File{Registry: res.Pinned}, s.MaxAge, e.now())
		if w := f.Warning(); w != "" {
			fmt.Fprintf(e.stderr, "poison: warning: %s\n", w)
		}
	}
	pin := res.Pinned
	change := "new lock"
	switch {
	case res.Unchanged:
		change = "unchanged"
	case prev != nil:
		change = "was " + shortCommit(prev.Registry.Commit)
	}
	ref := ""
	if pin.Ref != "" {
		ref = " (" + pin.Ref + ")"
	}
	if asJSON {
		j := resolveJSON{Lock: lockName, Registry: registryJSON{URL: pin.URL, Ref: pin.Ref, Commit: pin.Commit},
			Unchanged: res.Unchanged, Signer: res.Signer, Nix: "", Skipped: []string{}}
		if prev != nil {
			j.PreviousCommit = prev.Registry.Commit
		}
		if d, o, n, ok := res.Sizes(); ok {
			j.Derivations, j.Outputs, j.Names = d, o, n
		} else if res.Unchanged {
			if l, err := lock.ReadFile(s.Lock); err == nil { // unchanged: decoded lazily, read it for the counts
				j.Derivations, j.Outputs, j.Names = len(l.Derivations), len(l.Outputs), len(l.Names)
			}
		}
		if s.Nix != "" {
			j.Nix = displayPath(e, s.Nix)
		}
		if len(res.Skipped) > 0 {
			j.Skipped = res.SkippedFiles()
		}
		return writeReport(e.stdout, true, j, nil)
	}
	counts := ""
	if d, o, n, ok := res.Sizes(); ok {
		counts = fmt.Sprintf(": %d derivations, %d outputs, %d names", d, o, n)
	}
	fmt.Fprintf(e.stdout, "%s: registry %s%s at commit %s (%s)%s\n", lockName, pin.URL, ref, shortCommit(pin.Commit), change, counts)
	if s.Nix != "" {
		fmt.Fprintf(e.stdout, "%s: written from the same lock\n", displayPath(e, s.Nix))
	}
	return nil
}

// resolveJSON is `poison resolve --json` (docs/json.md).
type resolveJSON struct {
	Lock           string       `json:"lock"`
	Registry       registryJSON `json:"registry"`
	PreviousCommit string       `json:"previousCommit"` // "" for a new lock
	Unchanged      bool         `json:"unchanged"`
	Derivations    int          `json:"derivations"` // keys in the lock
	Outputs        int          `json:"outputs"`
	Names          int          `json:"names"`
	Signer         string       `json:"signer"`  // "" when no trusted keys are configured
	Nix            string       `json:"nix"`     // poison.nix written too, or ""
	Skipped        []string     `json:"skipped"` // entry files left out by --skip-invalid
}

type registryJSON struct {
	URL    string `json:"url"`
	Ref    string `json:"ref"`
	Commit string `json:"commit"`
}

func shortCommit(c string) string {
	if c == "" {
		return "(none)"
	}
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// displayPath shows p relative to the working directory when it is inside.
func displayPath(e *env, p string) string {
	if rel, err := filepath.Rel(e.dir, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}

// absPath resolves p against the working directory.
func absPath(e *env, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(e.dir, p)
}
