package builder_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/registry/lock"
)

func offlineOpts() daemon.Options {
	s := daemon.DefaultSettings()
	s.Overrides = map[string]string{"substituters": ""}
	return testOpts(daemon.Options{Settings: &s})
}

// testOpts gives o generous but bounded connect and handshake timeouts:
// on the loaded machines tests run on, a daemon sometimes took longer than
// the default 10 s to accept a connection ("dial ... i/o timeout").
func testOpts(o daemon.Options) daemon.Options {
	o.ConnectTimeout = time.Minute
	o.HandshakeTimeout = time.Minute
	return o
}

// rewriteGraph instantiates testdata/daemon/graph.nix, poisons node
// `poison` through a lock and rewrites the closure of top.
func rewriteGraph(t *testing.T, dir, poison string) (*daemontest.Graph, *builder.Result) {
	t.Helper()
	g := daemontest.Instantiate(t, dir, daemontest.GraphArgs{})
	lk := lock.New(lock.Source{}, lock.DefaultEnv)
	lk.Derivations[filepath.Base(g.Drvs[poison])] = 1
	ctx := context.Background()
	c, err := builder.LoadClosure(ctx, builder.LoadOptions{}, []string{g.Drvs["top"]})
	if err != nil {
		t.Fatal(err)
	}
	res, err := builder.Rewrite(ctx, c, builder.Options{Lock: lk})
	if err != nil {
		t.Fatal(err)
	}
	return g, res
}

// TestWrite: the rewritten .drvs written through the daemon are exactly
// the ones nix-instantiate writes for the expression with the attribute,
// over the socket and over `nix-daemon --stdio`.
func TestWrite(t *testing.T) {
	d := daemontest.Start(t)
	stores := map[string]string{"socket": d.URI()}
	if os.Geteuid() == 0 {
		stores["stdio"] = "local"
	}
	for name, uri := range stores {
		t.Run(name, func(t *testing.T) {
			g, res := rewriteGraph(t, daemontest.WorldDir(t), "b")
			if len(res.Changed) != 3 { // b, c, top
				t.Fatalf("%d derivations changed, want 3 (b, c, top)", len(res.Changed))
			}
			ctx := daemontest.Context(t, time.Minute)
			c, err := daemon.Dial(ctx, uri, offlineOpts())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, d := range res.Changed {
				if ok, _ := c.IsValidPath(ctx, d.Path); ok {
					t.Fatalf("%s valid before Write", d.Path)
				}
			}
			if err := builder.Write(ctx, c, res); err != nil {
				t.Fatal(err)
			}
			for _, d := range res.Changed {
				if ok, err := c.IsValidPath(ctx, d.Path); !ok || err != nil {
					t.Errorf("%s not valid after Write (%v)", d.Path, err)
				}
			}
			// Nix writes the same paths for the expression with the attribute.
			want := nixtest.Output(t, "nix-instantiate", filepath.Join(daemontest.RepoRoot(t), "testdata/daemon/graph.nix"),
				"-A", "top", "--argstr", "nonce", nonceOf(t, g), "--argstr", "log", g.Log,
				"--argstr", "fail", "", "--argstr", "slow", "", "--argstr", "sleepSecs", "1", "--argstr", "poison", "b")
			if res.Roots[0] != want {
				t.Errorf("rewritten top %s, nix-instantiate %s", res.Roots[0], want)
			}
			// Idempotent.
			if err := builder.Write(ctx, c, res); err != nil {
				t.Errorf("second Write: %v", err)
			}
		})
	}
}

// nonceOf reads the nonce back from a .drv of the graph.
func nonceOf(t *testing.T, g *daemontest.Graph) string {
	data, err := os.ReadFile(g.Drvs["a"])
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), `("nonce","`)
	if !ok {
		t.Fatal("no nonce in a.drv")
	}
	nonce, _, _ := strings.Cut(rest, `"`)
	return nonce
}

// TestWriteRefused: a rewritten .drv with a wrong output path is refused
// by the daemon (the referee), and the error names the derivation.
func TestWriteRefused(t *testing.T) {
	d := daemontest.Start(t)
	_, res := rewriteGraph(t, d.Dir, "c")
	bad := &res.Changed[0] // c
	for _, out := range bad.Outputs {
		bad.ATerm = bytes.ReplaceAll(bad.ATerm, []byte(out), []byte("/nix/store/44444444444444444444444444444444-c"))
	}
	ctx := daemontest.Context(t, time.Minute)
	c, err := daemon.Dial(ctx, d.URI(), offlineOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = builder.Write(ctx, c, res)
	var we *builder.WriteError
	if !errors.As(err, &we) || we.DrvPath != bad.Path || !strings.Contains(err.Error(), "incorrect output") {
		t.Fatalf("Write error = %v; want a WriteError for %s saying 'incorrect output'", err, bad.Path)
	}
}

// wideClosure instantiates testdata/daemon/wide.nix with n nodes and a
// fresh nonce, and returns its closure (rooted at top) and a lock that
// poisons node 0, which every other node depends on.
func wideClosure(t *testing.T, n int) (*builder.Closure, *lock.File, []string) {
	t.Helper()
	file := filepath.Join(daemontest.RepoRoot(t), "testdata", "daemon", "wide.nix")
	nonce := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	args := []string{file, "-A", "top", "--arg", "n", fmt.Sprint(n), "--argstr", "nonce", nonce}
	top := nixtest.Output(t, "nix-instantiate", args...)
	c, err := builder.LoadClosure(context.Background(), builder.LoadOptions{}, []string{top})
	if err != nil {
		t.Fatal(err)
	}
	lk := lock.New(lock.Source{}, lock.DefaultEnv)
	for _, p := range c.Paths() {
		if strings.HasSuffix(p, "-w0.drv") {
			lk.Derivations[filepath.Base(p)] = 1
		}
	}
	if len(lk.Derivations) != 1 {
		t.Fatalf("no w0.drv in the closure of %s", top)
	}
	return c, lk, append(args, "--argstr", "poison", "0")
}

// TestRewriteWrite: writing while rewriting, in chunks, gives the Result
// of Rewrite and the .drv files nix-instantiate writes; dial is called
// once, and not at all when nothing is rewritten.
func TestRewriteWrite(t *testing.T) {
	d := daemontest.Start(t)
	ctx := daemontest.Context(t, 2*time.Minute)
	for _, chunk := range []int{1, 7, 0} { // 0: the default
		t.Run(fmt.Sprint("chunk=", chunk), func(t *testing.T) {
			c, lk, nixArgs := wideClosure(t, 150)
			want, err := builder.Rewrite(ctx, c, builder.Options{Lock: lk})
			if err != nil {
				t.Fatal(err)
			}
			var conn *daemon.Conn
			dials := 0
			dial := func(ctx context.Context) (*daemon.Conn, error) {
				dials++
				var err error
				conn, err = daemon.Dial(ctx, d.URI(), offlineOpts())
				return conn, err
			}
			res, err := builder.RewriteWriteChunks(ctx, c, builder.Options{Lock: lk}, dial, chunk, nil)
			if conn != nil {
				defer conn.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			if dials != 1 {
				t.Errorf("dial called %d times, want 1", dials)
			}
			if len(res.Changed) != 151 || !slices.Equal(res.Roots, want.Roots) || !slices.EqualFunc(res.Changed, want.Changed, func(a, b builder.Drv) bool {
				return a.Path == b.Path && bytes.Equal(a.ATerm, b.ATerm)
			}) {
				t.Fatalf("RewriteWrite's result (%d changed, roots %v) differs from Rewrite's (%d, %v)", len(res.Changed), res.Roots, len(want.Changed), want.Roots)
			}
			for _, drv := range res.Changed {
				if ok, err := conn.IsValidPath(ctx, drv.Path); !ok || err != nil {
					t.Fatalf("%s not valid after RewriteWrite (%v)", drv.Path, err)
				}
			}
			if got := nixtest.Output(t, "nix-instantiate", nixArgs...); got != res.Roots[0] {
				t.Errorf("rewritten top %s, nix-instantiate %s", res.Roots[0], got)
			}
			// Again, everything valid.
			if _, err := builder.RewriteWriteChunks(ctx, c, builder.Options{Lock: lk}, dial, chunk, nil); err != nil {
				t.Errorf("second RewriteWrite: %v", err)
			}
			// Nothing poisoned: nothing to write, no connection.
			dials = 0
			res, err = builder.RewriteWriteChunks(ctx, c, builder.Options{}, dial, chunk, nil)
			if err != nil || len(res.Changed) != 0 || dials != 0 {
				t.Errorf("RewriteWrite without serials: %d changed, %d dials, %v; want 0, 0, nil", len(res.Changed), dials, err)
			}
		})
	}
}

// TestRewriteWriteRefused: a derivation the daemon refuses in a middle
// chunk is named in the error; the derivations queued before it are
// written, it and the top (which depends on it) are not. A failed dial
// is the error returned.
func TestRewriteWriteRefused(t *testing.T) {
	d := daemontest.Start(t)
	ctx := daemontest.Context(t, 2*time.Minute)
	c, lk, _ := wideClosure(t, 150)
	var conn *daemon.Conn
	dial := func(ctx context.Context) (*daemon.Conn, error) {
		var err error
		conn, err = daemon.Dial(ctx, d.URI(), offlineOpts())
		return conn, err
	}
	var (
		seen   int
		bad    builder.Drv
		before []string // queued before bad
	)
	res, err := builder.RewriteWriteChunks(ctx, c, builder.Options{Lock: lk}, dial, 4, func(drv *builder.Drv) {
		seen++
		switch {
		case seen < 10:
			before = append(before, drv.Path)
		case seen == 10:
			for _, out := range drv.Outputs {
				drv.ATerm = bytes.ReplaceAll(drv.ATerm, []byte(out), []byte("/nix/store/44444444444444444444444444444444-w"))
			}
			bad = *drv
		}
	})
	if conn != nil {
		defer conn.Close()
	}
	var we *builder.WriteError
	if res != nil || !errors.As(err, &we) || we.DrvPath != bad.Path || we.OldDrvPath != bad.OldPath || !strings.Contains(err.Error(), "incorrect output") {
		t.Fatalf("RewriteWrite = %v, %v; want a WriteError for %s saying 'incorrect output'", res, err, bad.Path)
	}
	check, err := daemon.Dial(ctx, d.URI(), offlineOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	for _, p := range before {
		if ok, err := check.IsValidPath(ctx, p); !ok || err != nil {
			t.Errorf("%s, of a chunk before the refused one, not valid (%v)", p, err)
		}
	}
	want, err := builder.Rewrite(ctx, c, builder.Options{Lock: lk})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{bad.Path, want.Roots[0]} {
		if ok, err := check.IsValidPath(ctx, p); ok || err != nil {
			t.Errorf("%s valid after the refusal (%v)", p, err)
		}
	}

	errDial := errors.New("no daemon here")
	_, err = builder.RewriteWrite(ctx, c, builder.Options{Lock: lk}, func(context.Context) (*daemon.Conn, error) { return nil, errDial })
	if !errors.Is(err, errDial) {
		t.Errorf("RewriteWrite with a failing dial = %v, want %v", err, errDial)
	}
}

// TestRewriteWriteUntrusted: an untrusted client (uid 65534) writes a
// rewritten closure while rewriting it, in chunks: the text content
// addresses are its licence, and it may root the unchanged inputs.
func TestRewriteWriteUntrusted(t *testing.T) {
	if os.Getenv("POISON_STREAM_CHILD") == "1" {
		untrustedRewriteWrite(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an untrusted uid")
	}
	d := daemontest.Start(t)
	c, lk, nixArgs := wideClosure(t, 120)
	want, err := builder.Rewrite(context.Background(), c, builder.Options{Lock: lk})
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(d.Dir, "builder.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	var poisoned string
	for base := range lk.Derivations {
		poisoned = base
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid="+daemontest.NixUsersGID(t), "--clear-groups",
		bin, "-test.run=^TestRewriteWriteUntrusted$", "-test.v")
	cmd.Env = append(os.Environ(), nixtest.Environ()...)
	cmd.Env = append(cmd.Env, "POISON_STREAM_CHILD=1", "POISON_STREAM_STORE="+d.URI(),
		"POISON_STREAM_ROOT="+c.Roots()[0], "POISON_STREAM_POISON="+poisoned, "HOME="+d.Dir)
	cmd.Dir = d.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("untrusted client: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "stream-untrusted-ok "+want.Roots[0]) {
		t.Fatalf("untrusted child did not write %s:\n%s", want.Roots[0], out)
	}
	ctx := daemontest.Context(t, time.Minute)
	conn, err := daemon.Dial(ctx, d.URI(), offlineOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, drv := range want.Changed {
		if ok, err := conn.IsValidPath(ctx, drv.Path); !ok || err != nil {
			t.Fatalf("%s not valid after the untrusted RewriteWrite (%v)", drv.Path, err)
		}
	}
	if got := nixtest.Output(t, "nix-instantiate", nixArgs...); got != want.Roots[0] {
		t.Errorf("rewritten top %s, nix-instantiate %s", want.Roots[0], got)
	}
}

func untrustedRewriteWrite(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Fatal("child runs as root")
	}
	ctx := daemontest.Context(t, time.Minute)
	c, err := builder.LoadClosure(ctx, builder.LoadOptions{}, []string{os.Getenv("POISON_STREAM_ROOT")})
	if err != nil {
		t.Fatal(err)
	}
	lk := lock.New(lock.Source{}, lock.DefaultEnv)
	lk.Derivations[os.Getenv("POISON_STREAM_POISON")] = 1
	var conn *daemon.Conn
	res, err := builder.RewriteWriteChunks(ctx, c, builder.Options{Lock: lk}, func(ctx context.Context) (*daemon.Conn, error) {
		var err error
		conn, err = daemon.Dial(ctx, os.Getenv("POISON_STREAM_STORE"), offlineOpts())
		return conn, err
	}, 7, nil)
	if conn != nil {
		defer conn.Close()
		if conn.Trust() == daemon.Trusted {
			t.Fatal("daemon says uid 65534 is trusted")
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("stream-untrusted-ok", res.Roots[0])
}
