// Package ptytest opens pseudo-terminals for tests of what poison draws
// on a terminal (live progress lines).
package ptytest

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"unsafe"
)

// PTY is a pseudo-terminal: TTY is its terminal side, for a program's
// output; what is written there is collected from the other side.
type PTY struct {
	TTY    *os.File
	master *os.File
	mu     sync.Mutex
	buf    bytes.Buffer
	done   chan struct{}
}

// Open opens a pseudo-terminal, closed when the test ends.
func Open(t testing.TB) *PTY {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		master.Close()
		t.Fatalf("unlock pty: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		master.Close()
		t.Fatalf("pty number: %v", e)
	}
	tty, err := os.OpenFile(filepath.Join("/dev/pts", strconv.FormatUint(uint64(n), 10)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatalf("open pty: %v", err)
	}
	p := &PTY{TTY: tty, master: master, done: make(chan struct{})}
	// Drain the other side, so that a program writing much never blocks.
	go func() {
		defer close(p.done)
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			p.mu.Lock()
			p.buf.Write(b[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { tty.Close(); master.Close() })
	return p
}

// Output closes the terminal side and returns everything written to it.
// The terminal translates "\n" into "\r\n".
func (p *PTY) Output() string {
	p.TTY.Close()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}
