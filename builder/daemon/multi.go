package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

const opAddMultipleToStore = 44

// MultipleMinVersion is the first protocol version with AddMultipleToStore
// (1.32, Nix 2.4).
const MultipleMinVersion = 1<<8 | 32

// ErrNoMultiple is returned by AddMultipleToStore when the daemon's
// protocol is older than 1.32: add the paths one by one instead.
var ErrNoMultiple = errors.New("the daemon does not speak AddMultipleToStore (protocol 1.32)")

// AddMultipleToStore adds n store paths in one request: next(i) returns
// the i-th path's info and a reader of exactly info.NarSize bytes of its
// NAR serialisation, called in order while the request is streamed, so
// the NARs need not all be in memory. The daemon adds the paths one after
// another, so a path may reference earlier ones; each added path is a
// temporary root of this connection.
//
// Info.Path, NarHash (any format Nix parses: hex, nix32 or SRI), NarSize,
// References and CA (or Sigs) are sent; RegistrationTime and Ultimate are
// ignored by the daemon. It checks the NAR against NarHash and NarSize, a
// CA field against the content and the path against the CA field (Nix
// 2.8 and 2.26, whatever require-sigs says), and the output paths of
// every .drv. A path without a CA field needs a valid signature unless a
// trusted client sets dontCheckSigs. repair and dontCheckSigs need a
// trusted client; the daemon ignores them otherwise.
//
// A refusal of one path is an *Error and ends the request: the paths
// before it stay added, the ones after it are not, and the connection
// stays usable. An error from next or a reader breaks the connection,
// since the request cannot be ended cleanly mid-stream.
func (c *Conn) AddMultipleToStore(ctx context.Context, n int, next func(i int) (PathInfo, io.Reader, error), repair, dontCheckSigs bool) error {
	if c.version < MultipleMinVersion {
		return ErrNoMultiple
	}
	return c.run(ctx, "AddMultipleToStore", func() error {
		c.writeU64(opAddMultipleToStore)
		c.writeBool(repair)
		c.writeBool(dontCheckSigs)
		// The daemon enters the stderr phase before it reads the framed
		// stream: stream from a goroutine while this one drains messages.
		werr := make(chan error, 1)
		go func() {
			err := c.writeMultiple(n, next)
			var pe *ProtocolError
			if err != nil && !errors.As(err, &pe) {
				// next or a reader failed: the daemon holds half a
				// request and waits for the rest. Only closing the
				// connection ends it (and unblocks the reader below).
				c.rwc.Close()
			}
			werr <- err
		}()
		err := c.processStderr("AddMultipleToStore", nil)
		var pe *ProtocolError
		if errors.As(err, &pe) {
			c.rwc.Close() // unblock the writer
		}
		if we := <-werr; we != nil {
			var wpe *ProtocolError
			if !errors.As(we, &wpe) {
				c.broken = we
				return we
			}
			if err == nil {
				err = we
			}
		}
		return err
	})
}

// writeMultiple writes the framed stream of AddMultipleToStore.
func (c *Conn) writeMultiple(n int, next func(i int) (PathInfo, io.Reader, error)) error {
	fw := &frameWriter{w: c.w, buf: make([]byte, 0, frameSize)}
	fw.u64(uint64(n))
	for i := range n {
		info, nar, err := next(i)
		if err != nil {
			return err
		}
		fw.str(info.Path)
		fw.str(info.Deriver)
		fw.str(info.NarHash)
		fw.u64(uint64(len(info.References)))
		for _, r := range info.References {
			fw.str(r)
		}
		var t uint64
		if !info.RegistrationTime.IsZero() {
			t = uint64(info.RegistrationTime.Unix())
		}
		fw.u64(t)
		fw.u64(info.NarSize)
		if info.Ultimate {
			fw.u64(1)
		} else {
			fw.u64(0)
		}
		fw.u64(uint64(len(info.Sigs)))
		for _, s := range info.Sigs {
			fw.str(s)
		}
		fw.str(info.CA)
		m, err := io.Copy(fw, io.LimitReader(nar, int64(info.NarSize)))
		if fw.err != nil {
			return c.eofError("write", fw.err)
		}
		if err != nil {
			return fmt.Errorf("read the NAR of %s: %w", info.Path, err)
		}
		if uint64(m) != info.NarSize {
			return fmt.Errorf("the NAR of %s has %d bytes, its info says %d", info.Path, m, info.NarSize)
		}
	}
	fw.flushFrame()
	fw.end()
	if fw.err != nil {
		return c.eofError("write", fw.err)
	}
	return c.flush()
}

// frameSize is the largest frame sent (Nix uses 32 KiB too).
const frameSize = 32 << 10

// frameWriter writes a framed stream: each frame is a u64 length and that
// many bytes, unpadded; an empty frame ends the stream. Write errors stick.
type frameWriter struct {
	w   io.Writer
	buf []byte
	err error
}

func (f *frameWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && f.err == nil {
		k := min(len(p), frameSize-len(f.buf))
		f.buf = append(f.buf, p[:k]...)
		p = p[k:]
		if len(f.buf) == frameSize {
			f.flushFrame()
		}
	}
	if f.err != nil {
		return 0, f.err
	}
	return n, nil
}

func (f *frameWriter) flushFrame() {
	if len(f.buf) == 0 || f.err != nil {
		return
	}
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(f.buf)))
	if _, f.err = f.w.Write(l[:]); f.err == nil {
		_, f.err = f.w.Write(f.buf)
	}
	f.buf = f.buf[:0]
}

func (f *frameWriter) end() {
	if f.err == nil {
		_, f.err = f.w.Write(make([]byte, 8))
	}
}

func (f *frameWriter) u64(v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	f.Write(b[:])
}

// str writes a wire string: length, bytes, zero padding to 8 bytes.
func (f *frameWriter) str(s string) {
	f.u64(uint64(len(s)))
	f.Write([]byte(s))
	if pad := (8 - len(s)%8) % 8; pad > 0 {
		f.Write(make([]byte, pad))
	}
}

// TextNAR returns what AddMultipleToStore needs to add t as the text
// object path (the path AddToStore with method "text:sha256" would give
// it; the caller computes it): its path info, with the CA field
// "text:sha256:<nix32>" that lets an untrusted client add it, and a
// reader of its NAR (one regular, non-executable file).
func TextNAR(path string, t Text) (PathInfo, io.Reader) {
	prefix, suffix := regularNARFrame(len(t.Content))
	h := sha256.New()
	h.Write(prefix)
	h.Write(t.Content)
	h.Write(suffix)
	content := sha256.Sum256(t.Content)
	info := PathInfo{
		Path:       path,
		NarHash:    "sha256:" + hex.EncodeToString(h.Sum(nil)),
		References: t.References,
		NarSize:    uint64(len(prefix) + len(t.Content) + len(suffix)),
		CA:         "text:sha256:" + nixbase32.EncodeToString(content[:]),
	}
	return info, io.MultiReader(bytes.NewReader(prefix), bytes.NewReader(t.Content), bytes.NewReader(suffix))
}

// regularNARFrame returns the bytes a NAR of one regular file of size n
// has before and after the file's contents.
func regularNARFrame(n int) (prefix, suffix []byte) {
	var b bytes.Buffer
	for _, s := range []string{"nix-archive-1", "(", "type", "regular", "contents"} {
		wireStr(&b, s)
	}
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(n))
	b.Write(l[:])
	prefix = bytes.Clone(b.Bytes())
	b.Reset()
	if pad := (8 - n%8) % 8; pad > 0 {
		b.Write(make([]byte, pad))
	}
	wireStr(&b, ")")
	return prefix, b.Bytes()
}

func wireStr(b *bytes.Buffer, s string) {
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(s)))
	b.Write(l[:])
	b.WriteString(s)
	if pad := (8 - len(s)%8) % 8; pad > 0 {
		b.Write(make([]byte, pad))
	}
}
