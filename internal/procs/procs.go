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

// KillDescendants sends SIGKILL to every descendant of pid and leaves
// pid itself alone. The tree is read first, then killed parents first:
// killing a connection's sshd before the daemon and builder under it
// drops the connection at once, where the deepest first (the builder)
// would let the daemon report a failed build before it died.
func KillDescendants(pid int) {
	var tree []int
	var walk func(p int)
	walk = func(p int) {
		for _, k := range Children(p) {
			tree = append(tree, k)
			walk(k)
		}
	}
	walk(pid)
	for _, k := range tree {
		syscall.Kill(k, syscall.SIGKILL)
	}
}
