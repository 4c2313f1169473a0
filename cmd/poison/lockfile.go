package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/poison-nix/poison/internal/settings"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/resolver"
)

// loadSettings merges the command's setting flags (sf) over the
// environment, poison.toml and the defaults. A bad value from the
// environment or poison.toml is an error naming its source.
func loadSettings(e *env, sf *settings.Flags) (settings.Settings, error) {
	s, err := sf.Load(e.dir, e.getenv)
	if err != nil {
		return s, withHint(err, "fix the value, or override it with the flag")
	}
	return s, nil
}

// readLock reads the lock the settings name (flag, POISON_LOCK,
// poison.toml lock, else poison.lock), prints which registry commit it
// pins and warns when that fetch is older than max-age. A missing lock is
// an error naming where its path came from. A lock written before
// registry URLs were redacted may hold credentials: the returned lock has
// its URL redacted, so that nothing printed or exported holds them (the
// cache is keyed by the redacted URL).
func readLock(e *env, cmd string, s settings.Settings) (*lock.File, error) {
	return readLockAs(e, cmd, "lock file", "run 'poison resolve' first, or pass --lock FILE", s)
}

// readLockAs is readLock with the lock's role ("base lock") and the hint
// for a missing one.
func readLockAs(e *env, cmd, what, hint string, s settings.Settings) (*lock.File, error) {
	l, err := lock.ReadFile(s.Lock)
	if err != nil {
		origin := ""
		if o := s.Origin("lock"); o != "default" {
			origin = " (from " + displayPath(e, o) + ")"
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, withHint(fmt.Errorf("%s: no %s %s%s", cmd, what, displayPath(e, s.Lock), origin), hint)
		}
		return nil, fmt.Errorf("%s: %w%s", cmd, err, origin)
	}
	l.Registry.URL = resolver.RedactURL(l.Registry.URL)
	describeLock(e, s, l)
	if err := checkVerified(e, cmd, s, l); err != nil {
		return nil, err
	}
	return l, nil
}

// describeLock prints, for any command that uses a lock, the registry
// commit lock l pins and, when that registry was last fetched on this
// machine longer ago than max-age, a warning.
func describeLock(e *env, s settings.Settings, l *lock.File) {
	f := resolver.CheckFreshness(resolver.Cache{Dir: s.CacheDir}, l, s.MaxAge, e.now())
	fmt.Fprintf(e.stderr, "poison: %s\n", f.Describe(displayPath(e, s.Lock)))
	if w := f.Warning(); w != "" {
		fmt.Fprintf(e.stderr, "poison: warning: %s\n", w)
	}
}

// checkVerified refuses a lock the configured trusted keys do not vouch
// for (resolved without verification, or by another key).
func checkVerified(e *env, cmd string, s settings.Settings, l *lock.File) error {
	if s.TrustedKeys == "" {
		return nil
	}
	keys, err := resolver.ReadTrustedKeys(s.TrustedKeys)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if err := resolver.CheckVerified(l, keys); err != nil {
		return withHint(fmt.Errorf("%s: %s: %w (trusted keys from %s)", cmd, displayPath(e, s.Lock), err, displayPath(e, s.Origin("trusted-keys"))),
			"run 'poison resolve' to verify the registry commit against the trusted keys")
	}
	return nil
}
