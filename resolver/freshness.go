package resolver

import (
	"fmt"
	"time"

	"github.com/poison-nix/poison/registry/lock"
)

// Freshness describes a lock for the commands that read it: which registry
// commit it pins and how long ago that registry was last fetched on this
// machine.
type Freshness struct {
	URL, Ref, Commit string
	// LastFetch is the last successful fetch of URL recorded in the cache;
	// zero when this machine has no record of one.
	LastFetch time.Time
	// Age is the time since LastFetch.
	Age time.Duration
	// MaxAge is the allowed age (0: no limit).
	MaxAge time.Duration
}

// CheckFreshness looks up when the registry of l was last fetched.
//
// Locks and the cache state both record the redacted URL (RedactURL), so
// a lock finds the fetch that made it. A lock written before the URLs
// were redacted may still hold credentials: its URL is redacted here (f.URL
// never holds any), and looked up in the cache under both forms, the
// form as written being how an earlier version keyed its state.
func CheckFreshness(c Cache, l *lock.File, maxAge time.Duration, now time.Time) Freshness {
	url := RedactURL(l.Registry.URL)
	f := Freshness{URL: url, Ref: l.Registry.Ref, Commit: l.Registry.Commit, MaxAge: maxAge}
	if c.Dir == "" {
		return f
	}
	st, ok := c.readState(url)
	if !ok && url != l.Registry.URL {
		st, ok = c.readState(l.Registry.URL)
	}
	if ok {
		f.LastFetch = st.LastFetch
		f.Age = now.Sub(st.LastFetch)
	}
	return f
}

// Stale reports whether the lock is older than MaxAge or of unknown age.
func (f Freshness) Stale() bool {
	return f.MaxAge > 0 && (f.LastFetch.IsZero() || f.Age > f.MaxAge)
}

// Describe is the line a command prints about the lock it uses, e.g.
// "lock poison.lock: registry https://h/r (main) at commit 0123456789ab, fetched 2h ago".
func (f Freshness) Describe(path string) string {
	commit := f.Commit
	if commit == "" {
		commit = "(a plain directory, no commit)"
	} else {
		commit = "commit " + commit[:12]
	}
	ref := ""
	if f.Ref != "" {
		ref = " (" + f.Ref + ")"
	}
	when := "never fetched on this machine"
	if !f.LastFetch.IsZero() {
		when = "fetched " + humanAge(f.Age) + " ago"
	}
	return fmt.Sprintf("lock %s: registry %s%s at %s, %s", path, f.URL, ref, commit, when)
}

// Warning is the warning to print when Stale, else "".
func (f Freshness) Warning() string {
	if !f.Stale() {
		return ""
	}
	if f.LastFetch.IsZero() {
		return fmt.Sprintf("no record of a fetch of registry %s on this machine: the lock may miss recent poisonings; run 'poison resolve'", f.URL)
	}
	return fmt.Sprintf("registry %s was last fetched %s ago, more than --max-age %s: the lock may miss recent poisonings; run 'poison resolve'", f.URL, humanAge(f.Age), humanAge(f.MaxAge))
}

func humanAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}
