package gittree_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/poison-nix/poison/internal/hostile"
	"github.com/poison-nix/poison/registry/gittree"
)

// BenchmarkReadFiles lists and reads every entry of a registry of small
// entries written by git fast-import and repacked (deltas against each
// other, as in a real registry), through the FS's own pack reader.
// POISON_BENCH_ENTRIES sets the size (default 20000). Run:
//
//	go test -run '^$' -bench ReadFiles -benchmem ./registry/gittree/
func BenchmarkReadFiles(b *testing.B) {
	n := 20000
	if v := os.Getenv("POISON_BENCH_ENTRIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	dir := filepath.Join(b.TempDir(), "many.git")
	if err := hostile.Many(dir, n); err != nil {
		b.Fatal(err)
	}
	repo := openRepo(b, dir)
	paths := make([]string, n)
	for i := range paths {
		paths[i] = hostile.ManyPath(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, _, err := gittree.Open(repo, "main", gittree.Options{GitDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		var bytes int64
		if err := f.ReadFiles(paths, 0, func(_ int, data []byte, err error) error {
			bytes += int64(len(data))
			return err
		}); err != nil {
			b.Fatal(err)
		}
		f.Close()
		b.SetBytes(bytes)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
}
