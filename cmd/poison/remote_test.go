package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/internal/ptytest"
	"github.com/poison-nix/poison/internal/remotetest"
)

// remoteGraph is an instantiation of testdata/remote/graph.nix.
type remoteGraph struct {
	drvs map[string]string // a, b, top → .drv path
	src  string            // the input source (input.txt in the store)
	dir  string            // a working directory with poison.lock
}

// newRemoteGraph instantiates the graph with a fresh nonce and writes a
// lock poisoning poisoned (a node name) into a working directory.
func newRemoteGraph(t *testing.T, poisoned string) *remoteGraph {
	t.Helper()
	file := filepath.Join("testdata", "remote", "graph.nix")
	nonce := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	out := nixtest.Output(t, "nix-instantiate", file, "--argstr", "nonce", nonce, "-A", "a", "-A", "b", "-A", "top")
	paths := strings.Fields(out)
	if len(paths) != 3 {
		t.Fatalf("nix-instantiate printed %q", out)
	}
	g := &remoteGraph{drvs: map[string]string{"a": paths[0], "b": paths[1], "top": paths[2]}, dir: daemontest.WorldDir(t)}
	for _, r := range strings.Fields(nixtest.Output(t, "nix-store", "--query", "--references", g.drvs["a"])) {
		if strings.HasSuffix(r, "-input.txt") {
			g.src = r
		}
	}
	if g.src == "" {
		t.Fatalf("no input source among the references of %s", g.drvs["a"])
	}
	lk := fmt.Sprintf(`{"version":1,"registry":{"url":"file:///srv/registry","ref":"main","commit":"%s"},"env":"POISON_SERIAL","derivations":{"%s":1},"outputs":{},"names":{}}`,
		strings.Repeat("ab", 20), filepath.Base(g.drvs[poisoned]))
	if err := os.WriteFile(filepath.Join(g.dir, "poison.lock"), []byte(lk), 0o644); err != nil {
		t.Fatal(err)
	}
	return g
}

// runPoisonRemote runs the CLI in dir with NIX_CONFIG of the tests and the
// given environment variables.
func runPoisonRemote(t *testing.T, dir string, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, now: time.Now, dir: dir,
		getenv: func(k string) string {
			if k == "NIX_CONFIG" {
				return nixtest.Config
			}
			return vars[k]
		}}
	code := run(args, e)
	return code, stdout.String(), stderr.String()
}

// errorLines returns the "poison: error:" and "poison: hint:" lines.
func errorLines(stderr string) (errs, hints []string) {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "poison: error:") {
			errs = append(errs, l)
		}
		if strings.HasPrefix(l, "poison: hint:") {
			hints = append(hints, l)
		}
	}
	return errs, hints
}

// TestBuildRemoteStoreFromScratch: `poison build --store ssh-ng://HOST`
// against a host whose store is empty copies what it lacks (the unchanged
// .drv of a and the input source), writes the rewritten .drvs there and
// builds on the host: the output is valid there, holds the host's marker,
// and stays there; --copy-back brings it home.
func TestBuildRemoteStoreFromScratch(t *testing.T) {
	remotetest.Need(t)
	h := remotetest.Start(t, "remote", remotetest.Options{})
	home := daemontest.Start(t)
	g := newRemoteGraph(t, "b")
	vars := map[string]string{"NIX_DAEMON_SOCKET_PATH": home.Socket, "NIX_SSHOPTS": strings.Join(h.SSH.SSHOpts(), " ")}
	for _, p := range []string{g.drvs["a"], g.src} {
		if h.Valid(t, p) {
			t.Fatalf("%s valid on a fresh host", p)
		}
	}

	code, stdout, stderr := runPoisonRemote(t, g.dir, vars, "build", "--store", h.URI("ssh-ng"), "--print-out-paths", g.drvs["top"])
	if code != 0 {
		t.Fatalf("poison build --store ssh-ng: exit %d\n%s\nsshd: %s", code, stderr, h.SSH.Log())
	}
	out := strings.TrimSpace(stdout)
	original := nixtest.Output(t, "nix-store", "--query", "--outputs", g.drvs["top"])
	if !strings.HasSuffix(out, "-top") || out == original {
		t.Fatalf("output %q, want a rewritten top (original %s)", out, original)
	}
	if !strings.Contains(stderr, "poison: copied 2 paths") {
		t.Errorf("stderr does not say that 2 paths (a.drv, input.txt) were copied:\n%s", stderr)
	}
	for _, p := range []string{g.drvs["a"], g.src, out} {
		if !h.Valid(t, p) {
			t.Errorf("%s not valid on the host", p)
		}
	}
	if got := h.Read(t, out); !strings.HasPrefix(got, h.Marker+"\nan input source\n") {
		t.Errorf("output on the host holds %q, want the host's marker and the input", got)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("%s is in this machine's store without --copy-back", out)
	}

	// Again with --copy-back: nothing to copy or build, the outputs come home.
	code, stdout, stderr = runPoisonRemote(t, g.dir, vars, "build", "--store", h.URI("ssh-ng"), "--copy-back", "--print-out-paths", g.drvs["top"])
	if code != 0 || strings.TrimSpace(stdout) != out {
		t.Fatalf("poison build --copy-back: exit %d, stdout %q\n%s", code, stdout, stderr)
	}
	if strings.Contains(stderr, "lacked") {
		t.Errorf("second build copied inputs again:\n%s", stderr)
	}
	if !strings.Contains(stderr, "back from "+h.URI("ssh-ng")) {
		t.Errorf("stderr does not report the copy back:\n%s", stderr)
	}
	nixtest.Output(t, "nix-store", "--check-validity", out)
	if got, err := os.ReadFile(out); err != nil || !strings.HasPrefix(string(got), h.Marker+"\n") {
		t.Errorf("copied-back output holds %q, %v; want the host's marker", got, err)
	}

	code, _, stderr = runPoisonRemote(t, g.dir, vars, "build", "--copy-back", g.drvs["top"])
	if errs, _ := errorLines(stderr); code != 2 || len(errs) != 1 || !strings.Contains(errs[0], "--copy-back needs a remote store") {
		t.Errorf("--copy-back without a remote store: exit %d, %q", code, errs)
	}
}

// TestBuildRemoteStoreOutputPath: with --store ssh-ng://HOST an output
// path (here a result link) is resolved in this machine's store, where it
// was given: its deriver is found here, copied to the host with its
// inputs, and built there.
func TestBuildRemoteStoreOutputPath(t *testing.T) {
	remotetest.Need(t)
	h := remotetest.Start(t, "remote", remotetest.Options{})
	home := daemontest.Start(t)
	g := newRemoteGraph(t, "b")
	vars := map[string]string{"NIX_DAEMON_SOCKET_PATH": home.Socket, "NIX_SSHOPTS": strings.Join(h.SSH.SSHOpts(), " ")}
	link := filepath.Join(g.dir, "result")
	nixtest.Output(t, "nix-store", "--realise", g.drvs["a"], "--add-root", link, "--indirect")
	out, err := filepath.EvalSymlinks(link)
	if err != nil {
		t.Fatal(err)
	}
	if h.Valid(t, out) || h.Valid(t, g.drvs["a"]) {
		t.Fatalf("a valid on a fresh host")
	}
	code, stdout, stderr := runPoisonRemote(t, g.dir, vars, "build", "--store", h.URI("ssh-ng"), "--print-out-paths", "./result")
	if code != 0 || strings.TrimSpace(stdout) != out {
		t.Fatalf("poison build --store ssh-ng ./result: exit %d, stdout %q, want %s\n%s", code, stdout, out, stderr)
	}
	for _, p := range []string{g.drvs["a"], out} {
		if !h.Valid(t, p) {
			t.Errorf("%s not valid on the host", p)
		}
	}
	if got := h.Read(t, out); !strings.HasPrefix(got, h.Marker+"\n") {
		t.Errorf("output on the host holds %q, want the host's marker", got)
	}
}

// TestCopyProgressTerminal: on a terminal poison copy draws a live line
// of the paths and bytes copied, and clears it before its closing line;
// elsewhere it prints the closing line only.
func TestCopyProgressTerminal(t *testing.T) {
	nixtest.Need(t)
	if os.Geteuid() != 0 {
		t.Skip("copying into a chroot store needs root")
	}
	home := daemontest.Start(t)
	g := newRemoteGraph(t, "a")
	vars := map[string]string{"NIX_DAEMON_SOCKET_PATH": home.Socket, "TERM": "xterm"}
	getenv := func(k string) string {
		if k == "NIX_CONFIG" {
			return nixtest.Config
		}
		return vars[k]
	}
	to := "local?root=" + t.TempDir()
	pty := ptytest.Open(t)
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: pty.TTY, now: time.Now, dir: g.dir, getenv: getenv}
	if code := run([]string{"copy", "--to", to, g.drvs["top"]}, e); code != 0 {
		t.Fatalf("poison copy on a terminal: exit %d\n%s", code, pty.Output())
	}
	out := pty.Output()
	bar := "\r\x1b[K[4/4 copied ("
	end := "\r\x1b[Kpoison: copied 4 paths"
	if !strings.Contains(out, bar) || !strings.Contains(out, "copying to "+to) || !strings.Contains(out, end) || strings.Index(out, bar) > strings.Index(out, end) {
		t.Errorf("terminal shows %q, want the live line %q, cleared before %q", out, bar, end)
	}

	// Not a terminal: the closing line only.
	to2 := "local?root=" + t.TempDir()
	code, _, stderr := runPoisonRemote(t, g.dir, vars, "copy", "--to", to2, g.drvs["top"])
	if code != 0 || strings.Contains(stderr, "\x1b") || !strings.HasPrefix(stderr, "poison: copied 4 paths") {
		t.Errorf("poison copy to a pipe: exit %d, stderr %q", code, stderr)
	}
}

// TestCopyCommand: poison copy of content-addressed and built paths to an
// ssh-ng host, and its errors.
func TestCopyCommand(t *testing.T) {
	remotetest.Need(t)
	h := remotetest.Start(t, "dst", remotetest.Options{})
	home := daemontest.Start(t)
	g := newRemoteGraph(t, "a")
	vars := map[string]string{"NIX_DAEMON_SOCKET_PATH": home.Socket}
	to := h.URI("ssh-ng")
	sshOpts := strings.Join(h.SSH.SSHOpts(), " ")
	vars["NIX_SSHOPTS"] = sshOpts

	// The .drv closure of top and the source through a symlink.
	link := filepath.Join(g.dir, "src-link")
	if err := os.Symlink(g.src, link); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runPoisonRemote(t, g.dir, vars, "copy", "--to", to, g.drvs["top"], "src-link")
	if code != 0 || !strings.Contains(stderr, "poison: copied 4 paths") {
		t.Fatalf("poison copy: exit %d\n%s", code, stderr)
	}
	for _, p := range []string{g.drvs["a"], g.drvs["b"], g.drvs["top"], g.src} {
		if !h.Valid(t, p) {
			t.Errorf("%s not valid on the host after poison copy", p)
		}
	}

	// A built output is input-addressed and unsigned: refused unless
	// --no-check-sigs, as with nix copy.
	aOut := nixtest.Output(t, "nix-store", "--realise", g.drvs["a"])
	code, _, stderr = runPoisonRemote(t, g.dir, vars, "copy", "--to", to, aOut+"/")
	errs, hints := errorLines(stderr)
	if code != 1 || len(errs) != 1 || !strings.Contains(errs[0], "lacks a valid signature") || len(hints) != 1 || !strings.Contains(hints[0], "--no-check-sigs") {
		t.Errorf("copy of an unsigned output: exit %d, errors %q, hints %q", code, errs, hints)
	}
	code, _, stderr = runPoisonRemote(t, g.dir, vars, "copy", "--no-check-sigs", "--to", to, aOut)
	if code != 0 || !strings.Contains(stderr, "poison: copied 1 paths") || !h.Valid(t, aOut) {
		t.Errorf("copy --no-check-sigs: exit %d\n%s", code, stderr)
	}

	bad := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no destination", []string{"copy", g.src}, 2, "copy: no destination"},
		{"nothing", []string{"copy", "--to", to}, 2, "copy: nothing to copy"},
		{"outside the store", []string{"copy", "--to", to, "/etc/passwd"}, 1, "/etc/passwd is not in the store"},
		{"not a store path", []string{"copy", "--to", to, "/nix/store/short-x"}, 1, "is not a store path"},
		{"not valid", []string{"copy", "--to", to, "/nix/store/00000000000000000000000000000000-nope"}, 1, "is not valid in the source store"},
		{"unreachable", []string{"copy", "--to", "ssh-ng://nobody@127.0.0.1:1", g.src}, 1, "connect to store ssh-ng://nobody@127.0.0.1:1"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runPoisonRemote(t, g.dir, vars, tt.args...)
			errs, hints := errorLines(stderr)
			if code != tt.code || len(errs) != 1 || !strings.Contains(errs[0], tt.want) || len(hints) > 1 {
				t.Errorf("poison %s: exit %d, errors %q, hints %q; want exit %d and one error with %q", strings.Join(tt.args, " "), code, errs, hints, tt.code, tt.want)
			}
		})
	}
}
