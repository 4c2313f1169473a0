package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Operation codes of the NAR transfer operations.
const (
	opAddToStoreNar = 39
)

// narChunk is the size of the frames NARs are sent in, and of the
// buffer they pass through: a NAR is never held whole in memory.
const narChunk = 64 << 10

// QueryPathInfos is QueryPathInfo for many paths, pipelined: all requests
// go out at once and the replies are read in order, so a batch costs no
// round trip per path. infos[i] is nil when paths[i] is not valid.
func (c *Conn) QueryPathInfos(ctx context.Context, paths []string) ([]*PathInfo, error) {
	infos := make([]*PathInfo, len(paths))
	errs, err := c.pipeline(ctx, "QueryPathInfo", len(paths), func(i int) {
		c.writeU64(opQueryPathInfo)
		c.writeString(paths[i])
	}, func(i int) error {
		valid, err := c.readBool()
		if err != nil || !valid {
			return err
		}
		info := &PathInfo{Path: paths[i]}
		if err := c.readPathInfo(info); err != nil {
			return err
		}
		infos[i] = info
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return infos, nil
}

// NarsFromPaths streams the NAR serialisations of valid paths, pipelined:
// every request goes out at once and each NAR is handed to each as a
// reader of exactly infos[i].NarSize bytes, in order. each must not keep
// the reader after it returns; whatever it leaves unread is discarded.
// infos need Path and NarSize (from QueryPathInfo). An error of each ends
// the stream and breaks the connection (the rest of the NARs are still on
// the wire); it is returned as is.
func (c *Conn) NarsFromPaths(ctx context.Context, infos []*PathInfo, each func(i int, r io.Reader) error) error {
	return c.run(ctx, "NarFromPath", func() error {
		werr := make(chan error, 1)
		go func() {
			for _, info := range infos {
				c.writeU64(opNarFromPath)
				c.writeString(info.Path)
			}
			werr <- c.flush()
		}()
		abort := func(err error) error {
			c.rwc.Close() // unblock the writer
			<-werr
			return err
		}
		for i, info := range infos {
			if err := c.processStderr("NarFromPath", nil); err != nil {
				// The daemon closes the connection after an error here.
				return abort(err)
			}
			lr := &io.LimitedReader{R: c.r, N: int64(info.NarSize)}
			if err := each(i, &narReader{lr: lr, c: c, path: info.Path}); err != nil {
				var pe *ProtocolError
				if !errors.As(err, &pe) {
					c.broken = fmt.Errorf("NARs after %s left unread: %w", info.Path, err)
				}
				return abort(err)
			}
			if lr.N > 0 {
				if _, err := io.Copy(io.Discard, &narReader{lr: lr, c: c, path: info.Path}); err != nil {
					return abort(err)
				}
			}
		}
		return <-werr
	})
}

// narReader reads one NAR of a NarFromPath reply; running out of
// connection before its size is a *ProtocolError.
type narReader struct {
	lr   *io.LimitedReader
	c    *Conn
	path string
}

func (r *narReader) Read(p []byte) (int, error) {
	want := r.lr.N
	n, err := r.lr.Read(p)
	if err != nil && err != io.EOF || err == io.EOF && want > 0 && n == 0 {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, r.c.eofError("NarFromPath", fmt.Errorf("NAR of %s: %w", r.path, err))
	}
	return n, err
}

// NarSource is one path to add with AddToStoreNars: what the store is to
// register (Path, Deriver, NarHash, References, NarSize, Sigs, CA,
// RegistrationTime, Ultimate) and its NAR.
type NarSource struct {
	Info *PathInfo
	NAR  io.Reader
}

// AddToStoreNar adds one path from its NAR, which must hold exactly
// info.NarSize bytes. The daemon checks the NAR against info.NarHash and
// info.NarSize; from a client it does not trust it wants a valid
// signature (info.Sigs) or a content address (info.CA) and ignores
// dontCheckSigs. The path's references must be valid in the store.
func (c *Conn) AddToStoreNar(ctx context.Context, info *PathInfo, nar io.Reader, repair, dontCheckSigs bool) error {
	errs, err := c.AddToStoreNars(ctx, 1, func(int) (NarSource, error) { return NarSource{Info: info, NAR: nar}, nil }, repair, dontCheckSigs)
	if err != nil {
		return err
	}
	return errs[0]
}

// AddToStoreNars adds n paths with AddToStoreNar, pipelined: next(i)
// gives the i-th path and its NAR, which is streamed in frames while the
// daemon's replies are read, so the batch costs no round trip per path
// and no NAR is held in memory. The daemon adds them in order: give
// references first. errs[i] is the daemon's error for path i (a path
// whose reference failed fails too). An error of next, a NAR shorter or
// longer than its NarSize, or a transport failure ends the batch, breaks
// the connection and is returned as err.
func (c *Conn) AddToStoreNars(ctx context.Context, n int, next func(i int) (NarSource, error), repair, dontCheckSigs bool) (errs []error, err error) {
	errs = make([]error, n)
	var mu sync.Mutex
	sent := make([]string, n) // the paths, for messages
	err = c.run(ctx, "AddToStoreNar", func() error {
		// The writer reports its failure, then closes the transport so
		// that the reader, waiting for the daemon, stops too.
		werr := make(chan error, 1)
		fail := func(err error) {
			werr <- err
			c.rwc.Close()
		}
		go func() {
			for i := range n {
				src, err := next(i)
				if err == nil && (src.Info == nil || src.NAR == nil) {
					err = fmt.Errorf("path %d of %d: no path info or NAR", i+1, n)
				}
				if err != nil {
					fail(&sourceError{err})
					return
				}
				mu.Lock()
				sent[i] = src.Info.Path
				mu.Unlock()
				c.writeU64(opAddToStoreNar)
				c.writeString(src.Info.Path)
				c.writeValidPathInfo(src.Info)
				c.writeBool(repair)
				c.writeBool(dontCheckSigs)
				if err := c.writeFramedNAR(src.Info, src.NAR); err != nil {
					fail(err)
					return
				}
				if err := c.flush(); err != nil {
					fail(err)
					return
				}
			}
			werr <- nil
		}()
		for i := range n {
			err := c.processStderr("AddToStoreNar", nil)
			var de *Error
			if errors.As(err, &de) {
				mu.Lock()
				errs[i] = fmt.Errorf("add %s: %w", sent[i], err)
				mu.Unlock()
				continue
			}
			if err != nil {
				// Do not wait for the writer: it may be blocked on its
				// source; it ends at its next write to the closed stream.
				c.rwc.Close()
				select {
				case we := <-werr:
					var se *sourceError
					if errors.As(we, &se) {
						c.broken = se.err
						return se.err // the cause beats the broken pipe it led to
					}
				default:
				}
				return err
			}
		}
		if we := <-werr; we != nil {
			c.broken = unwrapSource(we)
			return c.broken
		}
		return nil
	})
	return errs, err
}

// writeValidPathInfo writes the fields of a ValidPathInfo after its path
// (the layout of protocol 1.16 and newer).
func (c *Conn) writeValidPathInfo(info *PathInfo) {
	c.writeString(info.Deriver)
	c.writeString(info.NarHash)
	c.writeStrings(info.References)
	c.writeU64(uint64(max(info.RegistrationTime.Unix(), 0)))
	c.writeU64(info.NarSize)
	c.writeBool(info.Ultimate)
	c.writeStrings(info.Sigs)
	c.writeString(info.CA)
}

// writeFramedNAR copies exactly info.NarSize bytes of nar as a framed
// stream (unpadded frames, then an empty frame). A failing or wrong-sized
// NAR is a *sourceError: the stream cannot be completed.
func (c *Conn) writeFramedNAR(info *PathInfo, nar io.Reader) error {
	if c.narBuf == nil {
		c.narBuf = make([]byte, narChunk)
	}
	buf := c.narBuf
	left := info.NarSize
	for left > 0 {
		k, err := io.ReadFull(nar, buf[:min(uint64(len(buf)), left)])
		if k > 0 {
			c.writeU64(uint64(k))
			if _, werr := c.w.Write(buf[:k]); werr != nil {
				return c.eofError("write", werr)
			}
			left -= uint64(k)
		}
		if err != nil {
			if left > 0 && (err == io.EOF || err == io.ErrUnexpectedEOF) {
				return &sourceError{fmt.Errorf("NAR of %s ended %d bytes before its size %d", info.Path, left, info.NarSize)}
			}
			if left > 0 {
				return &sourceError{fmt.Errorf("read NAR of %s: %w", info.Path, err)}
			}
		}
	}
	// The NAR must end here: a longer one does not match its info.
	var one [1]byte
	if k, _ := nar.Read(one[:]); k > 0 {
		return &sourceError{fmt.Errorf("NAR of %s is longer than its size %d", info.Path, info.NarSize)}
	}
	c.writeU64(0)
	return nil
}

// sourceError is a failure to read what was to be sent (the source store
// or the caller), as opposed to a failure of this connection.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

func unwrapSource(err error) error {
	var se *sourceError
	if errors.As(err, &se) {
		return se.err
	}
	return err
}
