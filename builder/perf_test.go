package builder_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/registry/lock"
)

// BenchmarkRewriteRoots rewrites an existing closure, every derivation of
// which is a root, as `poison rewrite --no-write --stdin` does. Point it
// at the files scripts/bench-rewrite.sh leaves behind:
//
//	POISON_BENCH_ROOTS=/tmp/poison-bench/roots POISON_BENCH_LOCK=/tmp/poison-bench/poison.lock \
//	  go test ./builder -run '^$' -bench RewriteRoots -benchtime 5x
func BenchmarkRewriteRoots(b *testing.B) {
	rootsFile, lockFile := os.Getenv("POISON_BENCH_ROOTS"), os.Getenv("POISON_BENCH_LOCK")
	if rootsFile == "" || lockFile == "" {
		b.Skip("set POISON_BENCH_ROOTS and POISON_BENCH_LOCK")
	}
	roots := readLines(b, rootsFile)
	lk, err := lock.ReadFile(lockFile)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("load", func(b *testing.B) {
		defer cpuTime(b)()
		for b.Loop() {
			if _, err := builder.LoadClosure(ctx, builder.LoadOptions{}, roots); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("load+rewrite", func(b *testing.B) {
		defer cpuTime(b)()
		for b.Loop() {
			c, err := builder.LoadClosure(ctx, builder.LoadOptions{}, roots)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := builder.Rewrite(ctx, c, builder.Options{Lock: lk, NoATerm: true}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("floor", func(b *testing.B) {
		defer cpuTime(b)()
		for b.Loop() {
			for _, r := range roots {
				data, err := os.ReadFile(filepath.Join("/nix/store", filepath.Base(r)))
				if err != nil {
					b.Fatal(err)
				}
				sha256.Sum256(data)
				sha256.Sum256(data)
			}
		}
	})
}

// cpuTime reports the CPU time (user + system) per op: on a shared
// machine it is steadier than wall time.
func cpuTime(b *testing.B) func() {
	var r0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	return func() {
		var r1 syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
		ns := (r1.Utime.Nano() + r1.Stime.Nano()) - (r0.Utime.Nano() + r0.Stime.Nano())
		b.ReportMetric(float64(ns)/float64(b.N)/1e6, "cpu-ms/op")
	}
}

func readLines(b testing.TB, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}
