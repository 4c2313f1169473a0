package builder_test

import (
	"context"
	"flag"
	"fmt"
	"os"
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

// BenchmarkWriteOps compares the two ways of writing on a private daemon
// (its own nix-daemon process on the system store, so its CPU time is
// measured alone): one pipelined AddToStore per derivation against
// QueryValidPaths + one AddMultipleToStore. Each iteration writes a fresh
// closure of -bench-nodes trivial derivations.
//
//	go test ./builder -run '^$' -bench BenchmarkWriteOps -benchtime 3x
//
// Metrics: ms/drv is the wall time per derivation; daemon-ms/drv is the
// CPU time (user + system) of the daemon's worker per derivation.
func BenchmarkWriteOps(b *testing.B) {
	nixtest.Need(b)
	d := daemontest.Start(b)
	for _, mode := range []string{"AddToStore", "AddMultipleToStore"} {
		b.Run(mode, func(b *testing.B) {
			file := filepath.Join(daemontest.RepoRoot(b), "testdata", "daemon", "wide.nix")
			n := fmt.Sprint(*benchNodes)
			ctx := context.Background()
			var wall, cpu time.Duration
			var written int
			for i := range b.N {
				b.StopTimer()
				nonce := fmt.Sprintf("bench-ops-%s-%d-%d", mode, time.Now().UnixNano(), i)
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
				conn, err := daemon.Dial(ctx, d.URI(), offlineOpts())
				if err != nil {
					b.Fatal(err)
				}
				cpu0 := reapedCPU(b, d.PID())
				t0 := time.Now()
				b.StartTimer()
				if mode == "AddToStore" {
					err = builder.WriteTexts(ctx, conn, res)
				} else {
					err = builder.Write(ctx, conn, res)
				}
				b.StopTimer()
				wall += time.Since(t0)
				if err != nil {
					b.Fatal(err)
				}
				conn.Close()
				cpu += waitReapedCPU(b, d.PID(), cpu0)
				written += len(res.Changed)
			}
			b.ReportMetric(float64(wall.Microseconds())/1000/float64(written), "ms/drv")
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(written), "daemon-ms/drv")
		})
	}
}

// reapedCPU returns the CPU time of the reaped children of pid (the
// daemon's finished connection workers): cutime + cstime of /proc/PID/stat.
func reapedCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields after the command: state is f[0]; cutime and cstime are
	// fields 16 and 17 of the whole line, f[13] and f[14] here.
	var cu, cs int64
	fmt.Sscan(f[13], &cu)
	fmt.Sscan(f[14], &cs)
	return time.Duration(cu+cs) * time.Second / 100 // USER_HZ
}

// waitReapedCPU waits until the worker of a closed connection has been
// reaped (its CPU time shows up) and returns the CPU time added since
// before.
func waitReapedCPU(b *testing.B, pid int, before time.Duration) time.Duration {
	var last time.Duration
	for range 50 {
		now := reapedCPU(b, pid)
		if now > before && now == last {
			return now - before
		}
		last = now
		time.Sleep(20 * time.Millisecond)
	}
	return last - before
}

// BenchmarkWriteParallel writes two fresh closures of -bench-nodes
// derivations on a private daemon: one after the other on one connection,
// and at the same time on two connections. It shows whether the daemon's
// workers can write in parallel (they share one SQLite database).
func BenchmarkWriteParallel(b *testing.B) {
	nixtest.Need(b)
	d := daemontest.Start(b)
	file := filepath.Join(daemontest.RepoRoot(b), "testdata", "daemon", "wide.nix")
	n := fmt.Sprint(*benchNodes)
	ctx := context.Background()
	prepare := func(tag string) *builder.Result {
		top := nixtest.Output(b, "nix-instantiate", file, "-A", "top", "--arg", "n", n, "--argstr", "nonce", fmt.Sprintf("bench-par-%s-%d", tag, time.Now().UnixNano()))
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
		return res
	}
	for _, conns := range []int{1, 2} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			var wall time.Duration
			var written int
			for range b.N {
				b.StopTimer()
				r1, r2 := prepare("a"), prepare("b")
				c1, err := daemon.Dial(ctx, d.URI(), offlineOpts())
				if err != nil {
					b.Fatal(err)
				}
				c2, err := daemon.Dial(ctx, d.URI(), offlineOpts())
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				b.StartTimer()
				if conns == 1 {
					if err := builder.Write(ctx, c1, r1); err != nil {
						b.Fatal(err)
					}
					if err := builder.Write(ctx, c1, r2); err != nil {
						b.Fatal(err)
					}
				} else {
					errc := make(chan error, 1)
					go func() { errc <- builder.Write(ctx, c2, r2) }()
					if err := builder.Write(ctx, c1, r1); err != nil {
						b.Fatal(err)
					}
					if err := <-errc; err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				wall += time.Since(t0)
				c1.Close()
				c2.Close()
				written += len(r1.Changed) + len(r2.Changed)
			}
			b.ReportMetric(float64(wall.Microseconds())/1000/float64(written), "ms/drv")
		})
	}
}
