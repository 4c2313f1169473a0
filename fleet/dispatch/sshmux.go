package dispatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/poison-nix/poison/builder/daemon"
)

// sshMaster shares one ssh connection among the slots of an ssh-ng
// machine (OpenSSH connection multiplexing): the first slot's login
// starts a master (`ssh -M -N`, a child of ours), the others open their
// `nix-daemon --stdio` sessions as channels of it, without a login of
// their own. Each slot still has its own session and remote daemon.
//
// The master is an optimisation only: the slots' ssh runs with
// ControlMaster=no, so when the master is not up (it failed to start, or
// the machine dropped it) a slot logs in on its own, as it would without
// sharing. A master that ended after coming up (the machine dropped the
// connection) is started again by the next slot that dials; one that
// never came up is not tried again in the run. A master whose login
// did not end within the connect timeout (a machine that does not
// answer) fails the slots waiting for it, so that the machine is left
// out after one timeout, not one for the master and one more for a
// slot's own login.
type sshMaster struct {
	uri  string
	prog string
	args []string // up to the destination, master options included
	path string   // the control socket
	wait time.Duration

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// off: a master failed to log in; the slots log in on their own for
	// the rest of the run.
	off bool
	// timedOut: a master's login did not end in time; every slot fails
	// with it.
	timedOut error
}

// maxSocketPath bounds the control socket's path: a unix socket path has
// at most 107 bytes, and ssh binds a temporary name 17 bytes longer
// before renaming it.
const maxSocketPath = 107 - 17

// newSSHMaster prepares sharing for uri with the connection options o
// and returns the options the slots dial with; nil when uri is not
// ssh-ng://, the ssh program is not OpenSSH's, the caller's ssh options
// already configure multiplexing, or the socket path would be too long.
func newSSHMaster(uri string, o daemon.Options, path string) (*sshMaster, []string) {
	if !strings.HasPrefix(uri, "ssh-ng://") || (o.SSHProgram != "" && o.SSHProgram != "ssh") || len(path) > maxSocketPath {
		return nil, nil
	}
	for _, a := range o.SSHOpts {
		if strings.Contains(strings.ToLower(a), "control") {
			return nil, nil
		}
	}
	prog, args, err := daemon.SSHCommand(uri, o)
	if err != nil {
		return nil, nil
	}
	dest := args[len(args)-1]
	args = append(args[:len(args)-1:len(args)-1], "-M", "-N", "-o", "ControlPath="+path, "-o", "ControlPersist=no", dest)
	wait := o.ConnectTimeout
	if wait <= 0 {
		wait = 10 * time.Second
	}
	m := &sshMaster{uri: uri, prog: prog, args: args, path: path, wait: wait}
	return m, []string{"-o", "ControlMaster=no", "-o", "ControlPath=" + path}
}

// ensure starts the master when it is not running and waits until it
// accepts sessions, the login failed, or the wait is over. Only the wait
// running out is returned (a *daemon.ProtocolError, as a slot's own
// login that timed out would be): after a failed login the slot logs in
// on its own and reports what fails.
func (m *sshMaster) ensure(ctx context.Context) error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.timedOut != nil {
		return m.timedOut
	}
	if m.off {
		return nil
	}
	if m.cmd != nil {
		select {
		case <-m.done:
			m.cmd = nil
		default:
			return nil // running
		}
	}
	cmd := exec.Command(m.prog, m.args...)
	// No terminal: ssh must not ask anything. The master ends with us
	// (even when poison is killed), and a Ctrl-C for poison's process
	// group does not reach it first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done
	deadline := time.NewTimer(m.wait)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(m.path); err == nil {
			return nil
		}
		select {
		case <-done:
			// The login failed: the slot's own login says why.
			m.off = true
			return nil
		case <-ctx.Done():
			m.stopLocked()
			return nil
		case <-deadline.C:
			m.stopLocked()
			m.off = true
			m.timedOut = &daemon.ProtocolError{Store: m.uri, Op: "connect", Err: fmt.Errorf("no ssh login within %s", m.wait)}
			return m.timedOut
		case <-tick.C:
		}
	}
}

// close stops the master; the sessions through it end with it.
func (m *sshMaster) close() error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopLocked()
	return nil
}

func (m *sshMaster) stopLocked() {
	if m.cmd == nil {
		return
	}
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		m.cmd.Process.Kill()
	}
	select {
	case <-m.done:
	case <-time.After(3 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}
