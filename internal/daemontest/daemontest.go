// Package daemontest starts real nix-daemons for tests: a daemon of the
// installed Nix on its own socket, serving the system store, which a test
// may kill without disturbing anyone else. It also instantiates the test
// graphs of testdata/daemon.
package daemontest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/internal/procs"
)

// Daemon is a nix-daemon started by a test.
type Daemon struct {
	// Dir is a world-readable directory holding the socket; tests may put
	// files there that other uids must read.
	Dir    string
	Socket string
	cmd    *exec.Cmd
	done   chan struct{}
}

// PID returns the process id of the daemon (its CPU time, and that of the
// connection workers it has reaped, is in /proc/PID/stat).
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// URI returns the store URI of the daemon: "unix://SOCKET".
func (d *Daemon) URI() string { return "unix://" + d.Socket }

// Start runs `nix-daemon` listening on a socket of its own (through
// NIX_DAEMON_SOCKET_PATH), in its own process group, with the test's Nix
// settings (nixtest.Environ), and stops it when the test ends. It skips
// or fails like nixtest.Need when Nix is absent.
func Start(t testing.TB) *Daemon {
	t.Helper()
	return StartWith(t, Config{})
}

// Config says how StartWith runs a daemon.
type Config struct {
	// Program is the daemon's executable, "nix-daemon" when empty (a Nix
	// 2.26 wrapper: ModernNix).
	Program string
	// Args are its arguments ("--option", "trusted-users", "nobody").
	Args []string
	// Env is added to the daemon's environment: the test's, without
	// NIX_REMOTE (a daemon whose workers connect to a daemon forks
	// without end) and, when Env sets them, without the test's
	// NIX_CONFIG, NIX_CONF_DIR and NIX_SSHOPTS. When Env is nil the
	// test's Nix settings (nixtest.Environ) are added.
	Env []string
}

// StartWith runs a daemon as configured by cfg, on a socket of its own in
// a world-readable directory (Daemon.Dir), in its own process group; its
// output goes to Dir/daemon.log. It is killed with the processes it
// forked when the test ends.
func StartWith(t testing.TB, cfg Config) *Daemon {
	t.Helper()
	nixtest.Need(t)
	dir := WorldDir(t)
	d := &Daemon{Dir: dir, Socket: filepath.Join(dir, "socket"), done: make(chan struct{})}
	prog := cfg.Program
	if prog == "" {
		prog = "nix-daemon"
	}
	cmd := exec.Command(prog, cfg.Args...)
	set := map[string]bool{}
	for _, e := range cfg.Env {
		set[e[:strings.IndexByte(e, '=')+1]] = true
	}
	for _, e := range os.Environ() {
		name := e[:strings.IndexByte(e, '=')+1]
		if name == "NIX_REMOTE=" || name == "NIX_DAEMON_SOCKET_PATH=" || set[name] ||
			(len(cfg.Env) > 0 && (name == "NIX_CONFIG=" || name == "NIX_CONF_DIR=" || name == "NIX_SSHOPTS=")) {
			continue
		}
		cmd.Env = append(cmd.Env, e)
	}
	if cfg.Env == nil {
		cmd.Env = append(cmd.Env, nixtest.Environ()...)
	}
	cmd.Env = append(append(cmd.Env, cfg.Env...), "NIX_DAEMON_SOCKET_PATH="+d.Socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", prog, err)
	}
	d.cmd = cmd
	go func() { cmd.Wait(); close(d.done) }()
	t.Cleanup(d.Kill)
	WaitAccepting(t, d.Socket, d.done, logf.Name())
	return d
}

// ModernNix returns the bin directory of Nix 2.26 named by
// POISON_MODERN_NIX (made by scripts/modern-nix.sh). It skips t when the
// variable is unset, and fails it then under POISON_REQUIRE_NIX=1 or when
// the Nix there does not run.
func ModernNix(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("POISON_MODERN_NIX")
	if bin == "" {
		if nixtest.Required() {
			t.Fatal("Nix 2.26 is required (POISON_REQUIRE_NIX=1) but POISON_MODERN_NIX is not set; run scripts/modern-nix.sh DIR and set POISON_MODERN_NIX=DIR/bin")
		}
		t.Skip("set POISON_MODERN_NIX=DIR/bin (scripts/modern-nix.sh DIR) to test against Nix 2.26")
	}
	if out, err := exec.Command(filepath.Join(bin, "nix-daemon"), "--version").CombinedOutput(); err != nil {
		t.Fatalf("POISON_MODERN_NIX=%s: nix-daemon --version: %v: %s (rerun scripts/modern-nix.sh)", bin, err, out)
	}
	return bin
}

// WaitAccepting waits until a nix-daemon started by a test accepts a
// connection on socket. The socket file appears at bind(), before listen(),
// so its existence is not enough. done closes when the daemon exits; log is
// the file its errors go to, quoted when it exits before listening.
func WaitAccepting(t testing.TB, socket string, done <-chan struct{}, log string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The worker nix-daemon forks for this connection exits when it
		// is closed.
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			out, _ := os.ReadFile(log)
			t.Fatalf("nix-daemon exited before listening: %s", out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nix-daemon did not listen on %s within 10 s", socket)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill kills the daemon, the connection processes it forked (they run in
// sessions of their own, so they are found as its descendants in /proc)
// and their children (build hooks, ssh), then removes the socket.
// Builders in a sandbox of their own may survive.
func (d *Daemon) Kill() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	pid := d.cmd.Process.Pid
	procs.KillDescendants(pid)
	syscall.Kill(-pid, syscall.SIGKILL)
	<-d.done
	os.Remove(d.Socket)
}

// WorldDir returns a fresh directory that every uid can read and write
// (mode 1777), removed when the test ends. Builders (nixbld users) and
// untrusted test clients use it.
func WorldDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "poison-daemontest-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Graph is an instantiation of testdata/daemon/graph.nix.
type Graph struct {
	// Log is the file every builder appends its name to.
	Log string
	// Drvs maps node names (a, b, c, d, top) to .drv paths.
	Drvs map[string]string
}

// GraphArgs are the arguments of graph.nix.
type GraphArgs struct {
	Fail, Slow string
	SleepSecs  int
}

// Instantiate instantiates every node of testdata/daemon/graph.nix with a
// fresh nonce and a log file in dir (created world-writable).
func Instantiate(t testing.TB, dir string, args GraphArgs) *Graph {
	t.Helper()
	g := &Graph{Log: filepath.Join(dir, "build.log"), Drvs: map[string]string{}}
	if err := os.WriteFile(g.Log, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(g.Log, 0o666)
	file := filepath.Join(RepoRoot(t), "testdata", "daemon", "graph.nix")
	nonce := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	cl := []string{file, "--argstr", "nonce", nonce, "--argstr", "log", g.Log,
		"--argstr", "fail", args.Fail, "--argstr", "slow", args.Slow,
		"--argstr", "sleepSecs", fmt.Sprint(max(args.SleepSecs, 1))}
	names := []string{"a", "b", "c", "d", "top"}
	for _, n := range names {
		cl = append(cl, "-A", n)
	}
	out := nixtest.Output(t, "nix-instantiate", cl...)
	paths := strings.Fields(out)
	if len(paths) != len(names) {
		t.Fatalf("nix-instantiate printed %q, want %d paths", out, len(names))
	}
	for i, n := range names {
		g.Drvs[n] = paths[i]
	}
	return g
}

// Ran returns the lines of the graph's build log: the builders that ran.
func (g *Graph) Ran(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile(g.Log)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// RepoRoot returns the root of the poison repository (where go.mod is).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// NixUsersGID returns the gid of the nix-users group, which may reach the
// system daemon's socket.
func NixUsersGID(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("getent", "group", "nix-users").Output()
	if err != nil {
		t.Skipf("no nix-users group: %v", err)
	}
	f := strings.Split(strings.TrimSpace(string(out)), ":")
	if len(f) < 3 {
		t.Skipf("getent group nix-users: %q", out)
	}
	return f[2]
}

// Context returns a context that ends with the test (or after d).
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
