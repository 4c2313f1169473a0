package resolver_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/poison-nix/poison/resolver"
	"github.com/poison-nix/poison/resolver/internal/regtest"
)

// BenchmarkResolve measures resolves of a generated registry served by a
// local git daemon, next to plain git clone and git fetch of the same
// repository (the floor). POISON_BENCH_ENTRIES sets the size (default
// 100000). Run:
//
//	go test -run '^$' -bench Resolve -benchtime 3x ./resolver/
//
// Targets (issue 4): cold <= 10 s, warm <= 1 s, one new commit <= 1.5 s.
func BenchmarkResolve(b *testing.B) {
	n := 100000
	if v := os.Getenv("POISON_BENCH_ENTRIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	root := b.TempDir()
	work := filepath.Join(root, "work")
	if err := regtest.WriteMany(work, n); err != nil {
		b.Fatal(err)
	}
	regtest.InitRepo(b, work)
	bare := filepath.Join(root, "reg.git")
	regtest.Git(b, root, "clone", "-q", "--bare", work, bare)
	regtest.Git(b, bare, "gc", "-q")
	d := regtest.StartDaemon(b, root)
	url := d.URL("reg.git")
	seq := 0
	newCommit := func() {
		seq++
		name := "bench-" + strconv.Itoa(seq)
		p := filepath.Join(work, filepath.FromSlash(regtest.EntryPath(name)))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, regtest.Entry(name, "bench"), 0o644)
		regtest.Git(b, work, "add", "-A")
		regtest.Git(b, work, "commit", "-q", "-m", name)
		regtest.Git(b, work, "push", "-q", bare, "main")
	}
	update := func(cache, lockPath string) {
		_, _, err := resolver.Update(context.Background(), resolver.UpdateOptions{
			Options:  resolver.Options{Registry: url, Cache: resolver.Cache{Dir: cache}},
			LockPath: lockPath,
		})
		if err != nil {
			b.Fatal(err)
		}
	}

	b.Run("floor-git-clone", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			regtest.Git(b, root, "clone", "-q", "--bare", url, filepath.Join(b.TempDir(), "c.git"))
		}
	})
	b.Run("cold", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			dir := b.TempDir()
			update(filepath.Join(dir, "cache"), filepath.Join(dir, "poison.lock"))
		}
	})
	cache, lockPath := filepath.Join(root, "cache"), filepath.Join(root, "poison.lock")
	update(cache, lockPath)
	floor := filepath.Join(root, "floor.git")
	regtest.Git(b, root, "clone", "-q", "--bare", url, floor)
	b.Run("floor-git-fetch-nothing-new", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			regtest.Git(b, floor, "fetch", "-q", url, "+refs/heads/*:refs/heads/*")
		}
	})
	b.Run("warm", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			update(cache, lockPath)
		}
	})
	b.Run("floor-git-fetch-one-commit", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			newCommit()
			b.StartTimer()
			regtest.Git(b, floor, "fetch", "-q", url, "+refs/heads/*:refs/heads/*")
		}
	})
	update(cache, lockPath)
	b.Run("one-new-commit", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			newCommit()
			b.StartTimer()
			update(cache, lockPath)
		}
	})
}
