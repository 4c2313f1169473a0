package provenance_test

import (
	"context"
	"os"
	"testing"

	"github.com/poison-nix/poison/provenance"
)

// BenchmarkRead reads the journal named by $POISON_BENCH_JOURNAL (made by
// scripts/bench-provenance.sh provenance), filtering by one host.
func BenchmarkRead(b *testing.B) {
	path := os.Getenv("POISON_BENCH_JOURNAL")
	if path == "" {
		b.Skip("set POISON_BENCH_JOURNAL to a journal (scripts/bench-provenance.sh provenance writes one)")
	}
	for i := 0; i < b.N; i++ {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		err = provenance.Read(context.Background(), f, path, provenance.ReadOptions{Filter: provenance.Filter{Host: "board3"}},
			func(*provenance.Entry) error { n++; return nil })
		f.Close()
		if err != nil || n == 0 {
			b.Fatalf("read: %v, %d records", err, n)
		}
	}
}
