package builder_test

import (
	"bytes"
	"context"
	"errors"
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
