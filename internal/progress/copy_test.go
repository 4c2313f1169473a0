package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestCopyBar: the line shows done/total paths and bytes and the
// destination; updates within 100 ms are skipped except the last; Finish
// clears the line.
func TestCopyBar(t *testing.T) {
	var buf bytes.Buffer
	b := NewCopyBar(&buf, "ssh-ng://builder", 3, 3<<20)
	now := time.Unix(0, 0)
	b.nowFun = func() time.Time { return now }
	b.Update(0, 0)
	b.Update(1, 1<<20) // within 100 ms: skipped
	now = now.Add(150 * time.Millisecond)
	b.Update(2, 2<<20)
	b.Update(3, 3<<20) // complete: drawn
	b.Finish()
	want := "\r\x1b[K[0/3 copied (0.0 KiB/3.0 MiB)] copying to ssh-ng://builder" +
		"\r\x1b[K[2/3 copied (2.0 MiB/3.0 MiB)] copying to ssh-ng://builder" +
		"\r\x1b[K[3/3 copied (3.0 MiB/3.0 MiB)] copying to ssh-ng://builder" +
		"\r\x1b[K"
	if got := buf.String(); got != want {
		t.Errorf("drawn:\n%q\nwant\n%q", got, want)
	}
	buf.Reset()
	b.Finish()
	if buf.Len() != 0 {
		t.Errorf("second Finish wrote %q", buf.String())
	}
	long := NewCopyBar(&buf, strings.Repeat("x", 200), 1, 1)
	long.Update(0, 0)
	if l := len(strings.TrimPrefix(buf.String(), "\r\x1b[K")); l != 120 {
		t.Errorf("long line drawn with %d bytes, want 120", l)
	}
}
