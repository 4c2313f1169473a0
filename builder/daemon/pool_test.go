package daemon_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
)

// TestPoolRelease: Release returns while a child is still shutting down
// (here a wrapper that lingers after its nix-daemon --stdio exits, as a
// daemon checkpointing its database does), and the child does not
// outlive it by more than the bounded wait; Close waits for the child.
func TestPoolRelease(t *testing.T) {
	nixtest.Need(t)
	if os.Geteuid() != 0 {
		t.Skip("a nix-daemon --stdio child on a chroot store needs root")
	}
	dir := t.TempDir()
	prog := filepath.Join(dir, "daemon")
	script := "#!/bin/sh\necho $$ >" + filepath.Join(dir, "pid") + "\nenv -u NIX_REMOTE nix-daemon \"$@\"\nexec sleep 60\n"
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := daemontest.Context(t, time.Minute)
	open := func() (*daemon.Pool, int) {
		p := daemon.NewPool("local?root="+t.TempDir(), daemon.Options{DaemonProgram: prog, Settings: offline(), ConnectTimeout: time.Minute, HandshakeTimeout: time.Minute}, 1)
		if err := p.Do(ctx, func(c *daemon.Conn) error {
			_, err := c.IsValidPath(ctx, "/nix/store/00000000000000000000000000000000-x")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, "pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			t.Fatal(err)
		}
		return p, pid
	}
	alive := func(pid int) bool { return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

	p, pid := open()
	if err := p.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if !alive(pid) {
		t.Fatal("the child is gone right after Release: it was waited for")
	}
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		t.Fatal("the child still runs 30 s after Release")
	}
	if _, err := p.Get(ctx); !errors.Is(err, daemon.ErrPoolClosed) {
		t.Errorf("Get after Release = %v, want ErrPoolClosed", err)
	}

	// Close waits: the child is gone (killed after the bounded wait) when
	// it returns.
	p, pid = open()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if alive(pid) {
		t.Error("the child still runs after Close returned")
	}
}
