package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/internal/fleettest"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/internal/remotetest"
)

// benchDrvs instantiates n independent derivations (testdata/bench) that
// each sleep sleep seconds, with a fresh nonce.
func benchDrvs(b *testing.B, store string, n int, sleep string) []string {
	b.Helper()
	file, err := filepath.Abs("testdata/bench/independent.nix")
	if err != nil {
		b.Fatal(err)
	}
	nonce := fmt.Sprintf("%s-%d", b.Name(), time.Now().UnixNano())
	drvs := strings.Fields(nixtest.Output(b, "nix-instantiate", "--store", store, file, "--argstr", "nonce", nonce, "--argstr", "n", fmt.Sprint(n), "--argstr", "sleep", sleep))
	if len(drvs) != n {
		b.Fatalf("%d derivations, want %d", len(drvs), n)
	}
	return drvs
}

// benchHost configures the benchmark hosts: their stores skip fsync (the
// hosts share this machine's disk; what is measured is the dispatch).
func benchHost(int) remotetest.Options {
	return remotetest.Options{NixConf: "fsync-metadata = false\n"}
}

// timedBuild runs `poison build` with args and drvs and returns how long
// it took.
func timedBuild(b *testing.B, dir string, vars map[string]string, args []string, drvs []string) time.Duration {
	b.Helper()
	start := time.Now()
	r := runFleetPoison(b, dir, vars, append(append([]string{"build"}, args...), drvs...)...)
	d := time.Since(start)
	if r.code != 0 {
		b.Fatalf("poison %s: exit %d\n%s", strings.Join(args, " "), r.code, tail(r.stderr, 20))
	}
	return d
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(len(l)-n, 0):], "\n")
}

// BenchmarkDispatchSpread: 64 independent derivations that sleep 1 s
// each, sent with --per-derivation --builders to 1 machine × 4 slots,
// then to 2 machines × 4 slots. Reports both times and their ratio (the
// target is at most 0.6).
func BenchmarkDispatchSpread(b *testing.B) {
	f := fleettest.Start(b, 2, benchHost)
	dir := b.TempDir()
	// Home is a chroot store of its own (no fsync), served by a
	// nix-daemon --stdio child: the figure measures the dispatch, not
	// the contention on this machine's store database.
	home := "local?root=" + filepath.Join(dir, "home")
	lockFile := writeLock(b, dir)
	vars := map[string]string{"NIX_SSHOPTS": f.NixSSHOpts(), "NIX_CONF_DIR": dir}
	one := f.Machine("ssh-ng", "h1", 4, 1, "", "")
	two := one + ";" + f.Machine("ssh-ng", "h2", 4, 1, "", "")
	for range b.N {
		base := []string{"--lock", lockFile, "--store", home, "--per-derivation"}
		t1 := timedBuild(b, dir, vars, append(base, "--builders", one), benchDrvs(b, home, 64, "1"))
		t2 := timedBuild(b, dir, vars, append(base, "--builders", two), benchDrvs(b, home, 64, "1"))
		b.ReportMetric(t1.Seconds(), "s-1x4")
		b.ReportMetric(t2.Seconds(), "s-2x4")
		b.ReportMetric(t2.Seconds()/t1.Seconds(), "ratio")
		fmt.Printf("dispatch spread: 64 x sleep 1 s: 1 machine x 4 slots %.2f s, 2 machines x 4 slots %.2f s, ratio %.2f\n", t1.Seconds(), t2.Seconds(), t2.Seconds()/t1.Seconds())
	}
}

// BenchmarkDispatchOverhead: 1,000 trivial derivations on one machine
// (4 slots), built by Nix's own remote builds (poison's default mode
// through a daemon with builders = the machine and max-jobs = 0) and by
// poison --per-derivation --builders, same run. Reports both times and
// poison's ratio to Nix (the target is at most 1.2).
func BenchmarkDispatchOverhead(b *testing.B) {
	n := 1000
	if s := os.Getenv("POISON_BENCH_DISPATCH_N"); s != "" {
		fmt.Sscan(s, &n)
	}
	f := fleettest.Start(b, 1, benchHost)
	machine := f.Machine("ssh-ng", "h1", 4, 1, "", "")
	nixd := f.StartNixDaemon(b, machine, "")
	dir := b.TempDir()
	lockFile := writeLock(b, dir)
	vars := map[string]string{"NIX_SSHOPTS": f.NixSSHOpts(), "NIX_CONF_DIR": dir}
	for range b.N {
		tNix := timedBuild(b, dir, vars, []string{"--lock", lockFile, "--store", nixd.URI(), "-j", "0"}, benchDrvs(b, "auto", n, "0"))
		tPoison := timedBuild(b, dir, vars, []string{"--lock", lockFile, "--store", nixd.URI(), "--per-derivation", "--builders", machine}, benchDrvs(b, "auto", n, "0"))
		b.ReportMetric(tNix.Seconds(), "s-nix")
		b.ReportMetric(tPoison.Seconds(), "s-poison")
		b.ReportMetric(tPoison.Seconds()/tNix.Seconds(), "ratio")
		fmt.Printf("dispatch overhead: %d trivial derivations, 1 machine x 4 slots: Nix remote build %.2f s, poison --per-derivation %.2f s, ratio %.2f\n", n, tNix.Seconds(), tPoison.Seconds(), tPoison.Seconds()/tNix.Seconds())
	}
}
