package resolver_test

import (
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/resolver"
)

func TestFreshness(t *testing.T) {
	w := newWorld(t, baseEntries())
	res, err := resolver.Resolve(t.Context(), w.opts(w.repo.Dir))
	if err != nil {
		t.Fatal(err)
	}
	l := res.Lock
	cases := []struct {
		name   string
		cache  resolver.Cache
		at     time.Time
		maxAge time.Duration
		warn   string
		desc   string
	}{
		{"fresh", w.cache, now.Add(time.Hour), 24 * time.Hour, "", "fetched 1h ago"},
		{"stale", w.cache, now.Add(72 * time.Hour), 24 * time.Hour, "last fetched 3d ago, more than --max-age 24h", "fetched 3d ago"},
		{"no limit", w.cache, now.Add(1000 * time.Hour), 0, "", "fetched 41d ago"},
		{"unknown", resolver.Cache{Dir: t.TempDir()}, now, time.Hour, "no record of a fetch", "never fetched on this machine"},
	}
	for _, c := range cases {
		f := resolver.CheckFreshness(c.cache, l, c.maxAge, c.at)
		if got := f.Warning(); (c.warn == "") != (got == "") || !strings.Contains(got, c.warn) {
			t.Errorf("%s: warning %q, want %q", c.name, got, c.warn)
		}
		d := f.Describe("poison.lock")
		if !strings.Contains(d, c.desc) || !strings.Contains(d, l.Registry.Commit[:12]) || !strings.HasPrefix(d, "lock poison.lock: registry "+w.repo.Dir+" (main)") {
			t.Errorf("%s: describe %q", c.name, d)
		}
	}
	if d := resolver.CheckFreshness(w.cache, lock.New(lock.Source{URL: "/x"}, "E"), 0, now).Describe("p"); !strings.Contains(d, "no commit") {
		t.Errorf("describe without commit: %q", d)
	}
}
