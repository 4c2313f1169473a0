package builder_test

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/registry/lock"
)

var benchNodes = flag.Int("bench-nodes", 5000, "derivations in the write benchmark's graph")

// BenchmarkWrite writes a rewritten closure of -bench-nodes trivial
// derivations (node 0 poisoned, so every one is rewritten) through the
// system daemon, and for comparison measures nix-instantiate writing the
// same derivations (the expression with the attribute, fresh nonce):
//
//	go test ./builder -run '^$' -bench BenchmarkWrite -benchtime 1x
//
// Metrics: ns/op is poison's WritePool; nix-instantiate-ns is nix-instantiate
// (evaluation included, as users see it); drvs is the number written;
// again-ns is writing the same closure again (all valid: protocol cost).
func BenchmarkWrite(b *testing.B) {
	nixtest.Need(b)
	for _, conns := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) { benchWrite(b, conns) })
	}
}

func benchWrite(b *testing.B, conns int) {
	file := filepath.Join(daemontest.RepoRoot(b), "testdata", "daemon", "wide.nix")
	n := fmt.Sprint(*benchNodes)
	ctx := context.Background()
	var nixTotal time.Duration
	var written int
	var again time.Duration
	for i := range b.N {
		b.StopTimer()
		nonce := fmt.Sprintf("bench-write-%d-%d", time.Now().UnixNano(), i)
		top := nixtest.Output(b, "nix-instantiate", file, "-A", "top", "--arg", "n", n, "--argstr", "nonce", nonce)
		lk := lock.New(lock.Source{}, lock.DefaultEnv)
		c, err := builder.LoadClosure(ctx, builder.LoadOptions{}, []string{top})
		if err != nil {
			b.Fatal(err)
		}
		lk.Derivations[filepath.Base(nodeZero(b, c))] = 1
		res, err := builder.Rewrite(ctx, c, builder.Options{Lock: lk})
		if err != nil {
			b.Fatal(err)
		}
		p := daemon.NewPool("daemon", offlineOpts(), conns)
		b.StartTimer()
		if err := builder.WritePool(ctx, p, res, conns); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		t0 := time.Now()
		if err := builder.WritePool(ctx, p, res, conns); err != nil {
			b.Fatal(err)
		}
		again += time.Since(t0)
		p.Close()
		written += len(res.Changed)

		// nix-instantiate writing the same derivations (another nonce, so
		// they are new to the store too).
		start := time.Now()
		nixtest.Output(b, "nix-instantiate", file, "-A", "top", "--arg", "n", n, "--argstr", "nonce", nonce+"-nix", "--argstr", "poison", "0")
		nixTotal += time.Since(start)
	}
	b.ReportMetric(float64(written)/float64(b.N), "drvs")
	b.ReportMetric(float64(again.Nanoseconds())/float64(b.N), "again-ns")
	b.ReportMetric(float64(nixTotal.Nanoseconds())/float64(b.N), "nix-instantiate-ns")
}

// nodeZero returns the .drv path of node w0 in a closure.
func nodeZero(b *testing.B, c *builder.Closure) string {
	for _, p := range c.Paths() {
		if strings.HasSuffix(p, "-w0.drv") {
			return p
		}
	}
	b.Fatal("no w0.drv in the closure")
	return ""
}
