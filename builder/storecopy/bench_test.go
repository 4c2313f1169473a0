package storecopy_test

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/builder/storecopy"
	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/internal/remotetest"
)

var copyPaths = flag.Int("copy-paths", 2000, "paths in the closure of BenchmarkCopyVsNix")

// BenchmarkCopyVsNix copies a closure of -copy-paths paths
// (testdata/copy/closure.nix, 60 MB for 2,000) from this machine's store
// to an empty ssh-ng store, with storecopy (the NARs read from the store's
// files, as poison copy does) and with `nix copy --to ssh-ng://`, both in
// every iteration, alternating which goes first, each into a fresh host.
// Both times include the ssh login. It reports the seconds of each and
// the throughput ratio poison/nix (above 1: poison is faster).
//
//	go test ./builder/storecopy -run '^$' -bench CopyVsNix -benchtime 3x
func BenchmarkCopyVsNix(b *testing.B) {
	remotetest.Need(b)
	file := filepath.Join(daemontest.RepoRoot(b), "testdata", "copy", "closure.nix")
	root := strings.Trim(nixtest.Output(b, "nix-instantiate", "--eval", "--read-write-mode", file,
		"--arg", "n", fmt.Sprint(*copyPaths), "--argstr", "seed", fmt.Sprintf("gobench-%d", time.Now().UnixNano())), `"`)
	count := len(strings.Fields(nixtest.Output(b, "nix-store", "--query", "--requisites", root)))
	if count != *copyPaths {
		b.Fatalf("closure of %s has %d paths, want %d", root, count, *copyPaths)
	}
	ctx := context.Background()
	home := daemon.NewPool("daemon", daemon.Options{Settings: offline()}, 1)
	defer home.Close()

	poison := func(h *remotetest.Host) {
		dst := daemon.NewPool(h.URI("ssh-ng"), daemon.Options{SSHOpts: h.SSH.SSHOpts(), Settings: offline()}, 1)
		defer dst.Release() // as poison copy: the copy is acknowledged
		res, err := storecopy.CopyClosure(ctx, storecopy.Local{Infos: storecopy.Daemon{Pool: home}}, storecopy.Daemon{Pool: dst}, []string{root}, storecopy.Options{})
		if err != nil || len(res.Copied) != count {
			b.Fatalf("CopyClosure: %v (%d paths copied)", err, len(res.Copied))
		}
	}
	nix := func(h *remotetest.Host) {
		cmd := nixtest.Command("nix", "--extra-experimental-features", "nix-command", "copy", "--to", "ssh-ng://"+h.SSH.User+"@"+h.SSH.Host, root)
		cmd.Env = append(cmd.Env, "NIX_SSHOPTS="+h.NixSSHOpts())
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("nix copy: %v: %s", err, out)
		}
	}
	var tp, tn time.Duration
	b.ResetTimer()
	for i := range b.N {
		order := []string{"poison", "nix"}
		if i%2 == 1 {
			order = []string{"nix", "poison"}
		}
		for _, tool := range order {
			b.StopTimer()
			h := remotetest.Start(b, fmt.Sprintf("%s-%d", tool, i), remotetest.Options{})
			b.StartTimer()
			start := time.Now()
			if tool == "poison" {
				poison(h)
				tp += time.Since(start)
			} else {
				nix(h)
				tn += time.Since(start)
			}
			b.StopTimer()
			if !h.Valid(b, root) {
				b.Fatalf("%s: %s not valid on the host after the copy", tool, root)
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(tp.Seconds()/float64(b.N), "poison-s/op")
	b.ReportMetric(tn.Seconds()/float64(b.N), "nix-s/op")
	b.ReportMetric(float64(count)*float64(b.N)/tp.Seconds(), "poison-paths/s")
	b.ReportMetric(float64(count)*float64(b.N)/tn.Seconds(), "nix-paths/s")
	b.ReportMetric(tn.Seconds()/tp.Seconds(), "throughput-ratio")
}
