// Package remotetest runs remote Nix hosts for tests, all on this
// machine: a Host is a real OpenSSH server (internal/sshtest) on
// 127.0.0.1 whose key runs a forced command, which serves a chroot store
// of the host's own (store directory /nix/store, files under Root) with
// `nix-daemon --stdio` for ssh-ng:// clients and `nix-store --serve` for
// ssh:// clients, sandbox on. A builder on the host can read the host's
// marker at /marker, so a test sees where a derivation was built.
//
// Hosts need root: the chroot store, its sandbox and the ssh login as the
// user running the test.
package remotetest

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/internal/procs"
	"github.com/poison-nix/poison/internal/sshtest"
)

// Options configure a host.
type Options struct {
	// SystemFeatures is the host's system-features setting; Nix's default
	// when empty.
	SystemFeatures []string
	// NixConf is appended to the host's nix.conf.
	NixConf string
}

// Host is a remote Nix host started by Start.
type Host struct {
	// Name names the host in messages and markers.
	Name string
	// Root is the chroot store's root: its paths are under Root/nix/store.
	Root string
	// Marker is the text of /marker, which builders on this host can read.
	Marker string
	// ConfDir is the host's NIX_CONF_DIR (nix.conf).
	ConfDir string
	// SSH is the host's sshd.
	SSH *sshtest.Server

	commands string // the file the forced command logs the requests to
}

// Need skips t when Nix or OpenSSH is missing (fails under
// POISON_REQUIRE_NIX=1), and skips it when not running as root.
func Need(t testing.TB) {
	t.Helper()
	nixtest.Need(t)
	sshtest.Need(t)
	if os.Geteuid() != 0 {
		t.Skip("remote test hosts need root (chroot stores with a sandbox, ssh login as the test user)")
	}
}

// Start starts host name: its sshd, store and configuration, removed
// when the test ends.
func Start(t testing.TB, name string, opts Options) *Host {
	t.Helper()
	Need(t)
	s := sshtest.Start(t)
	dir := t.TempDir()
	h := &Host{
		Name:     name,
		Root:     filepath.Join(dir, "root"),
		Marker:   "built on " + name,
		ConfDir:  filepath.Join(dir, "etc"),
		SSH:      s,
		commands: filepath.Join(dir, "commands.log"),
	}
	for _, d := range []string{h.Root, h.ConfDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	marker := filepath.Join(dir, "marker")
	write(t, marker, h.Marker+"\n", 0o644)
	conf := fmt.Sprintf(`# remote test host %s
sandbox = true
# Empty: hosts on one machine must not share the nixbld users (Nix kills
# every process of a build user when a build ends).
build-users-group =
# Debian's /bin/sh is linked dynamically.
sandbox-paths = /bin /lib /lib64 /usr /marker=%s
substituters =
`, name, marker)
	if len(opts.SystemFeatures) > 0 {
		conf += "system-features = " + strings.Join(opts.SystemFeatures, " ") + "\n"
	}
	conf += opts.NixConf
	write(t, filepath.Join(h.ConfDir, "nix.conf"), conf, 0o644)

	// The forced command serves the host's store, whatever the client
	// asked to run, and logs what it asked.
	wrapper := filepath.Join(dir, "serve")
	store := "local?root=" + h.Root
	write(t, wrapper, fmt.Sprintf(`#!/bin/sh
echo "$SSH_ORIGINAL_COMMAND" >> %[1]s
export NIX_CONF_DIR=%[2]s
unset NIX_CONFIG NIX_REMOTE
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
case "$SSH_ORIGINAL_COMMAND" in
*nix-daemon*--stdio*) exec nix-daemon --stdio --store %[3]s ;;
*nix-store*--serve*--write*) exec nix-store --serve --write --store %[3]s ;;
*nix-store*--serve*) exec nix-store --serve --store %[3]s ;;
*) echo "remotetest host %[4]s: no such program: $SSH_ORIGINAL_COMMAND" >&2; exit 127 ;;
esac
`, shq(h.commands), shq(h.ConfDir), shq(store), name), 0o755)
	// Open the store once: Nix 2.8 creates a new store's directories and
	// links when it first opens it, and daemons of sessions that start
	// at once on a new store race there ("creating symlink ... File
	// exists"). A build host's store is not new.
	h.Nix(t, "nix-store", "--check-validity", "--print-invalid", "/nix/store/00000000000000000000000000000000-init")
	keys := filepath.Join(s.Dir, "authorized_keys")
	pub, err := os.ReadFile(keys)
	if err != nil {
		t.Fatal(err)
	}
	// sshd runs the command through the user's shell; bash run by sshd
	// reads ~/.bashrc unless it is nested (SHLVL ≥ 1), and this
	// machine's user's rc files cost about 0.1 s a session that a build
	// host would not spend: the host's sessions skip them.
	write(t, keys, fmt.Sprintf("command=%q,environment=\"SHLVL=1\",restrict %s", wrapper, pub), 0o600)
	return h
}

func write(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Store returns the host's store as a local store URI, for Nix tools run
// on this machine ("local?root=ROOT").
func (h *Host) Store() string { return "local?root=" + h.Root }

// URI returns the host's store URI for poison, which takes the port and
// key in the URI: "SCHEME://USER@127.0.0.1:PORT?ssh-key=KEY".
func (h *Host) URI(scheme string) string { return h.SSH.URI(scheme, url.Values{}) }

// SSHOpts returns the ssh options that reach the host without prompts:
// sshtest's options plus its port and key (Nix 2.8 takes the port only
// from NIX_SSHOPTS or an ssh config).
func (h *Host) SSHOpts() []string {
	return append(h.SSH.SSHOpts(), "-p", strconv.Itoa(h.SSH.Port), "-i", h.SSH.Key)
}

// NixSSHOpts returns SSHOpts as a NIX_SSHOPTS value (no option has
// spaces).
func (h *Host) NixSSHOpts() string { return strings.Join(h.SSHOpts(), " ") }

// SSHConfig returns an ssh_config block making alias reach the host, for
// Nix's builders (whose URIs cannot carry a port in Nix 2.8).
func (h *Host) SSHConfig(alias string) string {
	return fmt.Sprintf(`Host %s
  HostName %s
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  IdentityAgent none
  BatchMode yes
  StrictHostKeyChecking yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  ConnectTimeout 5
  LogLevel ERROR
`, alias, h.SSH.Host, h.SSH.Port, h.SSH.User, h.SSH.Key, h.SSH.KnownHosts)
}

// Commands returns the commands clients asked the host to run, oldest
// first ("nix-daemon --stdio", "nix-store --serve --write").
func (h *Host) Commands(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile(h.commands)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// Valid reports whether path is valid in the host's store.
func (h *Host) Valid(t testing.TB, path string) bool {
	t.Helper()
	cmd := exec.Command("nix-store", "--store", h.Store(), "--check-validity", path)
	cmd.Env = h.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		return true
	}
	if _, ok := err.(*exec.ExitError); ok && strings.Contains(stderr.String(), "is not valid") {
		return false
	}
	t.Fatalf("nix-store --store %s --check-validity %s: %v: %s", h.Store(), path, err, stderr.String())
	return false
}

// Read returns the content of a file under a store path of the host.
func (h *Host) Read(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(h.Root, path))
	if err != nil {
		t.Fatalf("host %s: %v", h.Name, err)
	}
	return string(data)
}

// Nix runs a Nix tool on the host's store (with --store added) and
// returns its trimmed stdout.
func (h *Host) Nix(t testing.TB, tool string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool, append([]string{"--store", h.Store()}, args...)...)
	cmd.Env = h.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("host %s: %s %s: %v: %s", h.Name, tool, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func (h *Host) env() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "NIX_CONFIG=") && !strings.HasPrefix(e, "NIX_CONF_DIR=") && !strings.HasPrefix(e, "NIX_REMOTE=") {
			env = append(env, e)
		}
	}
	return append(env, "NIX_CONF_DIR="+h.ConfDir)
}

// Running reports whether a process named comm (as in /proc/PID/comm,
// e.g. "sleep") runs in one of the host's sessions: a build there is
// under way.
func (h *Host) Running(comm string) bool {
	pid := h.sshdPid()
	if pid == 0 {
		return false
	}
	var walk func(p int) bool
	walk = func(p int) bool {
		for _, k := range procs.Children(p) {
			data, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(k), "comm"))
			if strings.TrimSpace(string(data)) == comm || walk(k) {
				return true
			}
		}
		return false
	}
	return walk(pid)
}

func (h *Host) sshdPid() int {
	data, err := os.ReadFile(filepath.Join(h.SSH.Dir, "sshd.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// Drop kills the host's ssh sessions (and the Nix processes serving
// them): a connection lost in the middle. sshd keeps accepting new ones.
func (h *Host) Drop() {
	pid := h.sshdPid()
	if pid == 0 {
		return
	}
	procs.KillDescendants(pid)
}
