// Package sshtest runs a real OpenSSH server for tests: an sshd of its own
// on 127.0.0.1 and a free port, with fresh host and client keys in the
// test's temporary directory, killed when the test ends. Tests reach it
// with the system ssh client and the options Server.SSHOpts returns.
//
// sshd lets in the user running the test (root on the project's machines)
// with the client key only; it reads no file outside the temporary
// directory but its own binary, and the system sshd is not involved.
package sshtest

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/internal/procs"
)

// SSHD is the OpenSSH server binary. sshd must be run by absolute path
// (it re-executes itself for every connection).
const SSHD = "/usr/sbin/sshd"

// privsepDir is the privilege-separation directory sshd needs when it
// runs as root (Debian creates it only when the ssh service starts).
const privsepDir = "/run/sshd"

// Server is an sshd started by Start.
type Server struct {
	// User is the account sshd lets in: the user running the test.
	User string
	// Host is the address sshd listens on, 127.0.0.1.
	Host string
	// Port is sshd's TCP port.
	Port int
	// Key is the private client key that sshd accepts.
	Key string
	// KnownHosts is a known_hosts file holding sshd's host key.
	KnownHosts string
	// Dir is the temporary directory of the keys, config and log.
	Dir string

	log  string // sshd's stderr (-e)
	cmd  *exec.Cmd
	done chan struct{}
}

// Available reports whether sshd, ssh and ssh-keygen are installed.
func Available() bool {
	if fi, err := os.Stat(SSHD); err != nil || fi.Mode()&0o111 == 0 {
		return false
	}
	for _, p := range []string{"ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(p); err != nil {
			return false
		}
	}
	return true
}

// Need skips t when OpenSSH is not installed, or fails it when
// nixtest.Required (POISON_REQUIRE_NIX=1, as in CI).
func Need(t testing.TB) {
	t.Helper()
	if Available() {
		return
	}
	if nixtest.Required() {
		t.Fatal("OpenSSH is required (POISON_REQUIRE_NIX=1) but " + SSHD + ", ssh or ssh-keygen is missing; scripts/setup.sh installs them")
	}
	t.Skip("OpenSSH is not installed (apt-get install openssh-server openssh-client); set POISON_REQUIRE_NIX=1 to make this a failure")
}

// Start generates the keys, starts sshd on 127.0.0.1 and a free port and
// waits until it greets connections. It skips or fails like Need when
// OpenSSH is missing. sshd and its connection processes are killed when
// the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	Need(t)
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshtest: current user: %v", err)
	}
	dir := t.TempDir()
	s := &Server{
		User:       u.Username,
		Host:       "127.0.0.1",
		Key:        filepath.Join(dir, "id_ed25519"),
		KnownHosts: filepath.Join(dir, "known_hosts"),
		Dir:        dir,
		log:        filepath.Join(dir, "sshd.log"),
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	keygen(t, hostKey)
	keygen(t, s.Key)
	pub, err := os.ReadFile(s.Key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.MkdirAll(privsepDir, 0o755); err != nil {
			t.Fatalf("sshtest: privilege separation directory: %v", err)
		}
	}

	// The free port may be taken between probing and sshd's bind: retry.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("sshtest: no free port: %v", err)
		}
		s.Port = port
		known := fmt.Sprintf("[%s]:%d %s", s.Host, port, hostPub)
		if err := os.WriteFile(s.KnownHosts, []byte(known), 0o600); err != nil {
			t.Fatal(err)
		}
		config := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(config, []byte(s.config(hostKey)), 0o600); err != nil {
			t.Fatal(err)
		}
		if lastErr = s.start(t, config); lastErr == nil {
			return s
		}
	}
	t.Fatalf("sshtest: %v", lastErr)
	return nil
}

// config returns the sshd_config text: public-key logins of s.User only,
// nothing read from /etc/ssh, no DNS lookups.
func (s *Server) config(hostKey string) string {
	return fmt.Sprintf(`ListenAddress %s:%d
HostKey %s
PidFile %s
AuthorizedKeysFile %s
AllowUsers %s
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PermitUserEnvironment SHLVL
AllowAgentForwarding no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
PrintLastLog no
LogLevel VERBOSE
`, s.Host, s.Port, hostKey, filepath.Join(s.Dir, "sshd.pid"), filepath.Join(s.Dir, "authorized_keys"), s.User)
}

// start runs sshd with config and waits for its greeting. On failure sshd
// is stopped and the error carries its log.
func (s *Server) start(t testing.TB, config string) error {
	logf, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(SSHD, "-D", "-e", "-f", config)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sshd: %v", err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	done := s.done
	go func() { cmd.Wait(); close(done) }()

	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("sshd exited before listening on %s: %s", addr, s.Log())
		default:
		}
		if greets(addr) {
			t.Cleanup(s.kill)
			return nil
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("sshd did not greet on %s within 10 s: %s", addr, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// greets reports whether an SSH server answers on addr with its banner.
func greets(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

// kill stops the connection processes sshd forked (they run in sessions
// of their own), then sshd, and waits for it.
func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pid := s.cmd.Process.Pid
	for _, k := range procs.Children(pid) {
		syscall.Kill(k, syscall.SIGTERM)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	<-s.done
}

// Log returns what sshd logged so far, for failure messages.
func (s *Server) Log() string {
	data, _ := os.ReadFile(s.log)
	return strings.TrimSpace(string(data))
}

// Addr returns "127.0.0.1:PORT".
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// URI returns "SCHEME://USER@127.0.0.1:PORT?ssh-key=KEY", with the extra
// query parameters of q (remote-program, remote-store, …) added.
func (s *Server) URI(scheme string, q url.Values) string {
	v := url.Values{"ssh-key": {s.Key}}
	for k, vs := range q {
		v[k] = vs
	}
	u := url.URL{Scheme: scheme, User: url.User(s.User), Host: s.Addr(), RawQuery: v.Encode()}
	return u.String()
}

// SSHOpts returns the ssh client options for reaching s without prompts
// or user configuration: no ssh_config, the known_hosts file with the
// host key (checked strictly), batch mode, and only the identities named
// with -i. The key itself is not included (pass -i Key or ssh-key=).
func (s *Server) SSHOpts() []string {
	return []string{
		"-F", "/dev/null",
		"-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + s.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=5",
		"-o", "LogLevel=ERROR",
	}
}

// NewKey generates another client key pair in s.Dir, one sshd does not
// accept, and returns the private key's path.
func (s *Server) NewKey(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(s.Dir, name)
	keygen(t, p)
	return p
}

// keygen writes an ed25519 key pair without passphrase to path and
// path.pub.
func keygen(t testing.TB, path string) {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "poison-sshtest", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen %s: %v: %s", path, err, out)
	}
}

// freePort returns a TCP port on 127.0.0.1 nobody listens on right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
