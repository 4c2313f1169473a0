package progress

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// CopyBar is the live status line of a copy between stores on a
// terminal, as `nix copy` draws one: "[12/2000 copied (1.2/80.0 MiB)]
// copying to URI". Its methods may be called from several goroutines.
type CopyBar struct {
	mu     sync.Mutex
	w      io.Writer
	dest   string
	paths  int
	bytes  uint64
	last   time.Time
	shown  string
	live   bool
	every  time.Duration
	nowFun func() time.Time
}

// NewCopyBar returns the status line of a copy of paths store paths of
// bytes NAR bytes to dest, written to w (a terminal: see IsTerminal).
func NewCopyBar(w io.Writer, dest string, paths int, bytes uint64) *CopyBar {
	return &CopyBar{w: w, dest: dest, paths: paths, bytes: bytes, every: 100 * time.Millisecond, nowFun: time.Now}
}

// Update shows that paths and bytes of the copy are done. The line is
// redrawn at most ten times a second, and always when the copy is
// complete.
func (b *CopyBar) Update(paths int, bytes uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.nowFun()
	if paths < b.paths && b.live && now.Sub(b.last) < b.every {
		return
	}
	s := fmt.Sprintf("[%d/%d copied (%s/%s)] copying to %s", paths, b.paths, MiB(bytes), MiB(b.bytes), b.dest)
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	if b.live && s == b.shown {
		return
	}
	fmt.Fprint(b.w, "\r\x1b[K"+s)
	b.live, b.shown, b.last = true, s, now
}

// Finish removes the line.
func (b *CopyBar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.live {
		fmt.Fprint(b.w, "\r\x1b[K")
		b.live = false
	}
}

// MiB renders a byte count for people: "12.5 KiB", "3.0 MiB".
func MiB(n uint64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
