// Package procs finds processes for tests that must stop what they
// started: daemons that fork a process per connection (nix-daemon, sshd)
// leave those children behind when only the parent is killed.
package procs

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Children returns the pids whose parent is pid, read from /proc (empty
// where /proc is missing).
func Children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		k, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at ')'.
		s := string(data)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, k)
		}
	}
	return out
}

// KillDescendants sends SIGKILL to every descendant of pid, deepest
// first, and leaves pid itself alone.
func KillDescendants(pid int) {
	for _, k := range Children(pid) {
		KillDescendants(k)
		syscall.Kill(k, syscall.SIGKILL)
	}
}
