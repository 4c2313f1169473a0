package procs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestChildren(t *testing.T) {
	// sh starts sleep and waits: sleep is a child of sh, sh one of ours.
	cmd := exec.Command("sh", "-c", "sleep 30 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if mine := Children(os.Getpid()); !slices.Contains(mine, cmd.Process.Pid) {
		t.Errorf("Children(test) = %v, want it to hold sh %d", mine, cmd.Process.Pid)
	}
	var kids []int
	for deadline := time.Now().Add(5 * time.Second); len(kids) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		kids = Children(cmd.Process.Pid)
	}
	if len(kids) != 1 {
		t.Fatalf("Children(sh) = %v, want the sleep", kids)
	}
	defer syscall.Kill(kids[0], syscall.SIGKILL)
	if got := Children(kids[0]); len(got) != 0 {
		t.Errorf("Children(sleep) = %v, want none", got)
	}
}

// TestKillDescendants: the grandchild and child die, the process itself
// is left running.
func TestKillDescendants(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sh -c 'sleep 30 & wait' & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()
	var sleep int
	for deadline := time.Now().Add(5 * time.Second); sleep == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		for _, c := range Children(cmd.Process.Pid) {
			if g := Children(c); len(g) == 1 {
				sleep = g[0]
			}
		}
	}
	if sleep == 0 {
		t.Fatal("the grandchild sleep did not start")
	}
	KillDescendants(cmd.Process.Pid)
	// The outer sh's wait returns once its child is gone: it exits 0 on
	// its own, which it would not do while the sleeps ran.
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		if ee != nil && ee.Sys().(syscall.WaitStatus).Signaled() {
			t.Errorf("the process itself was killed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("descendants still running 10 s after KillDescendants")
	}
	// Gone, or a zombie waiting for init to reap it: not running. A
	// killed process may still show R for a moment while it exits (its
	// parent, killed at the same time, can be reaped first), so it gets
	// a few seconds to get there.
	state := ""
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		state = procState(sleep)
		if state == "" || state == "Z" || time.Now().After(deadline) {
			break
		}
	}
	if state != "" && state != "Z" {
		t.Errorf("grandchild %d still running 5 s after KillDescendants (state %s)", sleep, state)
	}
}

// procState is the state letter of pid in /proc, "" when it is gone.
func procState(pid int) string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	s := string(data)
	if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 {
		return f[0]
	}
	return ""
}
