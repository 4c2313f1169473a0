package builder_test

// Benchmarks of the rewrite on a generated closure (graphgen.Bench shape:
// 2–10 KB derivations, 3–15 inputs, depth 40) with one node deep in it
// poisoned, next to the floor of reading and hashing the same files.
//
//	go test ./builder -run '^$' -bench EquivRewrite -benchtime 3x
//	POISON_BENCH_NODES=20000 go test ./builder -run '^$' -bench EquivRewrite -benchtime 3x -timeout 30m
//
// Setup instantiates the clean closure with nix-instantiate (cold the first
// time a size is used: minutes for 20,000). scripts/bench-rewrite.sh
// measures the same thing end to end, with the CLI and nix-instantiate.

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/internal/graphgen"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/registry/lock"
)

type equivBenchClosure struct {
	roots []string
	lock  *lock.File
	want  []string // Nix's poisoned .drv paths, when checked
	bytes int64
}

func setupEquivBench(b *testing.B) *equivBenchClosure {
	b.Helper()
	nixtest.Need(b)
	n := 2000
	if s := os.Getenv("POISON_BENCH_NODES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 40 {
			b.Fatalf("POISON_BENCH_NODES=%q: want a number >= 40", s)
		}
		n = v
	}
	p := graphgen.Bench(1, n)
	p.NoTwins = os.Getenv("POISON_EQUIV_NOTWINS") == "1"
	g, err := graphgen.Generate(p)
	if err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(b.TempDir(), "graph.nix")
	if err := os.WriteFile(file, g.Expr(), 0o644); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	clean, err := graphgen.Eval(ctx, nixtest.Environ(), file, "", true)
	if err != nil {
		b.Fatal(err)
	}
	victim, _ := g.Deep()
	if victim < 0 {
		b.Fatal("no node to poison")
	}
	attr := g.Nodes[victim].Attr
	lk := lock.New(lock.Source{URL: "file:///bench", Ref: "main"}, lock.DefaultEnv)
	lk.Derivations[filepath.Base(clean[attr].Drv)] = 1
	poisoned, err := graphgen.Eval(ctx, nixtest.Environ(), file, "{ "+attr+" = 1; }", false)
	if err != nil {
		b.Fatal(err)
	}
	bc := &equivBenchClosure{lock: lk}
	for _, nd := range g.Nodes {
		bc.roots = append(bc.roots, clean[nd.Attr].Drv)
		bc.want = append(bc.want, poisoned[nd.Attr].Drv)
		fi, err := os.Stat(clean[nd.Attr].Drv)
		if err != nil {
			b.Fatal(err)
		}
		bc.bytes += fi.Size()
	}
	return bc
}

// BenchmarkEquivRewrite measures LoadClosure + Rewrite of the whole closure
// (every derivation a root), checked once against nix-instantiate.
func BenchmarkEquivRewrite(b *testing.B) {
	bc := setupEquivBench(b)
	ctx := context.Background()
	run := func(b *testing.B, check bool) {
		c, err := builder.LoadClosure(ctx, builder.LoadOptions{}, bc.roots)
		if err != nil {
			b.Fatal(err)
		}
		res, err := builder.Rewrite(ctx, c, builder.Options{Lock: bc.lock})
		if err != nil {
			b.Fatal(err)
		}
		if check && !slices.Equal(res.Roots, bc.want) {
			wrong := 0
			for i := range bc.want {
				if res.Roots[i] != bc.want[i] {
					wrong++
				}
			}
			b.Fatalf("rewrite differs from nix-instantiate on %d of %d roots", wrong, len(bc.want))
		}
	}
	b.Run("load+rewrite", func(b *testing.B) {
		run(b, true)
		b.SetBytes(bc.bytes)
		b.ReportAllocs()
		c0 := graphCPUTime()
		for b.Loop() {
			run(b, false)
		}
		b.ReportMetric((graphCPUTime()-c0).Seconds()/float64(b.N), "cpu-s/op")
	})
	b.Run("rewrite", func(b *testing.B) {
		c, err := builder.LoadClosure(ctx, builder.LoadOptions{}, bc.roots)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(bc.bytes)
		b.ReportAllocs()
		c0 := graphCPUTime()
		for b.Loop() {
			if _, err := builder.Rewrite(ctx, c, builder.Options{Lock: bc.lock}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric((graphCPUTime()-c0).Seconds()/float64(b.N), "cpu-s/op")
	})
	// The floor: read every file and hash its bytes twice, on every core.
	b.Run("floor", func(b *testing.B) {
		b.SetBytes(bc.bytes)
		c0 := graphCPUTime()
		for b.Loop() {
			if err := floorRead(bc.roots); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric((graphCPUTime()-c0).Seconds()/float64(b.N), "cpu-s/op")
	})
}

// graphCPUTime is the user + system CPU time of the process so far (all
// threads): on a shared machine it is steadier than wall time.
func graphCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func floorRead(paths []string) error {
	ch := make(chan string)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range ch {
				data, err := os.ReadFile(p)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				_ = sha256.Sum256(data)
				_ = sha256.Sum256(data)
			}
		}()
	}
	for _, p := range paths {
		ch <- p
	}
	close(ch)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
