package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/internal/sshtest"
)

// TestSSHOpenSSH runs the ssh-ng transport through the system ssh client
// and a real OpenSSH server on 127.0.0.1 (internal/sshtest), which runs
// `nix-daemon --stdio` on the local store as root: the handshake, queries,
// AddToStore and a build, a remote-store forwarded to another daemon, and
// the failures a user meets (wrong key, unknown host key, missing or
// chatty remote program), each one line and bounded in time.
func TestSSHOpenSSH(t *testing.T) {
	nixtest.Need(t)
	if os.Geteuid() != 0 {
		t.Skip("the remote nix-daemon --stdio on the local store needs root")
	}
	s := sshtest.Start(t)
	opts := func() daemon.Options {
		return daemon.Options{SSHOpts: s.SSHOpts(), Settings: offline(), HandshakeTimeout: time.Minute}
	}
	dialSSH := func(t *testing.T, ctx context.Context, q url.Values, o daemon.Options) *daemon.Conn {
		t.Helper()
		uri := s.URI("ssh-ng", q)
		c, err := daemon.Dial(ctx, uri, o)
		if err != nil {
			t.Fatalf("Dial(%s): %v\nsshd log:\n%s", uri, err, s.Log())
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("operations", func(t *testing.T) {
		t.Parallel()
		ctx := daemontest.Context(t, 2*time.Minute)
		g := daemontest.Instantiate(t, daemontest.WorldDir(t), daemontest.GraphArgs{})
		rec := &recorder{}
		o := opts()
		o.Log = rec.log
		c := dialSSH(t, ctx, nil, o)

		if c.DaemonVersion() < daemon.MinDaemonVersion || c.Version() != min(daemon.ClientVersion, c.DaemonVersion()) {
			t.Errorf("daemon version %#x, negotiated %#x", c.DaemonVersion(), c.Version())
		}
		if c.NixVersion() == "" || !strings.Contains(nixtest.Output(t, "nix-store", "--version"), c.NixVersion()) {
			t.Errorf("NixVersion() = %q, not the installed Nix", c.NixVersion())
		}
		if c.Trust() == daemon.NotTrusted {
			t.Errorf("root over ssh-ng is not trusted")
		}
		if !strings.HasPrefix(c.Store(), "ssh-ng://") {
			t.Errorf("Store() = %q", c.Store())
		}

		// A path that exists and one that does not.
		const missing = "/nix/store/00000000000000000000000000000000-nope"
		if ok, err := c.IsValidPath(ctx, g.Drvs["a"]); err != nil || !ok {
			t.Fatalf("IsValidPath(%s) = %v, %v", g.Drvs["a"], ok, err)
		}
		if ok, err := c.IsValidPath(ctx, missing); err != nil || ok {
			t.Fatalf("IsValidPath(missing) = %v, %v", ok, err)
		}
		if _, err := c.QueryPathInfo(ctx, missing); !errors.Is(err, daemon.ErrNotValid) {
			t.Errorf("QueryPathInfo(missing) error = %v, want ErrNotValid", err)
		}

		// A text new to the store lands at the path builtins.toFile names.
		content := fmt.Sprintf("poison ssh-ng test %s %d\n", t.Name(), time.Now().UnixNano())
		want := strings.Trim(nixtest.Output(t, "nix-instantiate", "--eval", "--readonly-mode",
			"--argstr", "c", content, "-E", `{ c }: builtins.toFile "poison-ssh-ng" c`), `"`)
		if ok, err := c.IsValidPath(ctx, want); err != nil || ok {
			t.Fatalf("IsValidPath(%s) before AddText = %v, %v", want, ok, err)
		}
		p, err := c.AddText(ctx, daemon.Text{Name: "poison-ssh-ng", Content: []byte(content)})
		if err != nil || p != want {
			t.Fatalf("AddText = %q, %v; want %s", p, err, want)
		}
		if got, err := os.ReadFile(p); err != nil || string(got) != content {
			t.Errorf("%s holds %q, %v", p, got, err)
		}

		// .drv files with a reference: the daemon checks and takes them.
		for _, n := range []string{"a", "b"} {
			tx := drvText(t, g.Drvs[n])
			if p, err := c.AddText(ctx, tx); err != nil || p != g.Drvs[n] {
				t.Fatalf("AddText(%s) = %q, %v; want %s", n, p, err, g.Drvs[n])
			}
			info, err := c.QueryPathInfo(ctx, g.Drvs[n])
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(info.References, tx.References) || !strings.HasPrefix(info.CA, "text:sha256:") || info.NarSize == 0 {
				t.Errorf("QueryPathInfo(%s) = %+v; want refs %v and a text CA", n, info, tx.References)
			}
		}

		// A build: results and the builder's log come back through ssh.
		res, err := c.BuildPathsWithResults(ctx, []string{g.Drvs["a"] + "!out"}, daemon.BuildNormal)
		wantOut := nixtest.Output(t, "nix-store", "--query", "--outputs", g.Drvs["a"])
		if err != nil || len(res) != 1 || res[0].Status != daemon.Built || res[0].BuiltOutputs["out"] != wantOut {
			t.Fatalf("BuildPathsWithResults = %+v, %v; want Built with out=%s", res, err, wantOut)
		}
		if !slices.Contains(rec.buildLines(), "building a") {
			t.Errorf("no build log line 'building a' in %q", rec.buildLines())
		}
		if ok, err := c.IsValidPath(ctx, wantOut); err != nil || !ok {
			t.Errorf("IsValidPath(output) = %v, %v", ok, err)
		}
	})

	// remote-store goes through the remote shell quoted; nix-daemon
	// --stdio --store unix://SOCKET forwards to that daemon, so killing it
	// breaks the connection.
	t.Run("remote-store", func(t *testing.T) {
		t.Parallel()
		ctx := daemontest.Context(t, 2*time.Minute)
		d := daemontest.Start(t)
		c := dialSSH(t, ctx, url.Values{"remote-store": {d.URI()}}, opts())
		if ok, err := c.IsValidPath(ctx, "/nix/store/00000000000000000000000000000000-x"); err != nil || ok {
			t.Fatalf("IsValidPath through %s = %v, %v", d.URI(), ok, err)
		}
		d.Kill()
		_, err := c.IsValidPath(ctx, "/nix/store/00000000000000000000000000000000-x")
		var pe *daemon.ProtocolError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "connection closed") {
			t.Fatalf("IsValidPath after the remote store's daemon died: %v, want a closed connection", err)
		}
	})

	emptyKnownHosts := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(emptyKnownHosts, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(daemontest.RepoRoot(t), "testdata", "daemon", "junk-daemon")
	failures := []struct {
		name    string
		q       url.Values
		sshOpts []string // before s.SSHOpts(): ssh takes the first value of an option
		want    []string
	}{
		{name: "wrong key", q: url.Values{"ssh-key": {s.NewKey(t, "not-authorized")}},
			want: []string{"connection closed by the daemon", "Permission denied (publickey)"}},
		{name: "unknown host key", sshOpts: []string{"-o", "UserKnownHostsFile=" + emptyKnownHosts},
			want: []string{"connection closed by the daemon", "Host key verification failed"}},
		{name: "missing remote program", q: url.Values{"remote-program": {"/nonexistent/nix-daemon"}},
			want: []string{"connection closed by the daemon", "/nonexistent/nix-daemon: No such file or directory"}},
		{name: "chatty remote program", q: url.Values{"remote-program": {junk}},
			want: []string{"protocol mismatch, got 'Welcome to the build farm!"}},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := daemontest.Context(t, time.Minute)
			o := opts()
			o.SSHOpts = append(slices.Clone(tt.sshOpts), o.SSHOpts...)
			uri := s.URI("ssh-ng", tt.q)
			start := time.Now()
			c, err := daemon.Dial(ctx, uri, o)
			if err == nil {
				c.Close()
				t.Fatalf("Dial(%s) succeeded", uri)
			}
			var pe *daemon.ProtocolError
			if !errors.As(err, &pe) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Dial(%s) error = %q, want one line from a *ProtocolError", uri, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Dial(%s) error = %q, want %q in it", uri, err, w)
				}
			}
			if ctx.Err() != nil {
				t.Errorf("Dial(%s) ran into the test's 1 min bound", uri)
			}
			t.Logf("%v: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
}
