package binarycache_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/binarycache"
	"github.com/poison-nix/poison/registry/lock"
)

// hashOf returns a valid, distinct 32-character nixbase32 hash for i.
func hashOf(prefix byte, i int) string {
	const alpha = "0123456789abcdfghijklmnpqrsvwxyz"
	b := []byte(strings.Repeat("0", 32))
	b[0] = prefix
	for k := 31; k > 0 && i > 0; k-- {
		b[k] = alpha[i%32]
		i /= 32
	}
	return string(b)
}

// fixture is a file cache of n narinfos: path i is HASH(i)-pkg-i, built by
// drv HASH'(i)-pkg-i.drv. It returns the cache dir.
func fixture(t testing.TB, n int) string {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n"), 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "nar"), 0o755))
	for i := 0; i < n; i++ {
		h := hashOf('1', i)
		ni := fmt.Sprintf("StorePath: /nix/store/%s-pkg-%d\nURL: nar/%s.nar.xz\nCompression: xz\nNarHash: sha256:%s\nNarSize: 120\nReferences: \nDeriver: %s-pkg-%d.drv\nSig: cache-1:abc==\n", h, i, h, strings.Repeat("0", 52), hashOf('2', i), i)
		must(t, os.WriteFile(filepath.Join(dir, h+".narinfo"), []byte(ni), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "nar", h+".nar.xz"), []byte("nar"), 0o644))
	}
	return dir
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// poisonLock poisons outputs outs and derivations drvs (by index).
func poisonLock(outs, drvs []int) *lock.File {
	lk := lock.New(lock.Source{URL: "file:///reg", Commit: strings.Repeat("a", 40)}, "POISON_SERIAL")
	for _, i := range outs {
		lk.Outputs[fmt.Sprintf("%s-pkg-%d", hashOf('1', i), i)] = 1
	}
	for _, i := range drvs {
		lk.Derivations[fmt.Sprintf("%s-pkg-%d.drv", hashOf('2', i), i)] = 2
	}
	return lk
}

// treeHash hashes every file and directory under dir: relative path, mode
// and content. Equal hashes mean byte-identical trees.
func treeHash(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v", rel, fi.Mode())
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			line += " " + hex.EncodeToString(sum[:])
		}
		lines = append(lines, line)
		return nil
	})
	must(t, err)
	sort.Strings(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:])
}

func TestQuarantineRestore(t *testing.T) {
	ctx := context.Background()
	dir := fixture(t, 40)
	before := treeHash(t, dir)
	// outputs 3 and 7, derivations 7 (also an output) and 12: three narinfos
	p := binarycache.FromLock(poisonLock([]int{3, 7}, []int{7, 12}))

	hits, problems, err := binarycache.ScanDir(ctx, dir, p)
	must(t, err)
	if len(problems) != 0 || len(hits) != 3 {
		t.Fatalf("scan: hits %v, problems %v; want 3 hits", hits, problems)
	}
	if treeHash(t, dir) != before {
		t.Fatal("ScanDir changed the cache")
	}

	dry, err := binarycache.Quarantine(ctx, dir, p, binarycache.QuarantineOptions{Source: "test", Now: time.Unix(0, 0), DryRun: true})
	must(t, err)
	if len(dry.Moved) != 3 || treeHash(t, dir) != before {
		t.Fatalf("dry run: %d moved, cache changed: %v", len(dry.Moved), treeHash(t, dir) != before)
	}

	now := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	res, err := binarycache.Quarantine(ctx, dir, p, binarycache.QuarantineOptions{Source: "poison.lock (registry file:///reg at aaaa)", Now: now})
	must(t, err)
	want := map[string]string{hashOf('1', 3): "output", hashOf('1', 7): "output", hashOf('1', 12): "deriver"}
	if len(res.Moved) != 3 {
		t.Fatalf("moved %v, want 3", res.Moved)
	}
	for _, m := range res.Moved {
		if !strings.HasPrefix(m.Why, want[m.Hash]) {
			t.Errorf("moved %s (%s), want reason %q", m.Hash, m.Why, want[m.Hash])
		}
		if _, err := os.Stat(filepath.Join(dir, m.Hash+".narinfo")); err == nil {
			t.Errorf("%s.narinfo still served", m.Hash)
		}
		if _, err := os.Stat(filepath.Join(dir, "nar", m.Hash+".nar.xz")); err != nil {
			t.Errorf("the NAR of %s was touched: %v", m.Hash, err)
		}
		rec, err := os.ReadFile(filepath.Join(dir, "quarantine", m.Hash+".json"))
		must(t, err)
		if !strings.Contains(string(rec), `"time": "2026-12-02T18:00:00Z"`) || !strings.Contains(string(rec), "registry file:///reg") {
			t.Errorf("record of %s: %s", m.Hash, rec)
		}
	}
	if hits, _, _ := binarycache.ScanDir(ctx, dir, p); len(hits) != 0 {
		t.Errorf("after quarantine the cache still serves %v", hits)
	}
	if n, _ := filepath.Glob(filepath.Join(dir, "*.narinfo")); len(n) != 37 {
		t.Errorf("%d narinfos left, want 37 (the others untouched)", len(n))
	}

	// Idempotent: nothing new moves; the three are reported as already there.
	mid := treeHash(t, dir)
	again, err := binarycache.Quarantine(ctx, dir, p, binarycache.QuarantineOptions{Source: "x", Now: now.Add(time.Hour)})
	must(t, err)
	if len(again.Moved) != 0 || len(again.Already) != 3 || treeHash(t, dir) != mid {
		t.Errorf("second quarantine: moved %v, already %v, changed %v", again.Moved, again.Already, treeHash(t, dir) != mid)
	}

	rr, err := binarycache.Restore(ctx, dir, false)
	must(t, err)
	if len(rr.Restored) != 3 || len(rr.Problems) != 0 {
		t.Fatalf("restore: %+v", rr)
	}
	if got := treeHash(t, dir); got != before {
		t.Fatal("after restore the cache differs from before the quarantine")
	}
	rr, err = binarycache.Restore(ctx, dir, false)
	must(t, err)
	if len(rr.Restored) != 0 || treeHash(t, dir) != before {
		t.Errorf("second restore: %+v", rr)
	}
}

// TestQuarantineReupload: a narinfo uploaded again after its quarantine
// is never overwritten, by quarantine or restore.
func TestQuarantineReupload(t *testing.T) {
	ctx := context.Background()
	dir := fixture(t, 5)
	p := binarycache.FromLock(poisonLock([]int{2}, nil))
	_, err := binarycache.Quarantine(ctx, dir, p, binarycache.QuarantineOptions{Now: time.Now()})
	must(t, err)
	h := hashOf('1', 2)
	orig, err := os.ReadFile(filepath.Join(dir, "quarantine", h+".narinfo"))
	must(t, err)
	reup := append([]byte(nil), orig...)
	reup = append(reup, "Ca: reuploaded\n"...)
	must(t, os.WriteFile(filepath.Join(dir, h+".narinfo"), reup, 0o644))

	res, err := binarycache.Quarantine(ctx, dir, p, binarycache.QuarantineOptions{Now: time.Now()})
	must(t, err)
	if len(res.Moved) != 0 || len(res.Problems) != 1 {
		t.Fatalf("quarantine over a re-upload: %+v", res)
	}
	rr, err := binarycache.Restore(ctx, dir, false)
	must(t, err)
	if len(rr.Restored) != 0 || len(rr.Problems) != 1 {
		t.Fatalf("restore over a re-upload: %+v", rr)
	}
	for name, want := range map[string][]byte{h + ".narinfo": reup, "quarantine/" + h + ".narinfo": orig} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s changed: %v", name, err)
		}
	}
}

// TestHostileCache: links and garbage are reported, never followed.
func TestHostileCache(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	dir := fixture(t, 3)
	p := binarycache.FromLock(poisonLock(nil, []int{0}))
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("StorePath: /nix/store/x\n"), 0o644))
	must(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, hashOf('3', 1)+".narinfo")))
	must(t, os.WriteFile(filepath.Join(dir, hashOf('3', 2)+".narinfo"), []byte("garbage without colon\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, hashOf('3', 3)+".narinfo"), []byte(strings.Repeat("A: b\n", binarycache.MaxNarInfo)), 0o644))
	hits, problems, err := binarycache.ScanDir(ctx, dir, p)
	must(t, err)
	if len(hits) != 1 || len(problems) != 3 {
		t.Fatalf("hits %v, problems %v; want 1 hit and 3 problems", hits, problems)
	}
	must(t, os.Symlink(outside, filepath.Join(dir, "quarantine")))
	if _, err := binarycache.Quarantine(ctx, dir, p, binarycache.QuarantineOptions{Now: time.Now()}); err == nil {
		t.Error("quarantine followed a symlinked quarantine/")
	}
	if _, err := binarycache.Restore(ctx, dir, false); err == nil {
		t.Error("restore followed a symlinked quarantine/")
	}
	if _, _, err := binarycache.ScanDir(ctx, outside, p); err == nil {
		t.Error("a directory without nix-cache-info was scanned")
	}
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		in, dir, url string
		err          bool
	}{
		{"file:///srv/cache", "/srv/cache", "", false},
		{"file:///srv/cache?compression=zstd", "/srv/cache", "", false},
		{"file://rel/dir", "rel/dir", "", false},
		{"http://127.0.0.1:8080/c/", "", "http://127.0.0.1:8080/c", false},
		{"https://cache.example.com?priority=10", "", "https://cache.example.com", false},
		{"s3://bucket", "", "", true},
		{"ssh://host", "", "", true},
		{"/srv/cache", "", "", true},
		{"http://", "", "", true},
	}
	for _, tc := range tests {
		loc, err := binarycache.ParseURI(tc.in)
		if (err != nil) != tc.err || loc.Dir != tc.dir || loc.URL != tc.url {
			t.Errorf("ParseURI(%q) = %+v, %v; want dir %q url %q error %v", tc.in, loc, err, tc.dir, tc.url, tc.err)
		}
	}
}

// TestServedHTTP asks an HTTP server for the poisoned outputs' narinfos;
// a server error is a failed lookup, never "not served".
func TestServedHTTP(t *testing.T) {
	ctx := context.Background()
	dir := fixture(t, 10)
	broken := hashOf('1', 5)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, broken) {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		http.FileServer(http.Dir(dir)).ServeHTTP(w, r)
	}))
	defer srv.Close()
	loc, err := binarycache.ParseURI(srv.URL)
	must(t, err)
	p := binarycache.FromLock(poisonLock([]int{1, 5, 99}, []int{2}))
	res, err := binarycache.Served(ctx, loc, p, srv.Client())
	must(t, err)
	if len(res.Hits) != 1 || res.Hits[0].Hash != hashOf('1', 1) || len(res.Failed) != 1 || res.DeriverChecked {
		t.Fatalf("served over HTTP: %+v", res)
	}
	fileRes, err := binarycache.Served(ctx, binarycache.Location{Dir: dir}, p, nil)
	must(t, err)
	if len(fileRes.Hits) != 3 || !fileRes.DeriverChecked {
		t.Fatalf("served from the directory: %+v", fileRes)
	}
}

// BenchmarkQuarantine quarantines 500 poisoned outputs of a 10,000-narinfo
// cache and restores them; the tree hash proves the restore exact.
func BenchmarkQuarantine(b *testing.B) {
	ctx := context.Background()
	dir := fixture(b, 10000)
	var outs, drvs []int
	for i := 0; i < 500; i++ {
		if i%2 == 0 {
			outs = append(outs, i*20)
		} else {
			drvs = append(drvs, i*20)
		}
	}
	p := binarycache.FromLock(poisonLock(outs, drvs))
	before := treeHash(b, dir)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, err := binarycache.Quarantine(ctx, dir, p, binarycache.QuarantineOptions{Now: time.Now(), Source: "bench"})
		if err != nil || len(res.Moved) != 500 {
			b.Fatalf("quarantine: %v, moved %d", err, len(res.Moved))
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "quarantine-ms")
		start = time.Now()
		rr, err := binarycache.Restore(ctx, dir, false)
		if err != nil || len(rr.Restored) != 500 {
			b.Fatalf("restore: %v, %d", err, len(rr.Restored))
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "restore-ms")
	}
	b.StopTimer()
	if treeHash(b, dir) != before {
		b.Fatal("the cache is not byte-identical after restore")
	}
}
