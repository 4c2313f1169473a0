package daemon

import (
	"context"
	"errors"
	"sync"
)

// Pool hands out up to Size connections to one store for parallel work.
// Connections are dialled on demand and reused; one that saw an error is
// closed instead of reused, since the daemon may have dropped it.
type Pool struct {
	uri  string
	opts Options
	sem  chan struct{}

	mu     sync.Mutex
	idle   []*Conn
	closed bool
}

// NewPool returns a pool of at most size connections (at least 1) to uri.
func NewPool(uri string, opts Options, size int) *Pool {
	return &Pool{uri: uri, opts: opts, sem: make(chan struct{}, max(size, 1))}
}

// ErrPoolClosed is returned by Get after Close.
var ErrPoolClosed = errors.New("daemon connection pool closed")

// Get returns an idle connection or dials a new one, waiting while Size
// connections are in use. Give it back with Put.
func (p *Pool) Get(ctx context.Context) (*Conn, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return nil, ErrPoolClosed
	}
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	c, err := Dial(ctx, p.uri, p.opts)
	if err != nil {
		<-p.sem
		return nil, err
	}
	return c, nil
}

// Put returns c to the pool. When failed is true (the last operation on
// c returned an error) or c is broken, c is closed instead.
func (p *Pool) Put(c *Conn, failed bool) {
	defer func() { <-p.sem }()
	p.mu.Lock()
	if failed || p.closed || c.Broken() != nil {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// Do runs f with a connection from the pool.
func (p *Pool) Do(ctx context.Context, f func(*Conn) error) error {
	c, err := p.Get(ctx)
	if err != nil {
		return err
	}
	err = f(c)
	p.Put(c, err != nil)
	return err
}

// Close closes the idle connections; connections in use are closed when
// they are put back.
func (p *Pool) Close() error {
	return p.close((*Conn).Close)
}

// Release is Close without waiting for children to exit (Conn.Release):
// for the end of work the daemons have acknowledged.
func (p *Pool) Release() error {
	return p.close((*Conn).Release)
}

func (p *Pool) close(end func(*Conn) error) error {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	var errs []error
	for _, c := range idle {
		errs = append(errs, end(c))
	}
	return errors.Join(errs...)
}
