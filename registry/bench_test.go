package registry_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/registry/internal/gen"
)

// BenchmarkLoad measures LoadDir of a generated registry. The size is
// POISON_BENCH_ENTRIES (default 100000); the target is under 3 s per
// operation for 100,000 entries on 2 cores. POISON_BENCH_DIR names a
// registry written by genregistry to use instead of generating one.
func BenchmarkLoad(b *testing.B) {
	n := 100000
	if s := os.Getenv("POISON_BENCH_ENTRIES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	dir := os.Getenv("POISON_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
		if err := gen.Write(dir, 1, n); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		r, err := registry.LoadDir(dir, registry.LoadOptions{Now: time.Now()})
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Entries) != n {
			b.Fatalf("loaded %d entries, want %d", len(r.Entries), n)
		}
	}
	b.ReportMetric(float64(n), "entries")
}

// BenchmarkCheckHistory measures the append-only check over a generated
// history of POISON_BENCH_COMMITS (default 1000) commits; the target is
// under 2 s.
func BenchmarkCheckHistory(b *testing.B) {
	n := 1000
	if s := os.Getenv("POISON_BENCH_COMMITS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	dir := b.TempDir()
	ctx := context.Background()
	if err := gen.WriteHistory(ctx, dir, 1, n); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		repo, err := registry.OpenGitRepo(dir)
		if err != nil {
			b.Fatal(err)
		}
		ps, err := registry.CheckHistory(ctx, repo, "HEAD~"+strconv.Itoa(n), "HEAD", registry.HistoryOptions{FastForward: true})
		if err != nil {
			b.Fatal(err)
		}
		if len(ps) != 0 {
			b.Fatalf("problems in a clean history: %v", ps)
		}
	}
}
