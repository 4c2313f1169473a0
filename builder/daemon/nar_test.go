package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
)

// narFixture is a set of valid paths of every kind in the store of a
// private daemon: built outputs (input-addressed, one referencing the
// other), .drv files (text CA) and a tree added with nix-store --add
// (fixed:r CA) holding a directory, an executable and a symlink. Paths
// are listed references first.
type narFixture struct {
	src   *daemon.Conn
	paths []string
}

func newNarFixture(t *testing.T) *narFixture {
	t.Helper()
	ctx := daemontest.Context(t, time.Minute)
	d := daemontest.Start(t)
	src := dial(t, d.URI(), nil)
	g := daemontest.Instantiate(t, daemontest.WorldDir(t), daemontest.GraphArgs{})
	res, err := src.BuildPathsWithResults(ctx, []string{g.Drvs["b"] + "!out"}, daemon.BuildNormal)
	if err != nil || len(res) != 1 || !res[0].Status.Success() {
		t.Fatalf("build b: %+v, %v", res, err)
	}
	aOut := nixtest.Output(t, "nix-store", "--query", "--outputs", g.Drvs["a"])

	tree := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(tree, "sub", "deeper"), 0o755))
	must(t, os.WriteFile(filepath.Join(tree, "sub", "deeper", "file"), []byte(t.Name()+time.Now().String()), 0o644))
	must(t, os.WriteFile(filepath.Join(tree, "run"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(tree, "big"), bytes.Repeat([]byte("0123456789abcdef"), 20000), 0o644))
	must(t, os.Symlink("sub/deeper/file", filepath.Join(tree, "link")))
	added := nixtest.Output(t, "nix-store", "--add", tree)

	return &narFixture{src: src, paths: []string{aOut, res[0].BuiltOutputs["out"], added, g.Drvs["a"], g.Drvs["b"]}}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// dump returns nix-store --dump of p.
func dump(t *testing.T, p string) []byte {
	t.Helper()
	out, err := nixtest.Command("nix-store", "--dump", p).Output()
	if err != nil {
		t.Fatalf("nix-store --dump %s: %v", p, err)
	}
	return out
}

// chrootStore dials a `nix-daemon --stdio` child on a fresh chroot store.
func chrootStore(t *testing.T) (*daemon.Conn, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a nix-daemon --stdio child on a chroot store needs root")
	}
	root := t.TempDir()
	return dial(t, "local?root="+root, nil), root
}

func TestNarTransfer(t *testing.T) {
	nixtest.Need(t)
	f := newNarFixture(t)
	ctx := daemontest.Context(t, time.Minute)

	// QueryPathInfos answers as QueryPathInfo does, nil for invalid paths.
	const missing = "/nix/store/00000000000000000000000000000000-nope"
	infos, err := f.src.QueryPathInfos(ctx, append(slices.Clone(f.paths), missing))
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != len(f.paths)+1 || infos[len(f.paths)] != nil {
		t.Fatalf("QueryPathInfos gave %d infos, last %+v; want %d and nil", len(infos), infos[len(infos)-1], len(f.paths)+1)
	}
	infos = infos[:len(f.paths)]
	for i, p := range f.paths {
		one, err := f.src.QueryPathInfo(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if infos[i] == nil || infos[i].Path != p || infos[i].NarHash != one.NarHash || infos[i].NarSize != one.NarSize ||
			!slices.Equal(infos[i].References, one.References) || infos[i].CA != one.CA || infos[i].Deriver != one.Deriver {
			t.Errorf("QueryPathInfos[%d] = %+v, QueryPathInfo = %+v", i, infos[i], one)
		}
	}

	// NarsFromPaths streams nix-store --dump's bytes, each exactly once.
	got := make([][]byte, len(infos))
	err = f.src.NarsFromPaths(ctx, infos, func(i int, r io.Reader) error {
		if i == 2 {
			// Read part of one: the rest is skipped, the next is intact.
			got[i] = make([]byte, 100)
			_, err := io.ReadFull(r, got[i])
			return err
		}
		got[i], err = io.ReadAll(r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range f.paths {
		want := dump(t, p)
		if i == 2 {
			want = want[:100]
		}
		if !bytes.Equal(got[i], want) {
			t.Errorf("NAR of %s: %d bytes differ from nix-store --dump (%d)", p, len(got[i]), len(want))
		}
	}
	if ok, err := f.src.IsValidPath(ctx, f.paths[0]); err != nil || !ok {
		t.Errorf("IsValidPath after NarsFromPaths = %v, %v", ok, err)
	}

	// AddToStoreNars from one stream into another store: the destination
	// registers the same path info and the same files.
	dst, root := chrootStore(t)
	nars := make([][]byte, len(infos))
	for i, p := range f.paths {
		nars[i] = dump(t, p)
	}
	errs, err := dst.AddToStoreNars(ctx, len(infos), func(i int) (daemon.NarSource, error) {
		return daemon.NarSource{Info: infos[i], NAR: bytes.NewReader(nars[i])}, nil
	}, false, true)
	if err != nil || errors.Join(errs...) != nil {
		t.Fatalf("AddToStoreNars: %v, %v", errs, err)
	}
	for i, p := range f.paths {
		di, err := dst.QueryPathInfo(ctx, p)
		if err != nil {
			t.Fatalf("%s not valid in the destination: %v", p, err)
		}
		if di.NarHash != infos[i].NarHash || di.NarSize != infos[i].NarSize || !slices.Equal(di.References, infos[i].References) ||
			di.CA != infos[i].CA || di.Deriver != infos[i].Deriver {
			t.Errorf("destination has %+v, source %+v", di, infos[i])
		}
		want := dump(t, p)
		out, err := nixtest.Command("nix-store", "--store", "local?root="+root, "--dump", p).Output()
		if err != nil || !bytes.Equal(out, want) {
			t.Errorf("nix-store --dump %s in the destination: %d bytes, %v; want the source's %d", p, len(out), err, len(want))
		}
	}
	link, err := os.Readlink(filepath.Join(root, f.paths[2], "link"))
	if err != nil || link != "sub/deeper/file" {
		t.Errorf("symlink in the copied tree: %q, %v", link, err)
	}
	if fi, err := os.Stat(filepath.Join(root, f.paths[2], "run")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("executable in the copied tree: %v, %v", fi, err)
	}
	// Adding a valid path again is a no-op, not an error.
	if err := dst.AddToStoreNar(ctx, infos[0], bytes.NewReader(nars[0]), false, true); err != nil {
		t.Errorf("AddToStoreNar of a valid path: %v", err)
	}
}

// TestAddToStoreNarFailures: the daemon's refusals land at their position
// and leave the connection usable; a NAR that does not match its size or
// a failing source ends the batch and breaks the connection.
func TestAddToStoreNarFailures(t *testing.T) {
	nixtest.Need(t)
	f := newNarFixture(t)
	infos, err := f.src.QueryPathInfos(daemontest.Context(t, time.Minute), f.paths)
	if err != nil {
		t.Fatal(err)
	}
	nar := func(i int) []byte { return dump(t, f.paths[i]) }
	// Each subtest starts a daemon of its own (nix-daemon --stdio on a
	// chroot store): on a loaded machine one shared deadline ran out in
	// the last subtests. Each gets its own, generous but bounded.
	subCtx := func(t *testing.T) context.Context { return daemontest.Context(t, 2*time.Minute) }

	t.Run("wrong hash", func(t *testing.T) {
		ctx := subCtx(t)
		dst, _ := chrootStore(t)
		bad := *infos[0]
		bad.NarHash = infos[2].NarHash
		// a (bad), then the tree (independent), then b (refers to a).
		srcs := []daemon.NarSource{{Info: &bad, NAR: bytes.NewReader(nar(0))}, {Info: infos[2], NAR: bytes.NewReader(nar(2))}, {Info: infos[1], NAR: bytes.NewReader(nar(1))}}
		errs, err := dst.AddToStoreNars(ctx, len(srcs), func(i int) (daemon.NarSource, error) { return srcs[i], nil }, false, true)
		if err != nil {
			t.Fatalf("AddToStoreNars: %v", err)
		}
		var de *daemon.Error
		if !errors.As(errs[0], &de) || !strings.Contains(errs[0].Error(), f.paths[0]) || !strings.Contains(errs[0].Error(), "hash mismatch") {
			t.Errorf("errs[0] = %v, want the daemon's hash mismatch naming %s", errs[0], f.paths[0])
		}
		if errs[1] != nil {
			t.Errorf("errs[1] = %v, want nil (independent path)", errs[1])
		}
		if errs[2] == nil {
			t.Errorf("errs[2] = nil, want a failure: its reference was refused")
		}
		if ok, err := dst.IsValidPath(ctx, f.paths[2]); err != nil || !ok {
			t.Errorf("after the refusals: IsValidPath(%s) = %v, %v", f.paths[2], ok, err)
		}
	})

	// Checking signatures (require-sigs = true in the store's nix.conf):
	// unsigned input-addressed paths are refused, content-addressed ones
	// (.drv files, nix-store --add) are taken.
	t.Run("signatures", func(t *testing.T) {
		conf := t.TempDir()
		must(t, os.WriteFile(filepath.Join(conf, "nix.conf"), []byte("require-sigs = true\nsubstituters =\n"), 0o644))
		t.Setenv("NIX_CONF_DIR", conf)
		t.Setenv("NIX_CONFIG", "")
		ctx := subCtx(t)
		dst, _ := chrootStore(t)
		order := []int{0, 2, 3}
		errs, err := dst.AddToStoreNars(ctx, len(order), func(i int) (daemon.NarSource, error) {
			return daemon.NarSource{Info: infos[order[i]], NAR: bytes.NewReader(nar(order[i]))}, nil
		}, false, false)
		if err != nil {
			t.Fatal(err)
		}
		if errs[0] == nil || !strings.Contains(errs[0].Error(), "lacks a valid signature") {
			t.Errorf("unsigned input-addressed path: %v, want 'lacks a valid signature'", errs[0])
		}
		if errs[1] != nil || errs[2] != nil {
			t.Errorf("content-addressed paths: %v, %v; want both taken", errs[1], errs[2])
		}
	})

	breaks := []struct {
		name string
		src  func() (daemon.NarSource, error)
		want string
	}{
		{"short NAR", func() (daemon.NarSource, error) {
			return daemon.NarSource{Info: infos[2], NAR: bytes.NewReader(nar(2)[:1000])}, nil
		}, "ended"},
		{"long NAR", func() (daemon.NarSource, error) {
			return daemon.NarSource{Info: infos[2], NAR: bytes.NewReader(append(nar(2), 0))}, nil
		}, "longer than its size"},
		{"source fails", func() (daemon.NarSource, error) {
			return daemon.NarSource{}, errors.New("the source store went away")
		}, "the source store went away"},
		{"source fails mid-NAR", func() (daemon.NarSource, error) {
			return daemon.NarSource{Info: infos[2], NAR: io.MultiReader(bytes.NewReader(nar(2)[:70000]), failingReader{})}, nil
		}, "disk on fire"},
	}
	for _, tt := range breaks {
		t.Run(tt.name, func(t *testing.T) {
			ctx := subCtx(t)
			dst, _ := chrootStore(t)
			_, err := dst.AddToStoreNars(ctx, 1, func(int) (daemon.NarSource, error) { return tt.src() }, false, false)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("AddToStoreNars = %v, want an error with %q", err, tt.want)
			}
			if dst.Broken() == nil {
				t.Errorf("connection not marked broken after %v", err)
			}
		})
	}

	t.Run("cancelled", func(t *testing.T) {
		ctx := subCtx(t)
		dst, _ := chrootStore(t)
		cctx, cancel := context.WithCancel(ctx)
		pr, pw := io.Pipe()
		defer pw.Close()
		go func() { pw.Write(nar(2)[:5000]); cancel() }()
		start := time.Now()
		_, err := dst.AddToStoreNars(cctx, 1, func(int) (daemon.NarSource, error) {
			return daemon.NarSource{Info: infos[2], NAR: pr}, nil
		}, false, false)
		pw.CloseWithError(errors.New("closed"))
		if !errors.Is(err, context.Canceled) || time.Since(start) > 10*time.Second {
			t.Fatalf("AddToStoreNars after cancel = %v after %v", err, time.Since(start))
		}
	})
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }
