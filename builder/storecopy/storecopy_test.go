package storecopy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/builder/storecopy"
	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/internal/remotetest"
)

// fixture is a closure of every kind of path in this machine's store:
// built outputs (input-addressed, b's output refers to a's), .drv files
// (text CA) and a tree from nix-store --add (fixed:r CA) with a
// directory, an executable, a symlink and a file larger than a frame.
type fixture struct {
	src     storecopy.Daemon
	roots   []string
	closure []string // nix-store -qR of roots
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := daemontest.Context(t, time.Minute)
	d := daemontest.Start(t)
	pool := daemon.NewPool(d.URI(), daemon.Options{Settings: offline()}, 2)
	t.Cleanup(func() { pool.Close() })
	g := daemontest.Instantiate(t, daemontest.WorldDir(t), daemontest.GraphArgs{})
	var res []daemon.BuildResult
	err := pool.Do(ctx, func(c *daemon.Conn) (err error) {
		res, err = c.BuildPathsWithResults(ctx, []string{g.Drvs["b"] + "!out"}, daemon.BuildNormal)
		return err
	})
	if err != nil || len(res) != 1 || !res[0].Status.Success() {
		t.Fatalf("build b: %+v, %v", res, err)
	}
	tree := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(tree, "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(tree, "sub", "file"), []byte(t.Name()+time.Now().String()), 0o644))
	must(t, os.WriteFile(filepath.Join(tree, "run"), []byte("#!/bin/sh\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(tree, "big"), bytes.Repeat([]byte("poison"), 100000), 0o644))
	must(t, os.Symlink("sub/file", filepath.Join(tree, "link")))
	added := nixtest.Output(t, "nix-store", "--add", tree)
	f := &fixture{src: storecopy.Daemon{Pool: pool}, roots: []string{res[0].BuiltOutputs["out"], added, g.Drvs["top"]}}
	f.closure = strings.Fields(nixtest.Output(t, "nix-store", append([]string{"--query", "--requisites"}, f.roots...)...))
	return f
}

func offline() *daemon.Settings {
	s := daemon.DefaultSettings()
	s.Overrides = map[string]string{"substituters": ""}
	return &s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// remote returns a Dest for host h over ssh-ng.
func remote(t *testing.T, h *remotetest.Host) storecopy.Daemon {
	p := daemon.NewPool(h.URI("ssh-ng"), daemon.Options{SSHOpts: h.SSH.SSHOpts(), Settings: offline()}, 1)
	t.Cleanup(func() { p.Close() })
	return storecopy.Daemon{Pool: p}
}

// pathInfos returns `nix path-info --json` of paths in store, keyed by
// path, without the registration time.
func pathInfos(t *testing.T, h *remotetest.Host, paths []string) map[string]map[string]any {
	t.Helper()
	// A .drv installable means its outputs, unless --derivation.
	var drvs, others []string
	for _, p := range paths {
		if strings.HasSuffix(p, ".drv") {
			drvs = append(drvs, p)
		} else {
			others = append(others, p)
		}
	}
	m := map[string]map[string]any{}
	for _, args := range [][]string{others, append([]string{"--derivation"}, drvs...)} {
		out := h.Nix(t, "nix", append([]string{"--extra-experimental-features", "nix-command", "path-info", "--json"}, args...)...)
		var list []map[string]any
		must(t, json.Unmarshal([]byte(out), &list))
		for _, e := range list {
			delete(e, "registrationTime")
			m[e["path"].(string)] = e
		}
	}
	return m
}

// TestCopyClosureSSHNG copies a closure to an empty ssh-ng store and does
// the same with `nix copy --to ssh-ng://` into a second one: the stores
// then hold the same paths with the same path info and bytes.
func TestCopyClosureSSHNG(t *testing.T) {
	remotetest.Need(t)
	f := newFixture(t)
	ctx := daemontest.Context(t, 2*time.Minute)
	h, hn := remotetest.Start(t, "poison", remotetest.Options{}), remotetest.Start(t, "nix", remotetest.Options{})
	dst := remote(t, h)

	// Unsigned input-addressed paths are refused when signatures are
	// checked, as with nix copy; the content-addressed ones go through.
	if _, err := storecopy.CopyClosure(ctx, f.src, dst, f.roots, storecopy.Options{}); err == nil || !strings.Contains(err.Error(), "lacks a valid signature") {
		t.Fatalf("CopyClosure checking signatures: %v, want 'lacks a valid signature'", err)
	}
	dst = remote(t, h) // the refusal may have ended the session

	var progress []int
	res, err := storecopy.CopyClosure(ctx, f.src, dst, f.roots, storecopy.Options{
		AddOptions: storecopy.AddOptions{NoCheckSigs: true},
		Progress:   func(n int, _ uint64) { progress = append(progress, n) },
	})
	if err != nil {
		t.Fatalf("CopyClosure: %v", err)
	}
	valid := 0
	for _, p := range f.closure {
		if h.Valid(t, p) && !slices.Contains(res.Copied, p) {
			valid++
		}
	}
	if len(res.Copied)+res.Valid != len(f.closure) || res.Valid != valid {
		t.Errorf("copied %d, %d valid before (%d found); closure has %d", len(res.Copied), res.Valid, valid, len(f.closure))
	}
	// References first.
	for i, p := range res.Copied {
		for _, r := range strings.Fields(h.Nix(t, "nix-store", "--query", "--references", p)) {
			if j := slices.Index(res.Copied, r); r != p && j > i {
				t.Errorf("%s copied before its reference %s", p, r)
			}
		}
	}
	if len(progress) != len(res.Copied) || progress[len(progress)-1] != len(res.Copied) {
		t.Errorf("progress calls %v for %d paths", progress, len(res.Copied))
	}
	var size uint64
	for _, p := range res.Copied {
		var sz uint64
		must(t, json.Unmarshal([]byte(nixtest.Output(t, "nix", "--extra-experimental-features", "nix-command", "path-info", "--json", p)), &[]struct {
			NarSize *uint64 `json:"narSize"`
		}{{NarSize: &sz}}))
		size += sz
	}
	if res.Bytes != size {
		t.Errorf("Result.Bytes = %d, NAR sizes sum to %d", res.Bytes, size)
	}

	// nix copy of the same roots into the other host (a .drv installable
	// means its outputs unless --derivation).
	for _, args := range [][]string{f.roots[:2], {"--derivation", f.roots[2]}} {
		cmd := nixtest.Command("nix", "--extra-experimental-features", "nix-command", "copy", "--no-check-sigs",
			"--to", "ssh-ng://"+hn.SSH.User+"@"+hn.SSH.Host)
		cmd.Args = append(cmd.Args, args...)
		cmd.Env = append(cmd.Env, "NIX_SSHOPTS="+hn.NixSSHOpts())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nix copy: %v: %s", err, out)
		}
	}
	ours, theirs := pathInfos(t, h, f.closure), pathInfos(t, hn, f.closure)
	for _, p := range f.closure {
		a, _ := json.Marshal(ours[p])
		b, _ := json.Marshal(theirs[p])
		if ours[p] == nil || !bytes.Equal(a, b) {
			t.Errorf("%s:\n poison copy: %s\n nix copy:    %s", p, a, b)
		}
		if got, want := h.Nix(t, "nix-store", "--dump", p), hn.Nix(t, "nix-store", "--dump", p); got != want {
			t.Errorf("%s: NARs differ between the two copies", p)
		}
	}

	// Everything is there now: a second copy sends nothing.
	res, err = storecopy.CopyClosure(ctx, f.src, dst, f.roots, storecopy.Options{})
	if err != nil || len(res.Copied) != 0 || res.Valid != len(f.closure) {
		t.Errorf("second CopyClosure = %+v, %v; want nothing copied, %d valid", res, err, len(f.closure))
	}
}

// TestCopyFailures: a path the source lacks, a destination that drops in
// the middle and a cancelled copy each end with an error, in bounded time.
func TestCopyFailures(t *testing.T) {
	remotetest.Need(t)
	f := newFixture(t)
	h := remotetest.Start(t, "h", remotetest.Options{})
	opts := storecopy.Options{AddOptions: storecopy.AddOptions{NoCheckSigs: true}}

	t.Run("not in the source", func(t *testing.T) {
		ctx := daemontest.Context(t, time.Minute)
		const missing = "/nix/store/00000000000000000000000000000000-nope"
		_, err := storecopy.CopyClosure(ctx, f.src, remote(t, h), []string{missing}, opts)
		if err == nil || !strings.Contains(err.Error(), missing+" is not valid in the source store") {
			t.Errorf("CopyClosure(missing) = %v", err)
		}
	})
	t.Run("unreachable destination", func(t *testing.T) {
		ctx := daemontest.Context(t, time.Minute)
		p := daemon.NewPool("ssh-ng://nobody@127.0.0.1:1", daemon.Options{SSHOpts: h.SSH.SSHOpts(), Settings: offline()}, 1)
		defer p.Close()
		_, err := storecopy.CopyClosure(ctx, f.src, storecopy.Daemon{Pool: p}, f.roots, opts)
		if err == nil || !strings.Contains(err.Error(), "connect to the destination store") {
			t.Errorf("CopyClosure to an unreachable store = %v", err)
		}
		// A path the source lacks is the error to report, whatever the
		// login (made at the same time) gives.
		const missing = "/nix/store/00000000000000000000000000000000-nope"
		_, err = storecopy.CopyClosure(ctx, f.src, storecopy.Daemon{Pool: p}, []string{missing}, opts)
		if err == nil || !strings.Contains(err.Error(), missing+" is not valid in the source store") {
			t.Errorf("CopyClosure(missing) to an unreachable store = %v", err)
		}
	})
	t.Run("destination drops", func(t *testing.T) {
		ctx := daemontest.Context(t, time.Minute)
		o := opts
		o.Progress = func(n int, _ uint64) {
			if n == 1 {
				h.Drop()
			}
		}
		start := time.Now()
		res, err := storecopy.CopyClosure(ctx, f.src, remote(t, h), f.roots, o)
		if err == nil || ctx.Err() != nil {
			t.Fatalf("CopyClosure with a dropped destination = %+v, %v after %v", res, err, time.Since(start))
		}
		t.Logf("%v: %v", time.Since(start), err)
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(daemontest.Context(t, time.Minute))
		o := opts
		o.Progress = func(n int, _ uint64) { cancel() }
		_, err := storecopy.CopyClosure(ctx, f.src, remote(t, remotetest.Start(t, "c", remotetest.Options{})), f.roots, o)
		if err == nil {
			t.Fatalf("CopyClosure after cancel succeeded")
		}
	})
}

// TestNARReader: the NAR of every kind of tree is nix-store --dump's.
func TestNARReader(t *testing.T) {
	nixtest.Need(t)
	tree := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(tree, "empty-dir"), 0o755))
	must(t, os.MkdirAll(filepath.Join(tree, "a", "b", "c"), 0o755))
	must(t, os.WriteFile(filepath.Join(tree, "empty"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(tree, "a", "b", "c", "seven"), []byte("1234567"), 0o644))
	must(t, os.WriteFile(filepath.Join(tree, "exe"), []byte("#!/bin/sh\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(tree, "big"), bytes.Repeat([]byte("0123456789"), 100001), 0o644))
	must(t, os.WriteFile(filepath.Join(tree, "Upper"), []byte("sorted before lower case"), 0o644))
	must(t, os.Symlink("a/b/c/seven", filepath.Join(tree, "link")))
	must(t, os.Symlink("/nonexistent/target", filepath.Join(tree, "dangling")))
	file := filepath.Join(t.TempDir(), "file")
	must(t, os.WriteFile(file, []byte("single file"), 0o644))
	link := filepath.Join(t.TempDir(), "link")
	must(t, os.Symlink("target", link))
	for _, p := range []string{tree, file, link, filepath.Join(tree, "exe"), filepath.Join(tree, "empty")} {
		want, err := exec.Command("nix-store", "--dump", p).Output()
		if err != nil {
			t.Fatalf("nix-store --dump %s: %v", p, err)
		}
		r, err := storecopy.NewNARReader(p)
		if err != nil {
			t.Fatal(err)
		}
		// Small reads cross every segment boundary.
		var got bytes.Buffer
		buf := make([]byte, 5)
		for {
			n, err := r.Read(buf)
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("read NAR of %s: %v", p, err)
			}
		}
		r.Close()
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("NAR of %s: %d bytes, nix-store --dump %d bytes, differ", p, got.Len(), len(want))
		}
	}

	// A file that changes between the walk and the read is an error.
	r, err := storecopy.NewNARReader(tree)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(tree, "big"), []byte("short now"), 0o644))
	if _, err := io.Copy(io.Discard, r); err == nil || !strings.Contains(err.Error(), "shrank") {
		t.Errorf("NAR of a tree whose file shrank: %v", err)
	}
	// A file that grows is an error too, read in small pieces or large.
	for _, size := range []int{5, 64 << 10} {
		seven := filepath.Join(tree, "a", "b", "c", "seven")
		must(t, os.WriteFile(seven, []byte("1234567"), 0o644))
		r, err := storecopy.NewNARReader(tree)
		if err != nil {
			t.Fatal(err)
		}
		must(t, os.WriteFile(seven, []byte("12345678"), 0o644))
		_, err = io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{r}, make([]byte, size))
		if err == nil || !strings.Contains(err.Error(), "grew") {
			t.Errorf("NAR of a tree whose file grew (reads of %d bytes): %v", size, err)
		}
		r.Close()
	}
	if _, err := storecopy.NewNARReader(filepath.Join(tree, "missing")); err == nil {
		t.Errorf("NAR of a missing path: no error")
	}
}

// TestLocalSource copies a closure reading the NARs from the store's files
// into an ssh-ng host; the host's daemon checks every NAR against the
// hash the source daemon gave.
func TestLocalSource(t *testing.T) {
	remotetest.Need(t)
	f := newFixture(t)
	ctx := daemontest.Context(t, 2*time.Minute)
	h := remotetest.Start(t, "local-source", remotetest.Options{})
	src := storecopy.Local{Infos: f.src}
	res, err := storecopy.CopyClosure(ctx, src, remote(t, h), f.roots, storecopy.Options{AddOptions: storecopy.AddOptions{NoCheckSigs: true}})
	if err != nil {
		t.Fatalf("CopyClosure from the store's files: %v", err)
	}
	if len(res.Copied) != len(f.closure) {
		t.Errorf("copied %d paths, closure has %d", len(res.Copied), len(f.closure))
	}
	for _, p := range f.closure {
		if got, want := h.Nix(t, "nix-store", "--query", "--hash", p), nixtest.Output(t, "nix-store", "--query", "--hash", p); got != want {
			t.Errorf("%s: hash %s on the host, %s here", p, got, want)
		}
	}
	// A path outside the store directory is refused before reading.
	bad := []*daemon.PathInfo{{Path: "/etc/passwd", NarSize: 1}}
	if err := src.NarsFromPaths(ctx, bad, func(int, io.Reader) error { return nil }); err == nil || !strings.Contains(err.Error(), "not a path of the store") {
		t.Errorf("NarsFromPaths(/etc/passwd) = %v", err)
	}
}

// recording is a Dest that records how AddNars was asked to add.
type recording struct {
	storecopy.Daemon
	onePerPath []bool
}

func (r *recording) AddNars(ctx context.Context, n int, next func(int) (daemon.NarSource, error), opts storecopy.AddOptions) error {
	r.onePerPath = append(r.onePerPath, opts.OnePerPath)
	return r.Daemon.AddNars(ctx, n, next, opts)
}

// TestCopyStreamFallback: paths go in one AddMultipleToStore stream; when
// a path of it turned valid after the destination was asked (another
// client copied it meanwhile), Nix 2.8 skips its NAR and the stream goes
// out of step: Copy then asks again and adds the rest path by path, and
// the copy completes. Progress counts every path of the copy once.
func TestCopyStreamFallback(t *testing.T) {
	remotetest.Need(t)
	f := newFixture(t)
	ctx := daemontest.Context(t, 2*time.Minute)
	h := remotetest.Start(t, "fallback", remotetest.Options{})
	dst := &recording{Daemon: remote(t, h)}
	src := storecopy.Local{Infos: f.src}
	opts := storecopy.Options{AddOptions: storecopy.AddOptions{NoCheckSigs: true}}

	missing, valid, err := storecopy.Missing(ctx, src, dst, f.roots)
	if err != nil || valid != 0 || len(missing) != len(f.closure) {
		t.Fatalf("Missing = %d paths, %d valid, %v; want the %d paths of the closure", len(missing), valid, err, len(f.closure))
	}
	// Another client adds a path from the middle (with its closure).
	mid := missing[len(missing)/2]
	if _, err := storecopy.CopyClosure(ctx, src, remote(t, h), []string{mid.Path}, opts); err != nil {
		t.Fatal(err)
	}
	last := 0
	o := opts
	o.Progress = func(n int, _ uint64) {
		if n <= last && n != len(missing) {
			t.Errorf("progress went from %d to %d", last, n)
		}
		last = n
	}
	res, err := storecopy.Copy(ctx, src, dst, missing, o)
	if err != nil {
		t.Fatalf("Copy with a path turned valid meanwhile: %v", err)
	}
	for _, p := range f.closure {
		if !h.Valid(t, p) {
			t.Errorf("%s not valid after the copy", p)
		}
	}
	if last != len(missing) {
		t.Errorf("progress ended at %d of %d", last, len(missing))
	}
	t.Logf("AddNars calls (one per path?): %v; %d paths copied", dst.onePerPath, len(res.Copied))
	if len(dst.onePerPath) == 0 || dst.onePerPath[0] {
		t.Errorf("AddNars calls %v: want a stream first", dst.onePerPath)
	}
	// On Nix 2.8 the stream fails at the valid path: the rest went one by one.
	if h.Nix(t, "nix-store", "--version") == "nix-store (Nix) 2.8.0" && !slices.Equal(dst.onePerPath, []bool{false, true}) {
		t.Errorf("AddNars calls %v on Nix 2.8: want the stream, then path by path", dst.onePerPath)
	}
}
