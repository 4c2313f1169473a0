package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultSocketPath is the socket of the system nix-daemon.
const DefaultSocketPath = "/nix/var/nix/daemon-socket/socket"

// Dial connects to the store named by uri, performs the handshake and
// sends SetOptions. Store URIs follow Nix:
//
//   - "daemon", "" or "unix://": the daemon socket (Options.SocketPath)
//   - "unix:///path/to/socket": that socket
//   - "auto": the daemon socket when a daemon listens; otherwise, when
//     running as root, a `nix-daemon --stdio` child on the local store
//   - "ssh-ng://[user@]host[:port][?remote-program=P&remote-store=S&ssh-key=K]":
//     `ssh … P --stdio [--store S]` through Options.SSHProgram
//   - anything else ("local", "local?root=/dir", "/dir"): a
//     `nix-daemon --stdio --store URI` child, which needs the permissions
//     to open that store
func Dial(ctx context.Context, uri string, opts Options) (*Conn, error) {
	switch {
	case uri == "" || uri == "daemon" || uri == "unix://":
		return dialUnix(ctx, opts.socketPath(), uri, opts)
	case strings.HasPrefix(uri, "unix://"):
		u, err := url.Parse(uri)
		if err != nil || u.Path == "" {
			return nil, fmt.Errorf("store URI %q: want unix:///path/to/socket", uri)
		}
		return dialUnix(ctx, u.Path, uri, opts)
	case uri == "auto":
		c, err := dialUnix(ctx, opts.socketPath(), uri, opts)
		if err == nil || os.Geteuid() != 0 || !noDaemon(err) {
			return c, err
		}
		return dialStdio(ctx, "", "auto (nix-daemon --stdio)", opts)
	case strings.HasPrefix(uri, "ssh-ng://"):
		return dialSSH(ctx, uri, opts)
	case strings.Contains(uri, "://") && !strings.HasPrefix(uri, "local"):
		return nil, fmt.Errorf("store URI %q: unsupported scheme; use daemon, unix://PATH, auto, ssh-ng://HOST or a local store", uri)
	default:
		return dialStdio(ctx, uri, uri, opts)
	}
}

func (o *Options) socketPath() string {
	if o.SocketPath != "" {
		return o.SocketPath
	}
	return DefaultSocketPath
}

// noDaemon reports whether a dial error means nobody listens.
func noDaemon(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

func dialUnix(ctx context.Context, path, uri string, opts Options) (*Conn, error) {
	desc := path
	if uri != "" && uri != "daemon" && !strings.HasPrefix(uri, "unix://") {
		desc = uri + ": " + path
	}
	d := net.Dialer{Timeout: opts.connectTimeout()}
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		var hint string
		switch {
		case errors.Is(err, syscall.ENOENT):
			hint = "no nix-daemon socket there; is the daemon running?"
		case errors.Is(err, syscall.ECONNREFUSED):
			hint = "nobody listens on the socket; is the daemon running?"
		case errors.Is(err, syscall.EACCES):
			hint = "permission denied; is the user in the group allowed to reach the socket (nix-users)?"
		}
		if hint != "" {
			err = &dialError{err: err, hint: hint}
		}
		return nil, &ProtocolError{Store: desc, Op: "connect", Err: err}
	}
	return newConn(ctx, nc, desc, nil, nil, opts)
}

type dialError struct {
	err  error
	hint string
}

func (e *dialError) Error() string { return e.hint + " (" + e.err.Error() + ")" }
func (e *dialError) Unwrap() error { return e.err }

func dialStdio(ctx context.Context, store, desc string, opts Options) (*Conn, error) {
	prog := opts.DaemonProgram
	if prog == "" {
		prog = "nix-daemon"
	}
	args := []string{"--stdio"}
	if store != "" {
		args = append(args, "--store", store)
	}
	return dialChild(ctx, prog, args, desc, opts)
}

func dialSSH(ctx context.Context, uri string, opts Options) (*Conn, error) {
	prog, args, err := SSHCommand(uri, opts)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(uri) // SSHCommand parsed it
	q := u.Query()
	remote := q.Get("remote-program")
	if remote == "" {
		remote = "nix-daemon"
	}
	args = append(args, "--", remote, "--stdio")
	if s := q.Get("remote-store"); s != "" {
		args = append(args, "--store", shellQuote(s))
	}
	return dialChild(ctx, prog, args, uri, opts)
}

// SSHCommand returns the ssh program and its arguments that log in to the
// host of an ssh-ng:// store URI, up to and including the destination
// ([user@]host), without the remote command: Options.SSHOpts, keep-alives,
// the port and the ssh-key= of the URI. Sessions to the store add
// "-- nix-daemon --stdio"; a caller may add ssh options before the
// destination instead (a shared master connection).
func SSHCommand(uri string, opts Options) (prog string, args []string, err error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "ssh-ng" || u.Host == "" || u.Path != "" {
		return "", nil, fmt.Errorf("store URI %q: want ssh-ng://[user@]host[:port][?remote-program=…]", uri)
	}
	q := u.Query()
	prog = opts.SSHProgram
	if prog == "" {
		prog = "ssh"
	}
	args = []string{"-x", "-a"}
	args = append(args, opts.SSHOpts...)
	// Keep-alives after the caller's options (ssh takes the first value of
	// an option): a host that vanishes ends the session within a minute
	// instead of leaving a copy or build waiting for ever.
	args = append(args, "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4")
	if p := u.Port(); p != "" {
		args = append(args, "-p", p)
	}
	if k := q.Get("ssh-key"); k != "" {
		args = append(args, "-i", k)
	}
	host := u.Hostname()
	if strings.HasPrefix(host, "-") {
		return "", nil, fmt.Errorf("store URI %q: host must not start with '-'", uri)
	}
	if u.User != nil {
		host = u.User.Username() + "@" + host
	}
	return prog, append(args, host), nil
}

// shellQuote quotes s for the remote shell ssh runs the command with.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// dialChild starts prog and speaks the protocol over its stdin/stdout.
// Its stderr is kept (the last lines) for error messages.
func dialChild(ctx context.Context, prog string, args []string, desc string, opts Options) (*Conn, error) {
	cmd := exec.Command(prog, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, &ProtocolError{Store: desc, Op: "start", Err: err}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, &ProtocolError{Store: desc, Op: "start", Err: err}
	}
	tail := &tailBuffer{max: 2048}
	cmd.Stderr = tail
	if err := cmd.Start(); err != nil {
		return nil, &ProtocolError{Store: desc, Op: "start", Err: err}
	}
	ch := &child{cmd: cmd, stdin: stdin, stdout: stdout, done: make(chan struct{})}
	go func() {
		ch.waitErr = cmd.Wait()
		close(ch.done)
	}()
	diag := func() string {
		// Give a dying child a moment to finish its message.
		select {
		case <-ch.done:
		case <-time.After(200 * time.Millisecond):
		}
		return tail.String()
	}
	c, err := newConn(ctx, ch, desc, ch.close, diag, opts)
	if err == nil {
		c.release = ch.release
	}
	return c, err
}

type child struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  io.ReadCloser
	done    chan struct{}
	waitErr error
	once    sync.Once
}

func (c *child) Read(p []byte) (int, error)  { return c.stdout.Read(p) }
func (c *child) Write(p []byte) (int, error) { return c.stdin.Write(p) }

// Close is the abrupt close used on cancellation: kill the child.
func (c *child) Close() error {
	c.once.Do(func() {
		c.stdin.Close()
		c.cmd.Process.Kill()
	})
	return nil
}

// close ends the session cleanly: close stdin, wait a little, then kill.
func (c *child) close() error {
	c.stdin.Close()
	select {
	case <-c.done:
		return nil
	case <-time.After(3 * time.Second):
		c.Close()
		<-c.done
		return nil
	}
}

// release ends the session without waiting: stdin is closed, the child
// is reaped by its waiting goroutine and killed if it runs 3 s later.
func (c *child) release() error {
	c.stdin.Close()
	go func() {
		select {
		case <-c.done:
		case <-time.After(3 * time.Second):
			c.Close()
		}
	}()
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(StripANSI(string(t.buf)))
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
}
