package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/resolver"
)

// resolveFlags are the settings flags shared by resolve, export and show.
type resolveFlags struct {
	registry, ref, lock, nix, maxAge, trustedKeys string
	offline                                       bool
}

func (f *resolveFlags) register(fs *flag.FlagSet, all bool) {
	fs.StringVar(&f.lock, "lock", "", "lock file (env POISON_LOCK, poison.toml lock; default poison.lock)")
	fs.StringVar(&f.maxAge, "max-age", "", "warn when the registry was last fetched longer ago, e.g. 36h or 7d; 0 disables (env POISON_MAX_AGE, poison.toml max-age; default 7d)")
	if !all {
		return
	}
	fs.StringVar(&f.registry, "registry", "", "registry URL (file, git, http(s), ssh) or directory (env POISON_REGISTRY, poison.toml registry)")
	fs.StringVar(&f.ref, "ref", "", "branch, tag or commit to pin (env POISON_REF, poison.toml ref; default the remote's default branch)")
	fs.StringVar(&f.nix, "nix", "", "also write poison.nix to this file (env POISON_NIX, poison.toml nix)")
	fs.StringVar(&f.trustedKeys, "trusted-keys", "", "file of OpenPGP/SSH public keys; the pinned commit must be signed by one (env POISON_TRUSTED_KEYS, poison.toml trusted-keys)")
	fs.BoolVar(&f.offline, "offline", false, "resolve from the cache, without network access (env POISON_OFFLINE=1)")
}

// settings merges flags over the environment and poison.toml.
func (f *resolveFlags) settings(e *env, fs *flag.FlagSet) (resolver.Settings, error) {
	s, err := resolver.LoadSettings(e.dir, e.getenv)
	if err != nil {
		return s, err
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(e.dir, p)
	}
	var ferr error
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "registry":
			s.Registry = f.registry
		case "ref":
			s.Ref = f.ref
		case "lock":
			s.Lock = abs(f.lock)
		case "nix":
			s.Nix = abs(f.nix)
		case "trusted-keys":
			s.TrustedKeys = abs(f.trustedKeys)
		case "offline":
			s.Offline = f.offline
		case "max-age":
			d, err := resolver.ParseAge(f.maxAge)
			if err != nil {
				ferr = usageErrorf("--max-age: %v", err)
			}
			s.MaxAge = d
		}
	})
	return s, ferr
}

func resolveCommand() command {
	c := command{
		name:    "resolve",
		summary: "fetch the registry, pin a commit and write poison.lock",
		usage: "[--registry URL|DIR] [--ref REF] [--lock FILE] [--nix FILE] [--offline] [--max-age DURATION]\n" +
			"              [--skip-invalid] [--allow-serial-decrease] [--trusted-keys FILE]",
	}
	c.run = func(ctx context.Context, e *env, args []string) error {
		fs := newFlags(e, &c)
		var rf resolveFlags
		rf.register(fs, true)
		skip := fs.Bool("skip-invalid", false, "resolve the valid entries when some are invalid (warns, naming the skipped files)")
		allowDecrease := fs.Bool("allow-serial-decrease", false, "accept a registry state that lowers serials of the previous lock")
		if err := parseFlags(e, &c, fs, args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usageErrorf("resolve takes no arguments, got %q", fs.Arg(0))
		}
		s, err := rf.settings(e, fs)
		if err != nil {
			return err
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
				SkipInvalid: *skip,
				Now:         e.now(),
			},
			LockPath:            s.Lock,
			NixPath:             s.Nix,
			AllowSerialDecrease: *allowDecrease,
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
				hint := "check the URL and the network"
				if errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) {
					hint = "check the credentials of the registry URL (an expired or revoked token?)"
				}
				if !s.Offline {
					hint += ", or pass --offline to resolve from the cache"
				}
				return withHint(fmt.Errorf("%w; %s", err, kept), hint)
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
		counts := ""
		if l := res.Lock; l != nil {
			counts = fmt.Sprintf(": %d derivations, %d outputs, %d names", len(l.Derivations), len(l.Outputs), len(l.Names))
		}
		fmt.Fprintf(e.stdout, "%s: registry %s%s at commit %s (%s)%s\n", lockName, pin.URL, ref, shortCommit(pin.Commit), change, counts)
		if s.Nix != "" {
			fmt.Fprintf(e.stdout, "%s: written from the same lock\n", displayPath(e, s.Nix))
		}
		return nil
	}
	return c
}

// readLockDescribed reads the lock named by the settings and describes it
// (see describeLock). A lock written before registry URLs were redacted may
// hold credentials: the returned lock has its URL redacted, so that what
// show prints and export writes never holds them (the cache is keyed by the
// redacted URL, so show still finds the registry there).
func readLockDescribed(e *env, s resolver.Settings) (*lock.File, error) {
	l, err := lock.ReadFile(s.Lock)
	if err != nil {
		return nil, withHint(err, "run 'poison resolve' to create it")
	}
	l.Registry.URL = resolver.RedactURL(l.Registry.URL)
	describeLockMaxAge(e, s, s.Lock, l)
	return l, nil
}

// describeLock prints, for any command that uses a lock, the registry
// commit lock l (read from path) pins and, when that registry was last
// fetched on this machine longer ago than the max age (POISON_MAX_AGE,
// poison.toml max-age, default 7d; 0 disables), a warning. Commands with
// their own --max-age flag use describeLockMaxAge.
func describeLock(e *env, path string, l *lock.File) {
	s, err := resolver.LoadSettings(e.dir, e.getenv)
	if err != nil {
		fmt.Fprintf(e.stderr, "poison: warning: %v\n", err)
		s.MaxAge = resolver.DefaultMaxAge
	}
	describeLockMaxAge(e, s, path, l)
}

func describeLockMaxAge(e *env, s resolver.Settings, path string, l *lock.File) {
	f := resolver.CheckFreshness(resolver.Cache{Dir: s.CacheDir}, l, s.MaxAge, e.now())
	fmt.Fprintf(e.stderr, "poison: %s\n", f.Describe(displayPath(e, path)))
	if w := f.Warning(); w != "" {
		fmt.Fprintf(e.stderr, "poison: warning: %s\n", w)
	}
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
