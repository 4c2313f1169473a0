package procs

import (
	"os"
	"os/exec"
	"slices"
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
