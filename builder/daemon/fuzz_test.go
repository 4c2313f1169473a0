package daemon_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"testing"

	"github.com/poison-nix/poison/builder/daemon"
)

// scripted is a daemon that answers with fixed bytes and swallows what
// the client writes.
type scripted struct{ r io.Reader }

func (s *scripted) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *scripted) Write(p []byte) (int, error) { return len(p), nil }
func (s *scripted) Close() error                { return nil }

func u64(vs ...uint64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

func str(s string) []byte {
	b := u64(uint64(len(s)))
	b = append(b, s...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}

// handshake134 is what Nix 2.8 answers: magic, 1.34, "2.8.0", LAST; then
// LAST for SetOptions.
func handshake134() []byte {
	b := u64(0x6478696f, 1<<8|34)
	b = append(b, str("2.8.0")...)
	return append(b, u64(0x616c7473, 0x616c7473)...)
}

// FuzzConn feeds arbitrary daemon answers after a valid handshake (and
// arbitrary handshakes) to the client: it must return errors, never panic
// or hang.
func FuzzConn(f *testing.F) {
	f.Add(handshake134(), []byte{})
	next := append(u64(0x6f6c6d67), str("hello\n")...)
	f.Add(handshake134(), append(next, u64(0x616c7473, 1)...))
	start := append(u64(0x53545254, 7, 3, 105), str("building 'x'")...)
	start = append(start, u64(2, 1)...)
	start = append(start, str("/nix/store/x.drv")...)
	start = append(start, u64(0, 1, 0)...)
	f.Add(handshake134(), append(start, u64(0x616c7473, 1, 0)...))
	errMsg := append(u64(0x63787470), str("Error")...)
	errMsg = append(errMsg, u64(0)...)
	errMsg = append(errMsg, str("Error")...)
	errMsg = append(errMsg, str("\x1b[31;1merror:\x1b[0m boom")...)
	f.Add(handshake134(), append(errMsg, u64(0, 0)...))
	f.Add([]byte("Welcome!\n"), []byte{})
	f.Fuzz(func(t *testing.T, hs, reply []byte) {
		ctx := context.Background()
		rwc := &scripted{r: io.MultiReader(bytes.NewReader(hs), bytes.NewReader(reply), bytes.NewReader(reply))}
		c, err := daemon.NewConn(ctx, rwc, "fuzz", daemon.Options{Log: func(daemon.Message) {}})
		if err != nil {
			return
		}
		c.IsValidPath(ctx, "/nix/store/00000000000000000000000000000000-x")
		c.QueryPathInfo(ctx, "/nix/store/00000000000000000000000000000000-x")
		c.BuildPathsWithResults(ctx, []string{"/nix/store/00000000000000000000000000000000-x.drv!*"}, daemon.BuildNormal)
		c.AddTexts(ctx, []daemon.Text{{Name: "x.drv", Content: []byte("Derive()")}})
	})
}
