package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/builder/internal/aterm"
	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
)

// offline are the settings every test connection uses: no substituters.
func offline() *daemon.Settings {
	s := daemon.DefaultSettings()
	s.Overrides = map[string]string{"substituters": ""}
	return &s
}

// recorder collects the messages of a connection.
type recorder struct {
	mu   sync.Mutex
	msgs []daemon.Message
}

func (r *recorder) log(m daemon.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
}

// buildLines returns the builder output lines (RESULT buildLogLine).
func (r *recorder) buildLines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.msgs {
		if m.Kind == daemon.Result && m.Result == daemon.ResBuildLogLine {
			out = append(out, m.StringField(0))
		}
	}
	return out
}

func (r *recorder) started(t daemon.ActivityType) []daemon.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []daemon.Message
	for _, m := range r.msgs {
		if m.Kind == daemon.StartActivity && m.Activity == t {
			out = append(out, m)
		}
	}
	return out
}

// stores are the transports every conformance test runs over: the socket
// of a daemon the test starts and a `nix-daemon --stdio` child (trusted:
// the tests run as root, as the machine's setup does).
func stores(t *testing.T) map[string]string {
	d := daemontest.Start(t)
	m := map[string]string{"socket": d.URI()}
	if os.Geteuid() == 0 {
		m["stdio"] = "local"
	}
	return m
}

func dial(t *testing.T, uri string, rec *recorder) *daemon.Conn {
	t.Helper()
	// Generous bounded waits: on a loaded machine starting a daemon
	// (a nix-daemon --stdio child for chroot stores) took more than the
	// default 10 s.
	opts := daemon.Options{Settings: offline(), ConnectTimeout: time.Minute, HandshakeTimeout: time.Minute}
	if rec != nil {
		opts.Log = rec.log
	}
	c, err := daemon.Dial(daemontest.Context(t, time.Minute), uri, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", uri, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// drvText reads a .drv written by nix-instantiate and its references.
func drvText(t *testing.T, drv string) daemon.Text {
	t.Helper()
	data, err := os.ReadFile(drv)
	if err != nil {
		t.Fatal(err)
	}
	refs := strings.Fields(nixtest.Output(t, "nix-store", "--query", "--references", drv))
	name := strings.SplitN(filepath.Base(drv), "-", 2)[1]
	return daemon.Text{Name: name, Content: data, References: refs}
}

func TestOperations(t *testing.T) {
	for name, uri := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g := daemontest.Instantiate(t, daemontest.WorldDir(t), daemontest.GraphArgs{})
			rec := &recorder{}
			c := dial(t, uri, rec)
			ctx := daemontest.Context(t, time.Minute)

			if got, want := c.Version(), min(daemon.ClientVersion, c.DaemonVersion()); got != want {
				t.Errorf("negotiated version %#x, want %#x", got, want)
			}
			if c.NixVersion() == "" || !strings.Contains(nixtest.Output(t, "nix-store", "--version"), c.NixVersion()) {
				t.Errorf("NixVersion() = %q, not the installed Nix", c.NixVersion())
			}

			// AddToStore text:sha256 gives exactly nix-instantiate's path.
			top := g.Drvs["top"]
			p, err := c.AddText(ctx, drvText(t, top))
			if err != nil || p != top {
				t.Fatalf("AddText(top) = %q, %v; want %q", p, err, top)
			}
			ok, err := c.IsValidPath(ctx, top)
			if err != nil || !ok {
				t.Fatalf("IsValidPath(%s) = %v, %v", top, ok, err)
			}
			info, err := c.QueryPathInfo(ctx, top)
			if err != nil {
				t.Fatal(err)
			}
			wantRefs := strings.Fields(nixtest.Output(t, "nix-store", "--query", "--references", top))
			if !slices.Equal(info.References, wantRefs) || !strings.HasPrefix(info.CA, "text:sha256:") || info.NarSize == 0 {
				t.Errorf("QueryPathInfo = %+v; want refs %v and a text CA", info, wantRefs)
			}
			if _, err := c.QueryPathInfo(ctx, "/nix/store/00000000000000000000000000000000-nope"); !errors.Is(err, daemon.ErrNotValid) {
				t.Errorf("QueryPathInfo(missing) error = %v, want ErrNotValid", err)
			}
			valid, err := c.QueryValidPaths(ctx, []string{top, "/nix/store/00000000000000000000000000000000-nope"}, false)
			if err != nil || !slices.Equal(valid, []string{top}) {
				t.Errorf("QueryValidPaths = %v, %v", valid, err)
			}
			outs, err := c.QueryDerivationOutputMap(ctx, top)
			wantOut := nixtest.Output(t, "nix-store", "--query", "--outputs", top)
			if err != nil || outs["out"] != wantOut {
				t.Errorf("QueryDerivationOutputMap = %v, %v; want out=%s", outs, err, wantOut)
			}
			if err := c.AddTempRoot(ctx, top); err != nil {
				t.Errorf("AddTempRoot: %v", err)
			}
			m, err := c.QueryMissing(ctx, []string{top + "!*"})
			if err != nil || len(m.WillBuild) != 5 {
				t.Errorf("QueryMissing = %+v, %v; want 5 derivations to build", m, err)
			}

			// Build; the log lines of the builders arrive as messages.
			res, err := c.BuildPathsWithResults(ctx, []string{top + "!*", g.Drvs["d"] + "!out"}, daemon.BuildNormal)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 2 || res[0].Status != daemon.Built || res[0].BuiltOutputs["out"] != wantOut || res[1].Path != g.Drvs["d"]+"!out" {
				t.Fatalf("BuildPathsWithResults = %+v", res)
			}
			if res[0].StartTime.IsZero() || res[0].StopTime.Before(res[0].StartTime) {
				t.Errorf("build times %v .. %v", res[0].StartTime, res[0].StopTime)
			}
			if got := g.Ran(t); !slices.Equal(sorted(got), []string{"a", "b", "c", "d", "top"}) {
				t.Errorf("builders ran %v", got)
			}
			if !slices.Contains(rec.buildLines(), "building top") {
				t.Errorf("no build log line 'building top' in %q", rec.buildLines())
			}
			if n := len(rec.started(daemon.ActBuild)); n != 5 {
				t.Errorf("%d build activities, want 5", n)
			}

			// NarFromPath gives the bytes of nix-store --dump.
			var nar bytes.Buffer
			if err := c.NarFromPath(ctx, wantOut, &nar); err != nil {
				t.Fatal(err)
			}
			want, err := nixtest.Command("nix-store", "--dump", wantOut).Output()
			if err != nil || !bytes.Equal(nar.Bytes(), want) {
				t.Errorf("NarFromPath: %d bytes, nix-store --dump %d bytes (%v)", nar.Len(), len(want), err)
			}
			// The connection still works after streaming a NAR.
			if ok, err := c.IsValidPath(ctx, wantOut); err != nil || !ok {
				t.Errorf("IsValidPath after NarFromPath = %v, %v", ok, err)
			}
		})
	}
}

// TestAddTextValidation: the daemon is the referee of rewritten .drvs. A
// wrong output path is refused with its message; the connection stays
// usable; a batch reports the failure at its position and what depends
// on it.
func TestAddTextValidation(t *testing.T) {
	d := daemontest.Start(t)
	g := daemontest.Instantiate(t, d.Dir, daemontest.GraphArgs{})
	c := dial(t, d.URI(), nil)
	ctx := daemontest.Context(t, time.Minute)

	a := drvText(t, g.Drvs["a"])
	out := nixtest.Output(t, "nix-store", "--query", "--outputs", g.Drvs["a"])
	bad := a
	bad.Name = "a.drv"
	bad.Content = bytes.ReplaceAll(a.Content, []byte(out), []byte("/nix/store/11111111111111111111111111111111-a"))
	_, err := c.AddText(ctx, bad)
	var de *daemon.Error
	if !errors.As(err, &de) || !strings.Contains(de.Message, "incorrect output") || strings.Contains(de.Message, "\x1b") {
		t.Fatalf("AddText(bad output) error = %v, want the daemon's 'incorrect output' message", err)
	}
	if p, err := c.AddText(ctx, a); err != nil || p != g.Drvs["a"] {
		t.Fatalf("AddText after an error = %q, %v", p, err)
	}

	// Pipelined batch: b, c, then the bad one, then d (ok).
	texts := []daemon.Text{drvText(t, g.Drvs["b"]), drvText(t, g.Drvs["c"]), bad, drvText(t, g.Drvs["d"])}
	paths, errs, err := c.AddTexts(ctx, texts)
	if err != nil {
		t.Fatal(err)
	}
	if paths[0] != g.Drvs["b"] || paths[1] != g.Drvs["c"] || paths[3] != g.Drvs["d"] || errs[0] != nil || errs[3] != nil {
		t.Errorf("AddTexts = %q, %v", paths, errs)
	}
	if errs[2] == nil || !strings.Contains(errs[2].Error(), "incorrect output") {
		t.Errorf("AddTexts error for the bad drv = %v", errs[2])
	}
	// Adding before its input is refused: the input is not valid.
	top := drvText(t, g.Drvs["top"])
	top.References = append(top.References, "/nix/store/22222222222222222222222222222222-missing.drv")
	if _, err := c.AddText(ctx, top); err == nil || !strings.Contains(err.Error(), "not valid") {
		t.Errorf("AddText with a missing reference: %v", err)
	}
}

func TestBuildDerivation(t *testing.T) {
	d := daemontest.Start(t)
	g := daemontest.Instantiate(t, d.Dir, daemontest.GraphArgs{Fail: "b"})
	rec := &recorder{}
	c := dial(t, d.URI(), rec)
	ctx := daemontest.Context(t, time.Minute)

	// a: built from a BasicDerivation, its .drv never added.
	outA := nixtest.Output(t, "nix-store", "--query", "--outputs", g.Drvs["a"])
	bd := basic(t, g.Drvs["a"], nil)
	res, err := c.BuildDerivation(ctx, g.Drvs["a"], bd, daemon.BuildNormal)
	if err != nil || res.Status != daemon.Built || res.BuiltOutputs["out"] != outA {
		t.Fatalf("BuildDerivation(a) = %+v, %v", res, err)
	}
	// b fails: PermanentFailure with its log in the message.
	bd = basic(t, g.Drvs["b"], map[string]string{g.Drvs["a"]: outA})
	res, err = c.BuildDerivation(ctx, g.Drvs["b"], bd, daemon.BuildNormal)
	if err != nil || res.Status != daemon.PermanentFailure || !strings.Contains(res.ErrorMsg, "failing on purpose") {
		t.Fatalf("BuildDerivation(b) = %+v, %v; want PermanentFailure with the log", res, err)
	}
	if res.Status.Success() || !daemon.AlreadyValid.Success() {
		t.Error("Success() wrong")
	}
	if got := g.Ran(t); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("builders ran %v, want [a b]", got)
	}
}

// basic reads a .drv and resolves its inputs through outs (input drv →
// its "out" path).
func basic(t *testing.T, drv string, outs map[string]string) *daemon.BasicDerivation {
	t.Helper()
	data, err := os.ReadFile(drv)
	if err != nil {
		t.Fatal(err)
	}
	d, err := aterm.Parse(string(data))
	if err != nil {
		t.Fatal(err)
	}
	b := &daemon.BasicDerivation{Platform: d.Platform, Builder: d.Builder, Args: d.Args, Env: map[string]string{}, InputSrcs: d.InputSrcs}
	for _, o := range d.Outputs {
		b.Outputs = append(b.Outputs, daemon.DerivationOutput{Name: o.Name, Path: o.Path, HashAlgo: o.HashAlgo, Hash: o.Hash})
	}
	for _, e := range d.Env {
		b.Env[e.Key] = e.Value
	}
	for _, in := range d.InputDrvs {
		b.InputSrcs = append(b.InputSrcs, outs[in.Path])
	}
	return b
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// TestUntrusted runs the client as uid 65534: queries, AddToStore and
// BuildPathsWithResults work; BuildDerivation is refused with a message
// NotTrusted recognises, and the connection stays usable.
func TestUntrusted(t *testing.T) {
	if os.Getenv("POISON_UNTRUSTED_CHILD") == "1" {
		untrustedChild(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an untrusted uid")
	}
	d := daemontest.Start(t)
	g := daemontest.Instantiate(t, d.Dir, daemontest.GraphArgs{})
	// Copy the test binary where uid 65534 can run it.
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
	var texts []string
	for _, n := range []string{"a", "b"} {
		tx := drvText(t, g.Drvs[n])
		texts = append(texts, g.Drvs[n]+"|"+strings.Join(tx.References, ","))
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid="+daemontest.NixUsersGID(t), "--clear-groups",
		bin, "-test.run=^TestUntrusted$", "-test.v")
	cmd.Env = append(os.Environ(), nixtest.Environ()...)
	cmd.Env = append(cmd.Env, "POISON_UNTRUSTED_CHILD=1", "POISON_UNTRUSTED_STORE="+d.URI(),
		"POISON_UNTRUSTED_DRVS="+strings.Join(texts, ";"), "HOME="+d.Dir)
	cmd.Dir = d.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("untrusted client: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "untrusted-ok") {
		t.Fatalf("untrusted child did not run its checks:\n%s", out)
	}
	if got := g.Ran(t); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("builders ran %v, want [a b]", got)
	}
}

func untrustedChild(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Fatal("child runs as root")
	}
	ctx := daemontest.Context(t, time.Minute)
	c, err := daemon.Dial(ctx, os.Getenv("POISON_UNTRUSTED_STORE"), daemon.Options{Settings: offline()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Trust() == daemon.Trusted {
		t.Fatal("daemon says uid 65534 is trusted")
	}
	var last string
	for _, spec := range strings.Split(os.Getenv("POISON_UNTRUSTED_DRVS"), ";") {
		drv, refs, _ := strings.Cut(spec, "|")
		data, err := os.ReadFile(drv)
		if err != nil {
			t.Fatal(err)
		}
		var rs []string
		if refs != "" {
			rs = strings.Split(refs, ",")
		}
		p, err := c.AddText(ctx, daemon.Text{Name: strings.SplitN(filepath.Base(drv), "-", 2)[1], Content: data, References: rs})
		if err != nil || p != drv {
			t.Fatalf("untrusted AddText = %q, %v; want %s", p, err, drv)
		}
		last = drv
	}
	_, err = c.BuildDerivation(ctx, last, &daemon.BasicDerivation{
		Outputs:  []daemon.DerivationOutput{{Name: "out", Path: "/nix/store/33333333333333333333333333333333-x"}},
		Platform: "x86_64-linux", Builder: "/bin/sh",
	}, daemon.BuildNormal)
	var de *daemon.Error
	if !errors.As(err, &de) || !de.NotTrusted() {
		t.Fatalf("untrusted BuildDerivation error = %v, want a refusal", err)
	}
	res, err := c.BuildPathsWithResults(ctx, []string{last + "!*"}, daemon.BuildNormal)
	if err != nil || len(res) != 1 || res[0].Status != daemon.Built {
		t.Fatalf("untrusted BuildPathsWithResults = %+v, %v", res, err)
	}
	fmt.Println("untrusted-ok")
}

// TestSSHNG goes through the ssh-ng transport with a stand-in for ssh that
// runs the remote command locally (quick, and independent of OpenSSH;
// TestSSHOpenSSH uses a real sshd), and shows that junk printed by a login
// shell is reported as Nix reports it.
func TestSSHNG(t *testing.T) {
	nixtest.Need(t)
	if os.Geteuid() != 0 {
		t.Skip("the stdio daemon on the local store needs root")
	}
	root := daemontest.RepoRoot(t)
	fakeSSH := filepath.Join(root, "testdata", "daemon", "fake-ssh")
	junk := filepath.Join(root, "testdata", "daemon", "junk-daemon")
	tests := []struct {
		name, uri, wantErr string
	}{
		{"ok", "ssh-ng://builder@localhost:2222", ""},
		{"junk", "ssh-ng://localhost?remote-program=" + junk, "protocol mismatch, got 'Welcome to the build farm!"},
		{"missing program", "ssh-ng://localhost?remote-program=/nonexistent/nix-daemon", "connection closed by the daemon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := daemontest.Context(t, time.Minute)
			c, err := daemon.Dial(ctx, tt.uri, daemon.Options{SSHProgram: fakeSSH, Settings: offline(), HandshakeTimeout: 20 * time.Second})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if ok, err := c.IsValidPath(ctx, "/nix/store/00000000000000000000000000000000-x"); err != nil || ok {
					t.Errorf("IsValidPath over ssh-ng = %v, %v", ok, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Dial(%s) error = %v, want %q", tt.uri, err, tt.wantErr)
			}
		})
	}
}

// TestDialFailures: no daemon, a daemon that never answers, a bad URI.
// Each fails fast with one clear line.
func TestDialFailures(t *testing.T) {
	dir := t.TempDir()
	silent := filepath.Join(dir, "silent.sock")
	l, err := net.Listen("unix", silent)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accept and say nothing
		}
	}()
	// A daemon that dies without reading what it was sent: the kernel
	// resets the connection (ECONNRESET) instead of closing it.
	reset := filepath.Join(dir, "reset.sock")
	lr, err := net.Listen("unix", reset)
	if err != nil {
		t.Fatal(err)
	}
	defer lr.Close()
	go func() {
		for {
			c, err := lr.Accept()
			if err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond) // the client's magic arrives, unread
			c.Close()
		}
	}()
	tests := []struct {
		name, uri, want string
	}{
		{"no socket", "unix://" + filepath.Join(dir, "none"), "is the daemon running?"},
		{"reset", "unix://" + reset, "connection closed by the daemon"},
		{"silent", "unix://" + silent, "no answer within 300ms"},
		{"scheme", "https://example.com", "unsupported scheme"},
		{"ssh no host", "ssh-ng://", "want ssh-ng://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := daemon.Dial(context.Background(), tt.uri, daemon.Options{HandshakeTimeout: 300 * time.Millisecond})
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Dial(%s) = %v, want one line with %q", tt.uri, err, tt.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	// The caller's deadline expiring first is reported as such, not as the
	// daemon's silence.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = daemon.Dial(ctx, "unix://"+silent, daemon.Options{HandshakeTimeout: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "context deadline exceeded") || strings.Contains(err.Error(), "no answer within") {
		t.Errorf("Dial with the caller's deadline = %v, want the caller's deadline", err)
	}
}

// TestDaemonKilledMidBuild: the error names the broken connection; a new
// connection to a new daemon completes the build.
func TestDaemonKilledMidBuild(t *testing.T) {
	d := daemontest.Start(t)
	g := daemontest.Instantiate(t, d.Dir, daemontest.GraphArgs{Slow: "a", SleepSecs: 3})
	c := dial(t, d.URI(), nil)
	ctx := daemontest.Context(t, time.Minute)
	errc := make(chan error, 1)
	go func() {
		_, err := c.BuildPathsWithResults(ctx, []string{g.Drvs["b"] + "!*"}, daemon.BuildNormal)
		errc <- err
	}()
	waitFor(t, g, "a-started")
	d.Kill()
	err := <-errc
	var pe *daemon.ProtocolError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "connection closed by the daemon") {
		t.Fatalf("build error after kill = %v, want a closed connection", err)
	}
	if _, err := c.IsValidPath(ctx, g.Drvs["a"]); err == nil {
		t.Error("broken connection still answers")
	}
	d2 := daemontest.Start(t)
	c2 := dial(t, d2.URI(), nil)
	res, err := c2.BuildPathsWithResults(ctx, []string{g.Drvs["b"] + "!*"}, daemon.BuildNormal)
	if err != nil || res[0].Status != daemon.Built {
		t.Fatalf("second build = %+v, %v", res, err)
	}
}

func waitFor(t *testing.T, g *daemontest.Graph, line string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Contains(g.Ran(t), line) {
		if time.Now().After(deadline) {
			t.Fatalf("builder never logged %q", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPool runs queries on several connections at once.
func TestPool(t *testing.T) {
	d := daemontest.Start(t)
	p := daemon.NewPool(d.URI(), daemon.Options{Settings: offline()}, 3)
	defer p.Close()
	ctx := daemontest.Context(t, time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- p.Do(ctx, func(c *daemon.Conn) error {
				_, err := c.IsValidPath(ctx, fmt.Sprintf("/nix/store/%032d-x", i))
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestAuto: with no daemon listening, "auto" as root serves the local
// store through a `nix-daemon --stdio` child, as Nix does.
func TestAuto(t *testing.T) {
	nixtest.Need(t)
	if os.Geteuid() != 0 {
		t.Skip("auto falls back to a local store only for root")
	}
	ctx := daemontest.Context(t, time.Minute)
	c, err := daemon.Dial(ctx, "auto", daemon.Options{SocketPath: filepath.Join(t.TempDir(), "none"), Settings: offline()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !strings.Contains(c.Store(), "nix-daemon --stdio") {
		t.Errorf("auto connected to %q, want the stdio fallback", c.Store())
	}
	if ok, err := c.IsValidPath(ctx, "/nix/store/00000000000000000000000000000000-x"); err != nil || ok {
		t.Errorf("IsValidPath = %v, %v", ok, err)
	}
}

// TestModernNix runs against Nix 2.26 (protocol 1.38, so 1.37 is
// negotiated: trust byte, cpu times in build results) when
// POISON_MODERN_NIX names the bin directory made by scripts/modern-nix.sh
// (scripts/test.sh sets it). Its store is the chroot store beside it.
// Under POISON_REQUIRE_NIX=1 a missing or broken Nix 2.26 fails the test.
func TestModernNix(t *testing.T) {
	bin := daemontest.ModernNix(t)
	store := filepath.Join(filepath.Dir(bin), "store")
	ctx := daemontest.Context(t, time.Minute)
	rec := &recorder{}
	// A chroot store forces a sandbox; Debian's default sandbox-paths name
	// a shell that the unpacked Nix lacks: give it the host's.
	s := offline()
	s.Overrides["sandbox-paths"] = "/bin /lib /lib64 /usr"
	c, err := daemon.Dial(ctx, store, daemon.Options{DaemonProgram: filepath.Join(bin, "nix-daemon"), Settings: s, Log: rec.log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Version() != daemon.ClientVersion || c.DaemonVersion() < 1<<8|38 || c.Trust() != daemon.Trusted {
		t.Fatalf("version %#x (daemon %#x), trust %v; want 1.37 negotiated and trusted", c.Version(), c.DaemonVersion(), c.Trust())
	}
	dir := daemontest.WorldDir(t)
	cmd := exec.Command(filepath.Join(bin, "nix-instantiate"), filepath.Join(daemontest.RepoRoot(t), "testdata/daemon/graph.nix"),
		"-A", "a", "--argstr", "nonce", fmt.Sprint(time.Now().UnixNano()), "--argstr", "log", filepath.Join(dir, "log"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix-instantiate 2.26: %v", err)
	}
	drv := strings.TrimSpace(string(out))
	data, err := os.ReadFile(filepath.Join(filepath.Dir(bin), "store", drv))
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.AddText(ctx, daemon.Text{Name: "a.drv", Content: data})
	if err != nil || p != drv {
		t.Fatalf("AddText = %q, %v; want %s", p, err, drv)
	}
	info, err := c.QueryPathInfo(ctx, drv)
	if err != nil || !strings.HasPrefix(info.CA, "text:sha256:") {
		t.Fatalf("QueryPathInfo = %+v, %v", info, err)
	}
	res, err := c.BuildPathsWithResults(ctx, []string{drv + "!*"}, daemon.BuildNormal)
	if err != nil || len(res) != 1 {
		t.Fatalf("BuildPathsWithResults = %+v, %v", res, err)
	}
	want, _ := c.QueryDerivationOutputMap(ctx, drv)
	if res[0].Status != daemon.Built || res[0].BuiltOutputs["out"] != want["out"] || res[0].StartTime.IsZero() {
		t.Fatalf("2.26 build result %+v, want Built with out=%s", res[0], want["out"])
	}
	// The connection is in step after a 1.37 build result.
	if ok, err := c.IsValidPath(ctx, drv); err != nil || !ok {
		t.Fatalf("IsValidPath after the build = %v, %v", ok, err)
	}
}
