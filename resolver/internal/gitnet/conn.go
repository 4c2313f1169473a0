package gitnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// TimeoutError is a network wait that took longer than allowed: the
// connection was not established within the connect timeout, or the
// server sent nothing (or read nothing) for the stall timeout.
type TimeoutError struct {
	// Stall is set for a stall, unset for a connect timeout.
	Stall bool
	// After is the timeout that expired.
	After time.Duration
	// Addr is the host:port waited for.
	Addr string
}

func (e *TimeoutError) Error() string {
	if e.Stall {
		return fmt.Sprintf("the server %s sent no data for %s (stall timeout)", e.Addr, e.After)
	}
	return fmt.Sprintf("could not connect to %s within %s (connect timeout)", e.Addr, e.After)
}

// Timeout reports true: a TimeoutError is a net.Error that timed out.
func (e *TimeoutError) Timeout() bool { return true }

// Temporary reports false (part of net.Error).
func (e *TimeoutError) Temporary() bool { return false }

// watch is the shared state of the connections of one fetch: the bytes
// received (for progress) and the first stall seen. Transports wrap and
// re-wrap a connection's errors (TLS, the SSH multiplexer turns it into
// EOF), so the fetch asks the watch, not the error, whether it stalled.
type watch struct {
	received atomic.Int64
	stalled  atomic.Pointer[TimeoutError]
}

// stalledErr returns the stall seen, or nil.
func (w *watch) stalledErr() error {
	if e := w.stalled.Load(); e != nil {
		return e
	}
	return nil
}

// dialer opens TCP connections with the connect timeout and wraps them
// in stallConns.
type dialer struct {
	connect, stall time.Duration
	w              *watch
}

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.connect, KeepAlive: 15 * time.Second}
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		var ne net.Error
		if ctx.Err() == nil && d.connect > 0 && errors.As(err, &ne) && ne.Timeout() {
			return nil, &TimeoutError{After: d.connect, Addr: addr}
		}
		return nil, err
	}
	sc := &stallConn{Conn: c, stall: d.stall, addr: addr, w: d.w}
	// Cancelling the fetch closes the connection, which ends any read or
	// write blocked on it.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	sc.stop = stop
	return sc, nil
}

// stallConn is a connection on which every read and write must make
// progress within the stall timeout: each call sets a deadline that far
// ahead, so a server that sends headers and then nothing, or accepts a
// connection and never answers, fails after the stall timeout instead of
// hanging.
type stallConn struct {
	net.Conn
	stall time.Duration
	addr  string
	w     *watch
	stop  func() bool
}

func (c *stallConn) Read(p []byte) (int, error) {
	if c.stall > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.stall))
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.w.received.Add(int64(n))
	}
	return n, c.check(err)
}

func (c *stallConn) Write(p []byte) (int, error) {
	if c.stall > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.stall))
	}
	n, err := c.Conn.Write(p)
	return n, c.check(err)
}

func (c *stallConn) Close() error {
	if c.stop != nil {
		c.stop()
	}
	return c.Conn.Close()
}

// check turns a deadline error into a stall TimeoutError and records it.
func (c *stallConn) check(err error) error {
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	te := &TimeoutError{Stall: true, After: c.stall, Addr: c.addr}
	c.w.stalled.CompareAndSwap(nil, te)
	return te
}
