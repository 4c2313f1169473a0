package resolver_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/poison-nix/poison/internal/hostile"
	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/resolver"
)

// TestFetchLimits: a fetched pack holding an object over the network cap
// (a 17 MiB blob: above the 16 MiB default) is refused in one line that
// names the setting raising it; with the entry-size limit raised above the
// blob, the fetch goes through and the blob is refused as an entry, again
// naming the setting.
func TestFetchLimits(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bomb.git")
	if err := hostile.Build(dir, "zipbomb", 17<<20); err != nil {
		t.Fatal(err)
	}
	cache := resolver.Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	o := resolver.Options{Registry: "file://" + dir, Cache: cache, Now: now}
	_, err := resolver.Resolve(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "more than the 16.0 MiB an object of a registry may have") ||
		!strings.HasSuffix(err.Error(), "; if the registry is right, raise the limit with --max-entry-size") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("fetch of a 17 MiB blob: %v\nwant one line ending in the --max-entry-size setting", err)
	}

	o.Limits = registry.Limits{FileSize: 32 << 20}
	_, err = resolver.Resolve(context.Background(), o)
	var ps registry.Problems
	if err == nil || strings.Contains(err.Error(), "an object of a registry may have") {
		t.Fatalf("with --max-entry-size 32M: %v, want the fetch to pass and the entry to be refused", err)
	}
	if !errors.As(err, &ps) || !strings.Contains(ps.Error(), "bomb.toml") {
		t.Errorf("with --max-entry-size 32M: %v, want a problem naming bomb.toml", err)
	}
}
