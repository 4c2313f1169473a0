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
// NIX_DAEMON_SOCKET_PATH), in its own process group, and stops it when
// the test ends. It skips or fails like nixtest.Need when Nix is absent.
func Start(t testing.TB) *Daemon {
	t.Helper()
	nixtest.Need(t)
	dir := WorldDir(t)
	d := &Daemon{Dir: dir, Socket: filepath.Join(dir, "socket"), done: make(chan struct{})}
	cmd := exec.Command("nix-daemon")
	cmd.Env = append(os.Environ(), nixtest.Environ()...)
	cmd.Env = append(cmd.Env, "NIX_DAEMON_SOCKET_PATH="+d.Socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	errFile, err := os.Create(filepath.Join(dir, "daemon.stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	cmd.Stderr = errFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nix-daemon: %v", err)
	}
	d.cmd = cmd
	go func() { cmd.Wait(); close(d.done) }()
	t.Cleanup(d.Kill)
	WaitAccepting(t, d.Socket, d.done, errFile.Name())
	return d
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

// Kill kills the daemon and the connection processes it forked (they run
// in sessions of their own, so they are found as its children in /proc),
// then removes the socket. Builders may survive.
func (d *Daemon) Kill() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	pid := d.cmd.Process.Pid
	kids := procs.Children(pid)
	syscall.Kill(-pid, syscall.SIGKILL)
	for _, k := range kids {
		syscall.Kill(k, syscall.SIGKILL)
	}
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
