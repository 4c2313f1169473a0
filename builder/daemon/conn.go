// Package daemon is a client for the Nix worker protocol: the protocol
// nix-daemon speaks on its unix socket, over `nix-daemon --stdio` and over
// ssh-ng. It implements the operations poison needs to add rewritten .drv
// files to a store and to build them (see docs/protocol.md):
// handshake with version negotiation, SetOptions, path queries, AddToStore
// of text objects, temporary roots, builds and NarFromPath.
//
// A Conn runs one operation at a time; a Pool hands out connections for
// parallel work. Log lines and activities the daemon sends while it works
// are decoded into Messages and delivered to Options.Log. Errors the daemon
// reports are *Error values carrying its message with colour escapes
// removed; failures of the connection itself are *ProtocolError values.
package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nix-community/go-nix/pkg/wire"
)

// Protocol magic numbers and the version this client speaks.
const (
	workerMagic1 = 0x6e697863
	workerMagic2 = 0x6478696f

	// ClientVersion is the protocol version poison announces: 1.37. It
	// never claims 1.38, whose feature exchange it does not implement.
	ClientVersion = 1<<8 | 37
	// MinDaemonVersion is the oldest daemon protocol accepted: 1.25
	// (AddToStore with a method string).
	MinDaemonVersion = 1<<8 | 25
)

const (
	stderrNext          = 0x6f6c6d67
	stderrRead          = 0x64617461
	stderrWrite         = 0x64617416
	stderrLast          = 0x616c7473
	stderrError         = 0x63787470
	stderrStartActivity = 0x53545254
	stderrStopActivity  = 0x53544f50
	stderrResult        = 0x52534c54
)

// maxString bounds every string read from the daemon (64 MiB): a corrupt
// length must not make the client allocate without limit.
const maxString = 64 << 20

// maxList bounds every list count read from the daemon.
const maxList = 1 << 24

// Trust is what a daemon of protocol 1.35 or newer says about the client.
type Trust int

// Trust values as sent by the daemon.
const (
	TrustUnknown Trust = 0 // daemon older than 1.35, or it did not say
	Trusted      Trust = 1
	NotTrusted   Trust = 2
)

func (t Trust) String() string {
	switch t {
	case Trusted:
		return "trusted"
	case NotTrusted:
		return "not trusted"
	}
	return "unknown"
}

// Options configures a connection.
type Options struct {
	// StoreDir is the daemon's logical store directory, "/nix/store" when
	// empty. It turns the base names in build results into full paths.
	StoreDir string
	// SocketPath is the socket of the "daemon" and "auto" stores,
	// /nix/var/nix/daemon-socket/socket when empty (Nix reads
	// NIX_DAEMON_SOCKET_PATH; callers pass it here).
	SocketPath string
	// DaemonProgram is the nix-daemon run for stdio stores, "nix-daemon"
	// when empty.
	DaemonProgram string
	// SSHProgram is the ssh client for ssh-ng stores, "ssh" when empty.
	SSHProgram string
	// SSHOpts are extra ssh arguments (Nix takes them from NIX_SSHOPTS).
	SSHOpts []string
	// ConnectTimeout bounds dialling and starting a child, 10 s when zero.
	ConnectTimeout time.Duration
	// HandshakeTimeout bounds the handshake and SetOptions, 30 s when zero
	// (ssh may take a while to log in).
	HandshakeTimeout time.Duration
	// Settings are sent with SetOptions right after the handshake;
	// DefaultSettings() when nil.
	Settings *Settings
	// Log receives the messages the daemon sends while it works. It is
	// called from the goroutine running the operation, and from several
	// goroutines at once when a Pool shares these Options. May be nil.
	Log func(Message)
}

func (o *Options) storeDir() string {
	if o.StoreDir == "" {
		return "/nix/store"
	}
	return o.StoreDir
}

func (o *Options) connectTimeout() time.Duration {
	if o.ConnectTimeout <= 0 {
		return 10 * time.Second
	}
	return o.ConnectTimeout
}

func (o *Options) handshakeTimeout() time.Duration {
	if o.HandshakeTimeout <= 0 {
		return 30 * time.Second
	}
	return o.HandshakeTimeout
}

// Conn is one connection to a daemon. Its methods may be called from
// several goroutines but run one at a time. After a *ProtocolError or a
// cancelled context the connection is broken and every later call fails.
type Conn struct {
	mu sync.Mutex

	rwc io.ReadWriteCloser
	r   *bufio.Reader
	w   *bufio.Writer

	// closer ends the transport; for children it also waits for them.
	closer func() error
	// release ends a child's session without waiting for it (Release).
	release   func() error
	closeOnce sync.Once
	closeErr  error
	// diag returns recent diagnostics of a child process (its stderr).
	diag func() string

	daemonVersion uint64
	version       uint64 // negotiated: min(ClientVersion, daemonVersion)
	nixVersion    string
	trust         Trust
	desc          string // the store, for messages

	storeDir string
	log      func(Message)

	broken error

	narBuf []byte // the frame buffer of NAR uploads, reused
}

// Version returns the negotiated protocol version (major<<8 | minor).
func (c *Conn) Version() int { return int(c.version) }

// DaemonVersion returns the protocol version the daemon announced.
func (c *Conn) DaemonVersion() int { return int(c.daemonVersion) }

// NixVersion returns the daemon's Nix version ("2.8.0"), or "" when the
// protocol is older than 1.33.
func (c *Conn) NixVersion() string { return c.nixVersion }

// Trust returns what the daemon said about the client (1.35 and newer).
func (c *Conn) Trust() Trust { return c.trust }

// Store returns a description of the store this connection talks to.
func (c *Conn) Store() string { return c.desc }

// StoreDir returns the logical store directory.
func (c *Conn) StoreDir() string { return c.storeDir }

// Broken reports the error that broke the connection, or nil.
func (c *Conn) Broken() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broken
}

// Close ends the connection (closing stdin of a child ends its session).
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		if c.closer != nil {
			c.closeErr = c.closer()
		} else {
			c.closeErr = c.rwc.Close()
		}
	})
	return c.closeErr
}

// Release ends the connection as Close does, but does not wait for a
// child (`nix-daemon --stdio`, ssh) to exit: its stdin is closed and it is
// reaped in the background, killed if it still runs 3 s later. Use it
// when the work is done and the daemon has acknowledged it: a store can
// take a while to shut down (a daemon checkpoints its database), which
// `nix copy` does not wait for either. Other connections are closed.
func (c *Conn) Release() error {
	c.closeOnce.Do(func() {
		switch {
		case c.release != nil:
			c.closeErr = c.release()
		case c.closer != nil:
			c.closeErr = c.closer()
		default:
			c.closeErr = c.rwc.Close()
		}
	})
	return c.closeErr
}

// NewConn performs the handshake over rwc (any byte stream to a daemon),
// then sends SetOptions. desc names the store in messages. rwc is closed
// when the handshake fails.
func NewConn(ctx context.Context, rwc io.ReadWriteCloser, desc string, opts Options) (*Conn, error) {
	return newConn(ctx, rwc, desc, nil, nil, opts)
}

func newConn(ctx context.Context, rwc io.ReadWriteCloser, desc string, closer func() error, diag func() string, opts Options) (*Conn, error) {
	c := &Conn{
		rwc:      rwc,
		r:        bufio.NewReaderSize(rwc, 64<<10),
		w:        bufio.NewWriterSize(rwc, 64<<10),
		closer:   closer,
		diag:     diag,
		desc:     desc,
		storeDir: opts.storeDir(),
		log:      opts.Log,
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, opts.handshakeTimeout())
	defer cancel()
	err := c.run(ctx, "handshake", func() error {
		if err := c.handshake(); err != nil {
			return err
		}
		s := opts.Settings
		if s == nil {
			d := DefaultSettings()
			s = &d
		}
		return c.setOptions(*s)
	})
	if err != nil {
		c.Close()
		switch {
		case parent.Err() != nil:
			// The caller's deadline or cancellation, not the daemon's silence.
			return nil, &ProtocolError{Store: desc, Op: "handshake", Err: parent.Err()}
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
			return nil, &ProtocolError{Store: desc, Op: "handshake", Err: fmt.Errorf("no answer within %s", opts.handshakeTimeout())}
		}
		return nil, err
	}
	return c, nil
}

func (c *Conn) handshake() error {
	c.writeU64(workerMagic1)
	c.writeU64(ClientVersion)
	if err := c.flush(); err != nil {
		return err
	}
	var magic [8]byte
	n, err := io.ReadFull(c.r, magic[:])
	if err != nil && n == 0 {
		return c.eofError("handshake", err)
	}
	if err != nil || leU64(magic[:]) != workerMagic2 {
		junk := string(magic[:n])
		if b := c.r.Buffered(); b > 0 {
			more, _ := c.r.Peek(min(b, 200))
			junk += string(more)
		}
		return &ProtocolError{Store: c.desc, Op: "handshake", Err: fmt.Errorf("protocol mismatch, got '%s'", printable(strings.TrimRight(junk, "\r\n")))}
	}
	dv, err := c.readU64()
	if err != nil {
		return err
	}
	c.daemonVersion = dv
	if dv>>8 != 1 {
		return &ProtocolError{Store: c.desc, Op: "handshake", Err: fmt.Errorf("unsupported protocol major version %d", dv>>8)}
	}
	if dv < MinDaemonVersion {
		return &ProtocolError{Store: c.desc, Op: "handshake", Err: fmt.Errorf("daemon speaks protocol %s; poison needs %s or newer (Nix 2.4 or newer)", formatVersion(dv), formatVersion(MinDaemonVersion))}
	}
	c.version = min(uint64(ClientVersion), dv)
	// Version ≥ 1.14: CPU affinity "no"; ≥ 1.11: reserveSpace (obsolete).
	c.writeU64(0)
	c.writeU64(0)
	if err := c.flush(); err != nil {
		return err
	}
	if c.minor() >= 33 {
		if c.nixVersion, err = c.readString(); err != nil {
			return err
		}
	}
	if c.minor() >= 35 {
		t, err := c.readU64()
		if err != nil {
			return err
		}
		c.trust = Trust(t)
	}
	return c.processStderr("handshake", nil)
}

func (c *Conn) minor() uint64 { return c.version & 0xff }

// run executes one operation: it serialises access, refuses a broken
// connection, closes the transport when ctx ends, and marks the
// connection broken after a transport failure.
func (c *Conn) run(ctx context.Context, op string, f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return &ProtocolError{Store: c.desc, Op: op, Err: fmt.Errorf("connection unusable after an earlier failure: %w", c.broken)}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var cancelled bool
	var cmu sync.Mutex
	stop := context.AfterFunc(ctx, func() {
		cmu.Lock()
		cancelled = true
		cmu.Unlock()
		c.rwc.Close()
	})
	err := f()
	// stop fails when the context ended and the close is under way, even
	// if it has not marked cancelled yet: the transport is gone either way.
	stopped := stop()
	cmu.Lock()
	wasCancelled := cancelled || !stopped
	cmu.Unlock()
	if wasCancelled {
		c.broken = ctx.Err()
		return ctx.Err()
	}
	var pe *ProtocolError
	if errors.As(err, &pe) {
		if pe.Op == "read" || pe.Op == "write" {
			pe.Op = op
		}
		c.broken = err
	}
	return err
}

// processStderr reads daemon messages up to STDERR_LAST. A STDERR_ERROR is
// returned as *Error; transport failures as *ProtocolError.
func (c *Conn) processStderr(op string, _ any) error {
	for {
		code, err := c.readU64()
		if err != nil {
			return err
		}
		switch code {
		case stderrLast:
			return nil
		case stderrError:
			return c.readError(op)
		case stderrNext:
			s, err := c.readString()
			if err != nil {
				return err
			}
			c.emit(Message{Kind: LogLine, Text: strings.TrimSuffix(s, "\n")})
		case stderrStartActivity:
			var m Message
			m.Kind = StartActivity
			var lvl, typ uint64
			if m.ID, err = c.readU64(); err == nil {
				if lvl, err = c.readU64(); err == nil {
					if typ, err = c.readU64(); err == nil {
						if m.Text, err = c.readString(); err == nil {
							if m.Fields, err = c.readFields(); err == nil {
								m.Parent, err = c.readU64()
							}
						}
					}
				}
			}
			if err != nil {
				return err
			}
			m.Level, m.Activity = Verbosity(lvl), ActivityType(typ)
			c.emit(m)
		case stderrStopActivity:
			id, err := c.readU64()
			if err != nil {
				return err
			}
			c.emit(Message{Kind: StopActivity, ID: id})
		case stderrResult:
			var m Message
			m.Kind = Result
			var typ uint64
			if m.ID, err = c.readU64(); err == nil {
				if typ, err = c.readU64(); err == nil {
					m.Fields, err = c.readFields()
				}
			}
			if err != nil {
				return err
			}
			m.Result = ResultType(typ)
			c.emit(m)
		case stderrWrite:
			if _, err := c.readString(); err != nil {
				return err
			}
		case stderrRead:
			return &ProtocolError{Store: c.desc, Op: op, Err: errors.New("daemon asked for data (STDERR_READ), which this client never sends")}
		default:
			return &ProtocolError{Store: c.desc, Op: op, Err: fmt.Errorf("unknown message code %#x from the daemon", code)}
		}
	}
}

func (c *Conn) emit(m Message) {
	if c.log != nil {
		c.log(m)
	}
}

func (c *Conn) readFields() ([]Field, error) {
	n, err := c.readCount()
	if err != nil {
		return nil, err
	}
	fs := make([]Field, 0, min(n, 64))
	for range n {
		kind, err := c.readU64()
		if err != nil {
			return nil, err
		}
		switch kind {
		case 0:
			v, err := c.readU64()
			if err != nil {
				return nil, err
			}
			fs = append(fs, Field{Int: v})
		case 1:
			s, err := c.readString()
			if err != nil {
				return nil, err
			}
			fs = append(fs, Field{String: s, IsString: true})
		default:
			return nil, &ProtocolError{Store: c.desc, Op: "logger", Err: fmt.Errorf("unknown field kind %d", kind)}
		}
	}
	return fs, nil
}

func (c *Conn) readError(op string) error {
	e := &Error{Op: op}
	if c.minor() >= 26 {
		if _, err := c.readString(); err != nil { // type: "Error"
			return err
		}
		if _, err := c.readU64(); err != nil { // level
			return err
		}
		if _, err := c.readString(); err != nil { // name (unused)
			return err
		}
		msg, err := c.readString()
		if err != nil {
			return err
		}
		e.Message = cleanMessage(msg)
		havePos, err := c.readU64()
		if err != nil {
			return err
		}
		if havePos != 0 {
			return &ProtocolError{Store: c.desc, Op: op, Err: errors.New("error with a position, which daemons never send")}
		}
		n, err := c.readCount()
		if err != nil {
			return err
		}
		for range n {
			if havePos, err = c.readU64(); err != nil {
				return err
			}
			if havePos != 0 {
				return &ProtocolError{Store: c.desc, Op: op, Err: errors.New("error trace with a position, which daemons never send")}
			}
			t, err := c.readString()
			if err != nil {
				return err
			}
			e.Traces = append(e.Traces, cleanMessage(t))
		}
		return e
	}
	msg, err := c.readString()
	if err != nil {
		return err
	}
	e.Message = cleanMessage(msg)
	st, err := c.readU64()
	if err != nil {
		return err
	}
	e.ExitStatus = int(st)
	return e
}

// Low-level wire helpers. Writers buffer; errors surface at flush.

func (c *Conn) writeU64(v uint64) { _ = wire.WriteUint64(c.w, v) }

func (c *Conn) writeString(s string) { _ = wire.WriteString(c.w, s) }

func (c *Conn) writeStrings(ss []string) {
	c.writeU64(uint64(len(ss)))
	for _, s := range ss {
		c.writeString(s)
	}
}

func (c *Conn) writeBool(b bool) {
	if b {
		c.writeU64(1)
	} else {
		c.writeU64(0)
	}
}

func (c *Conn) flush() error {
	if err := c.w.Flush(); err != nil {
		return c.eofError("write", err)
	}
	return nil
}

func (c *Conn) readU64() (uint64, error) {
	v, err := wire.ReadUint64(c.r)
	if err != nil {
		return 0, c.eofError("read", err)
	}
	return v, nil
}

func (c *Conn) readBool() (bool, error) {
	v, err := c.readU64()
	return v != 0, err
}

func (c *Conn) readCount() (int, error) {
	n, err := c.readU64()
	if err != nil {
		return 0, err
	}
	if n > maxList {
		return 0, &ProtocolError{Store: c.desc, Op: "read", Err: fmt.Errorf("list of %d elements exceeds the limit", n)}
	}
	return int(n), nil
}

func (c *Conn) readString() (string, error) {
	s, err := wire.ReadString(c.r, maxString)
	if err != nil {
		return "", c.eofError("read", err)
	}
	return s, nil
}

func (c *Conn) readStrings() ([]string, error) {
	n, err := c.readCount()
	if err != nil {
		return nil, err
	}
	ss := make([]string, 0, min(n, 1024))
	for range n {
		s, err := c.readString()
		if err != nil {
			return nil, err
		}
		ss = append(ss, s)
	}
	return ss, nil
}

// eofError wraps a transport error, adding the child's diagnostics.
func (c *Conn) eofError(op string, err error) error {
	var pe *ProtocolError
	if errors.As(err, &pe) {
		return err
	}
	// A daemon that dies with bytes unread resets the connection instead
	// of closing it (ECONNRESET on read, EPIPE on write): the same event.
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		err = errors.New("connection closed by the daemon")
	}
	if c.diag != nil {
		if d := c.diag(); d != "" {
			err = fmt.Errorf("%w (its stderr: %s)", err, d)
		}
	}
	return &ProtocolError{Store: c.desc, Op: op, Err: err}
}

func leU64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// printable replaces control bytes so junk can be shown on one line.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r < 0x20 || r == 0x7f || r == 0xfffd:
			fmt.Fprintf(&b, `\x%02x`, r&0xff)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
