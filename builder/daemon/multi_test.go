package daemon_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/storepath"
)

// fresh is a graph.nix instantiated into a chroot store of its own, so
// that its .drv files are new to every other store: a, b, c, d, top in
// an order where inputs come first.
type fresh struct {
	paths []string
	texts []daemon.Text
}

func freshGraph(t *testing.T, nixBin string) *fresh {
	t.Helper()
	root := t.TempDir()
	file := filepath.Join(daemontest.RepoRoot(t), "testdata", "daemon", "graph.nix")
	names := []string{"a", "b", "c", "d", "top"}
	args := []string{"--store", root, file, "--argstr", "nonce", fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())}
	for _, n := range names {
		args = append(args, "-A", n)
	}
	inst, store := "nix-instantiate", "nix-store"
	if nixBin != "" {
		inst, store = filepath.Join(nixBin, inst), filepath.Join(nixBin, store)
	}
	out := nixtest.Output(t, inst, args...)
	f := &fresh{paths: strings.Fields(out)}
	if len(f.paths) != len(names) {
		t.Fatalf("nix-instantiate printed %q", out)
	}
	for _, p := range f.paths {
		data, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		refs := strings.Fields(nixtest.Output(t, store, "--store", root, "--query", "--references", p))
		f.texts = append(f.texts, daemon.Text{Name: strings.SplitN(filepath.Base(p), "-", 2)[1], Content: data, References: refs})
	}
	return f
}

// items returns a next function over the texts i of f.
func (f *fresh) items(idx ...int) (int, func(int) (daemon.PathInfo, io.Reader, error)) {
	return len(idx), func(i int) (daemon.PathInfo, io.Reader, error) {
		info, r := daemon.TextNAR(f.paths[idx[i]], f.texts[idx[i]])
		return info, r, nil
	}
}

func valid(t *testing.T, ctx context.Context, c *daemon.Conn, paths ...string) []bool {
	t.Helper()
	v, err := c.QueryValidPaths(ctx, paths, false)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]bool, len(paths))
	for i, p := range paths {
		out[i] = slices.Contains(v, p)
	}
	return out
}

// TestAddMultipleToStore adds fresh .drv files in one request and checks
// that the daemon stores exactly the NAR, hash, size and CA computed
// here; that a path already valid in the middle of a request keeps the
// stream in step; and that refusals name their cause and leave the
// connection usable.
func TestAddMultipleToStore(t *testing.T) {
	d := daemontest.Start(t)
	c := dial(t, d.URI(), nil)
	ctx := daemontest.Context(t, time.Minute)
	if c.Version() < daemon.MultipleMinVersion {
		t.Fatalf("protocol %#x: the installed Nix should speak AddMultipleToStore", c.Version())
	}
	f := freshGraph(t, "")
	if got := valid(t, ctx, c, f.paths...); slices.Contains(got, true) {
		t.Fatalf("fresh paths already valid: %v", got)
	}
	if err := c.AddMultipleToStore(ctx, 2, func(i int) (daemon.PathInfo, io.Reader, error) {
		info, r := daemon.TextNAR(f.paths[i], f.texts[i])
		return info, r, nil
	}, false, false); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		info, err := c.QueryPathInfo(ctx, f.paths[i])
		if err != nil {
			t.Fatal(err)
		}
		want, r := daemon.TextNAR(f.paths[i], f.texts[i])
		nar, _ := io.ReadAll(r)
		if "sha256:"+info.NarHash != want.NarHash || info.NarSize != want.NarSize || info.CA != want.CA || !slices.Equal(info.References, want.References) {
			t.Errorf("daemon has %+v, sent %+v", info, want)
		}
		dump, err := nixtest.Command("nix-store", "--dump", f.paths[i]).Output()
		if err != nil || !bytes.Equal(dump, nar) {
			t.Errorf("nix-store --dump %s differs from the NAR sent (%d vs %d bytes, %v)", f.paths[i], len(dump), len(nar), err)
		}
	}
	n, next := f.items(2, 3, 4)
	if err := c.AddMultipleToStore(ctx, n, next, false, false); err != nil {
		t.Fatalf("AddMultipleToStore of the rest: %v", err)
	}
	if got := valid(t, ctx, c, f.paths...); slices.Contains(got, false) {
		t.Fatalf("valid after adding: %v", got)
	}
	// A path already valid: Nix 2.8 does not read its NAR, so the stream
	// is out of step and the request fails (callers ask QueryValidPaths
	// first and fall back when a path turned valid meanwhile). Either way
	// the connection stays usable.
	n, next = f.items(1)
	if err := c.AddMultipleToStore(ctx, n, next, false, false); err != nil {
		var de *daemon.Error
		if !errors.As(err, &de) {
			t.Fatalf("AddMultipleToStore of a valid path: %v, want nil or a daemon error", err)
		}
	}
	if ok, err := c.IsValidPath(ctx, f.paths[4]); err != nil || !ok {
		t.Fatalf("IsValidPath after re-adding a valid path = %v, %v", ok, err)
	}

	// A wrong output path: refused with the daemon's message; what came
	// before stays, what comes after is not added; the connection works.
	g := freshGraph(t, "")
	bad := g.texts[1]
	bad.Content = bytes.Replace(bad.Content, []byte(`"out","/nix/store/`), []byte(`"out","/nix/store/1111111111111111`), 1)
	if bytes.Equal(bad.Content, g.texts[1].Content) {
		t.Fatal("could not corrupt b's output path")
	}
	badPath := textPath(bad)
	err := c.AddMultipleToStore(ctx, 3, func(i int) (daemon.PathInfo, io.Reader, error) {
		if i == 1 {
			info, r := daemon.TextNAR(badPath, bad)
			return info, r, nil
		}
		info, r := daemon.TextNAR(g.paths[i], g.texts[i])
		return info, r, nil
	}, false, false)
	var de *daemon.Error
	if !errors.As(err, &de) || !strings.Contains(de.Message, "incorrect output") {
		t.Fatalf("AddMultipleToStore(bad output) = %v, want the daemon's 'incorrect output'", err)
	}
	if got := valid(t, ctx, c, g.paths[0], badPath, g.paths[2]); !slices.Equal(got, []bool{true, false, false}) {
		t.Errorf("valid after a refusal in the middle: %v, want [true false false]", got)
	}

	// A path that is not the one its content gives is refused (the
	// daemon requires signatures by default; the CA field does not fit).
	h := freshGraph(t, "")
	err = c.AddMultipleToStore(ctx, 1, func(int) (daemon.PathInfo, io.Reader, error) {
		info, r := daemon.TextNAR(strings.Replace(h.paths[0], "-a.drv", "-z.drv", 1), h.texts[0])
		return info, r, nil
	}, false, false)
	if !errors.As(err, &de) || !strings.Contains(de.Message, "content-addressed") {
		t.Errorf("AddMultipleToStore(wrong path) = %v, want a refusal for lack of a valid signature", err)
	}
	// A path and CA that fit each other but not the content sent (the
	// NAR is another file's, with its own hash and size): refused.
	err = c.AddMultipleToStore(ctx, 1, func(int) (daemon.PathInfo, io.Reader, error) {
		info, _ := daemon.TextNAR(h.paths[0], h.texts[0])
		other := h.texts[0]
		other.Content = append(bytes.Clone(other.Content), ' ')
		oinfo, r := daemon.TextNAR(textPath(other), other)
		info.NarHash, info.NarSize = oinfo.NarHash, oinfo.NarSize
		return info, r, nil
	}, false, false)
	if !errors.As(err, &de) {
		t.Errorf("AddMultipleToStore(content that is not the CA's) = %v, want a refusal", err)
	} else {
		t.Logf("content that is not the CA's: %s", de.Message)
	}
	// A NAR hash that does not fit: refused.
	err = c.AddMultipleToStore(ctx, 1, func(int) (daemon.PathInfo, io.Reader, error) {
		info, r := daemon.TextNAR(h.paths[0], h.texts[0])
		info.NarHash = "sha256:" + strings.Repeat("0", 64)
		return info, r, nil
	}, false, false)
	if !errors.As(err, &de) || !strings.Contains(strings.ToLower(de.Message), "hash mismatch") {
		t.Errorf("AddMultipleToStore(wrong NAR hash) = %v, want a hash mismatch", err)
	}
	if got := valid(t, ctx, c, h.paths[0]); got[0] {
		t.Error("a path was added despite a refusal")
	}

	// A NAR reader that fails breaks the connection (half a request is on
	// the wire), and nothing is added.
	err = c.AddMultipleToStore(ctx, 2, func(i int) (daemon.PathInfo, io.Reader, error) {
		info, r := daemon.TextNAR(h.paths[i], h.texts[i])
		if i == 1 {
			return info, io.MultiReader(io.LimitReader(r, 10), errReader{}), nil
		}
		return info, r, nil
	}, false, false)
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || c.Broken() == nil {
		t.Errorf("AddMultipleToStore with a failing reader = %v (broken: %v)", err, c.Broken())
	}
	c2 := dial(t, d.URI(), nil)
	if got := valid(t, ctx, c2, h.paths[1]); got[0] {
		t.Error("a half-sent path was added")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// textPath is the store path of a text object, as Nix computes it.
func textPath(tx daemon.Text) string {
	return storepath.Text("/nix/store", tx.Name, sha256.Sum256(tx.Content), tx.References)
}

// TestAddMultipleUntrusted: an untrusted client (uid 65534) adds .drv
// files with AddMultipleToStore: their CA field is their licence. A path
// that does not fit its CA is refused.
func TestAddMultipleUntrusted(t *testing.T) {
	if os.Getenv("POISON_MULTI_CHILD") == "1" {
		multiChild(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an untrusted uid")
	}
	d := daemontest.Start(t)
	f := freshGraph(t, "")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(d.Dir, "daemon.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(d.Dir, "drvs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var spec []string
	for i, p := range f.paths {
		file := filepath.Join(dir, filepath.Base(p))
		if err := os.WriteFile(file, f.texts[i].Content, 0o644); err != nil {
			t.Fatal(err)
		}
		spec = append(spec, p+"|"+strings.Join(f.texts[i].References, ","))
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid="+daemontest.NixUsersGID(t), "--clear-groups",
		bin, "-test.run=^TestAddMultipleUntrusted$", "-test.v")
	cmd.Env = append(os.Environ(), nixtest.Environ()...)
	cmd.Env = append(cmd.Env, "POISON_MULTI_CHILD=1", "POISON_MULTI_STORE="+d.URI(), "POISON_MULTI_DIR="+dir,
		"POISON_MULTI_DRVS="+strings.Join(spec, ";"), "HOME="+d.Dir)
	cmd.Dir = d.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("untrusted client: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "multi-untrusted-ok") {
		t.Fatalf("untrusted child did not run its checks:\n%s", out)
	}
	c := dial(t, d.URI(), nil)
	if got := valid(t, daemontest.Context(t, time.Minute), c, f.paths...); slices.Contains(got, false) {
		t.Errorf("valid after the untrusted client added them: %v", got)
	}
}

func multiChild(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Fatal("child runs as root")
	}
	ctx := daemontest.Context(t, time.Minute)
	c, err := daemon.Dial(ctx, os.Getenv("POISON_MULTI_STORE"), daemon.Options{Settings: offline()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Trust() == daemon.Trusted {
		t.Fatal("daemon says uid 65534 is trusted")
	}
	var paths []string
	var texts []daemon.Text
	for _, s := range strings.Split(os.Getenv("POISON_MULTI_DRVS"), ";") {
		p, refs, _ := strings.Cut(s, "|")
		data, err := os.ReadFile(filepath.Join(os.Getenv("POISON_MULTI_DIR"), filepath.Base(p)))
		if err != nil {
			t.Fatal(err)
		}
		var rs []string
		if refs != "" {
			rs = strings.Split(refs, ",")
		}
		paths = append(paths, p)
		texts = append(texts, daemon.Text{Content: data, References: rs})
	}
	// A wrong path for a's content, then the real ones: the wrong one is
	// refused and nothing is added; then all go in, dontCheckSigs asked
	// for (and ignored for an untrusted client).
	err = c.AddMultipleToStore(ctx, 1, func(int) (daemon.PathInfo, io.Reader, error) {
		info, r := daemon.TextNAR(strings.Replace(paths[0], "-a.drv", "-z.drv", 1), texts[0])
		return info, r, nil
	}, false, true)
	var de *daemon.Error
	if !errors.As(err, &de) || !strings.Contains(de.Message, "content-addressed") {
		t.Fatalf("untrusted AddMultipleToStore(wrong path) = %v, want a refusal", err)
	}
	if err := c.AddMultipleToStore(ctx, len(paths), func(i int) (daemon.PathInfo, io.Reader, error) {
		info, r := daemon.TextNAR(paths[i], texts[i])
		return info, r, nil
	}, false, true); err != nil {
		t.Fatalf("untrusted AddMultipleToStore: %v", err)
	}
	fmt.Println("multi-untrusted-ok")
}

// TestAddMultipleModernNix adds fresh .drv files to a Nix 2.26 store
// (protocol 1.38, negotiated 1.37) in one request.
func TestAddMultipleModernNix(t *testing.T) {
	bin := os.Getenv("POISON_MODERN_NIX")
	if bin == "" {
		if nixtest.Required() {
			t.Fatal("Nix 2.26 is required (POISON_REQUIRE_NIX=1) but POISON_MODERN_NIX is not set; run scripts/modern-nix.sh DIR and set POISON_MODERN_NIX=DIR/bin")
		}
		t.Skip("set POISON_MODERN_NIX=DIR/bin (scripts/modern-nix.sh DIR) to test against Nix 2.26")
	}
	ctx := daemontest.Context(t, time.Minute)
	c, err := daemon.Dial(ctx, filepath.Join(filepath.Dir(bin), "store"), daemon.Options{DaemonProgram: filepath.Join(bin, "nix-daemon"), Settings: offline()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f := freshGraph(t, bin)
	n, next := f.items(0, 1, 2, 3, 4)
	if err := c.AddMultipleToStore(ctx, n, next, false, false); err != nil {
		t.Fatal(err)
	}
	for i, p := range f.paths {
		info, err := c.QueryPathInfo(ctx, p)
		want, _ := daemon.TextNAR(p, f.texts[i])
		if err != nil || info.CA != want.CA || "sha256:"+info.NarHash != want.NarHash {
			t.Errorf("QueryPathInfo(%s) = %+v, %v; sent %+v", p, info, err, want)
		}
	}
	// A valid path again: 2.26 may skip or refuse it; the connection
	// stays usable.
	n, next = f.items(0)
	err = c.AddMultipleToStore(ctx, n, next, false, false)
	t.Logf("Nix 2.26, adding a valid path again: %v", err)
	if ok, err := c.IsValidPath(ctx, f.paths[4]); err != nil || !ok {
		t.Fatalf("IsValidPath after re-adding = %v, %v", ok, err)
	}
}
