// Package regtest builds real registries and real git servers for the
// resolver's tests and benchmarks: git repositories made with the git
// command, served by `git daemon` or by `git http-backend` behind
// net/http/cgi, all on 127.0.0.1.
package regtest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const nixbase32 = "0123456789abcdfghijklmnpqrsvwxyz"

// Hash returns a deterministic 32-character nixbase32 hash part for seed.
func Hash(seed string) string {
	h := sha256.Sum256([]byte(seed))
	b := make([]byte, 32)
	for i := range b {
		b[i] = nixbase32[h[i]%32]
	}
	return string(b)
}

// Drv and Out are the store paths of generated derivation i.
func Drv(name string) string { return "/nix/store/" + Hash("drv"+name) + "-" + name + ".drv" }

// Out is the output path of the generated derivation name.
func Out(name string) string { return "/nix/store/" + Hash("out"+name) + "-" + name }

// Entry returns a valid entry poisoning the derivation called name.
func Entry(name, reason string) []byte {
	return []byte(fmt.Sprintf("reason = %q\nauthor = \"Test <test@example.com>\"\ndate = 2026-11-20\n\n[[derivation]]\npath = %q\noutputs = [%q]\n",
		reason, Drv(name), Out(name)))
}

// Config is the registry.toml of generated registries.
const Config = "env = \"POISON_SERIAL\"\nstore-dir = \"/nix/store\"\n"

// Git runs git in dir with a fixed identity and dates, failing the test on
// error, and returns its trimmed output.
func Git(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	out, err := GitE(dir, args...)
	if err != nil {
		tb.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// GitE is Git returning the error.
func GitE(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com",
		"GIT_AUTHOR_DATE=2026-11-20T12:00:00Z", "GIT_COMMITTER_DATE=2026-11-20T12:00:00Z",
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// Repo is a registry work tree.
type Repo struct {
	tb  testing.TB
	Dir string
}

// NewRepo creates a registry repository (branch main) in dir with
// registry.toml and the given entries (name → content), in one commit.
func NewRepo(tb testing.TB, dir string, entries map[string][]byte) *Repo {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	Git(tb, dir, "init", "-q", "-b", "main")
	r := &Repo{tb: tb, Dir: dir}
	r.Write("registry.toml", []byte(Config))
	for name, data := range entries {
		r.Write(EntryPath(name), data)
	}
	r.Commit("init")
	return r
}

// InitRepo makes the files already in dir a registry repository (branch
// main) with one commit.
func InitRepo(tb testing.TB, dir string) *Repo {
	tb.Helper()
	Git(tb, dir, "init", "-q", "-b", "main")
	r := &Repo{tb: tb, Dir: dir}
	r.Commit("init")
	return r
}

// EntryPath is where the entry called name lives.
func EntryPath(name string) string { return "entries/2026/11/" + name + ".toml" }

// Write writes a file of the work tree.
func (r *Repo) Write(rel string, data []byte) {
	r.tb.Helper()
	p := filepath.Join(r.Dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.tb.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		r.tb.Fatal(err)
	}
}

// Commit commits everything and returns the commit id.
func (r *Repo) Commit(msg string, extra ...string) string {
	r.tb.Helper()
	Git(r.tb, r.Dir, "add", "-A")
	Git(r.tb, r.Dir, append([]string{"commit", "-q", "--allow-empty", "-m", msg}, extra...)...)
	return r.Head()
}

// Head returns the commit of HEAD.
func (r *Repo) Head() string {
	r.tb.Helper()
	return Git(r.tb, r.Dir, "rev-parse", "HEAD")
}

// AddEntry writes and commits one entry.
func (r *Repo) AddEntry(name string, data []byte) string {
	r.Write(EntryPath(name), data)
	return r.Commit("add " + name)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Daemon is a running `git daemon`.
type Daemon struct {
	cmd  *exec.Cmd
	Port int
	done chan struct{}
}

// URL is the git:// URL of repository name under the base path.
func (d *Daemon) URL(name string) string { return fmt.Sprintf("git://127.0.0.1:%d/%s", d.Port, name) }

// Stop kills the daemon (and the children it forked) and waits until
// its port is closed.
func (d *Daemon) Stop() {
	if d.cmd.Process == nil {
		return
	}
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	<-d.done
	for i := 0; i < 100; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", d.Port))
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

// StartDaemon serves every repository under base with `git daemon` on a
// free port of 127.0.0.1 until the test ends.
func StartDaemon(tb testing.TB, base string) *Daemon {
	tb.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		if d := tryDaemon(tb, base, FreePort(tb)); d != nil {
			tb.Cleanup(d.Stop)
			return d
		}
	}
	tb.Fatal("git daemon did not start")
	return nil
}

func tryDaemon(tb testing.TB, base string, port int) *Daemon {
	cmd := exec.Command("git", "daemon", "--export-all", "--reuseaddr", "--base-path="+base,
		"--listen=127.0.0.1", fmt.Sprintf("--port=%d", port), "--informative-errors", base)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start git daemon: %v", err)
	}
	d := &Daemon{cmd: cmd, Port: port, done: make(chan struct{})}
	go func() { cmd.Wait(); close(d.done) }()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		select {
		case <-d.done:
			return nil // lost the race for the port
		default:
		}
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return d
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.Stop()
	return nil
}

// HTTP is a smart-HTTP git server (git http-backend through net/http/cgi)
// that counts the requests it receives.
type HTTP struct {
	*httptest.Server
	requests atomic.Int64
}

// Requests returns how many requests the server has received.
func (h *HTTP) Requests() int64 { return h.requests.Load() }

// URL is the URL of repository name under the served root.
func (h *HTTP) URL(name string) string { return h.Server.URL + "/" + name }

// StartHTTP serves every repository under root over smart HTTP on
// 127.0.0.1 until the test ends.
func StartHTTP(tb testing.TB, root string) *HTTP {
	tb.Helper()
	return StartHTTPAuth(tb, root, "", "", false)
}

// StartHTTPAuth is StartHTTP behind HTTP basic authentication: every
// request without exactly this user and password is answered 401, as
// GitLab or GitHub answer a missing or wrong token. An empty user turns
// the check off. With useTLS the server speaks HTTPS with a certificate
// only its Client trusts.
func StartHTTPAuth(tb testing.TB, root, user, password string, useTLS bool) *HTTP {
	tb.Helper()
	execPath, err := GitE("", "--exec-path")
	if err != nil {
		tb.Fatalf("git --exec-path: %v", err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(execPath, "git-http-backend"),
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1"},
	}
	h := &HTTP{}
	h.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		if user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		backend.ServeHTTP(w, r)
	}))
	if useTLS {
		h.StartTLS()
	} else {
		h.Start()
	}
	tb.Cleanup(h.Close)
	return h
}

// WriteMany writes n generated entries (and registry.toml) into dir,
// spread over twelve month directories like a real registry's.
func WriteMany(dir string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "registry.toml"), []byte(Config), 0o644); err != nil {
		return err
	}
	for m := 1; m <= 12; m++ {
		if err := os.MkdirAll(filepath.Join(dir, "entries", "2026", fmt.Sprintf("%02d", m)), 0o755); err != nil {
			return err
		}
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("pkg%d-1.%d", i, i%13)
		p := filepath.Join(dir, "entries", "2026", fmt.Sprintf("%02d", i%12+1), fmt.Sprintf("incident-%06d.toml", i))
		if err := os.WriteFile(p, Entry(name, fmt.Sprintf("generated incident %d", i)), 0o644); err != nil {
			return err
		}
	}
	return nil
}
