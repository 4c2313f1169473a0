package sshtest_test

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/poison-nix/poison/internal/sshtest"
)

// TestStart logs in with the system ssh client and runs a command; an
// unknown key is refused.
func TestStart(t *testing.T) {
	s := sshtest.Start(t)
	ssh := func(key string) (string, error) {
		args := append(s.SSHOpts(), "-i", key, "-p", strconv.Itoa(s.Port), s.User+"@"+s.Host, "--", "echo", "hello from sshd")
		out, err := exec.Command("ssh", args...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := ssh(s.Key); err != nil || out != "hello from sshd" {
		t.Fatalf("ssh with the client key: %q, %v\nsshd: %s", out, err, s.Log())
	}
	if out, err := ssh(s.NewKey(t, "other")); err == nil || !strings.Contains(out, "Permission denied (publickey)") {
		t.Fatalf("ssh with an unknown key: %q, %v", out, err)
	}
}
