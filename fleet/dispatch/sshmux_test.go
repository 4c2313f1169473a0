package dispatch

import (
	"slices"
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder/daemon"
)

// TestNewSSHMaster: sharing is prepared for ssh-ng:// machines only,
// left off when the caller's ssh options configure multiplexing, another
// ssh program is used or the socket path is too long; the master logs in
// to the same destination as the slots, with -M -N and the socket.
func TestNewSSHMaster(t *testing.T) {
	sock := "/tmp/poison-dispatch-1/mux-0"
	for _, tc := range []struct {
		name string
		uri  string
		o    daemon.Options
		path string
		on   bool
	}{
		{"ssh-ng", "ssh-ng://builder@b1:2222?ssh-key=/k", daemon.Options{SSHOpts: []string{"-F", "/cfg"}}, sock, true},
		{"unix socket", "unix:///run/nix.sock", daemon.Options{}, sock, false},
		{"local store", "local?root=/srv/store", daemon.Options{}, sock, false},
		{"NIX_SSHOPTS ControlPath", "ssh-ng://b1", daemon.Options{SSHOpts: []string{"-o", "ControlPath=/x/%C"}}, sock, false},
		{"NIX_SSHOPTS controlmaster", "ssh-ng://b1", daemon.Options{SSHOpts: []string{"-ocontrolmaster=auto"}}, sock, false},
		{"other ssh program", "ssh-ng://b1", daemon.Options{SSHProgram: "/opt/fake-ssh"}, sock, false},
		{"socket path too long", "ssh-ng://b1", daemon.Options{}, "/" + strings.Repeat("d", 100) + "/mux-0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, slotOpts := newSSHMaster(tc.uri, tc.o, tc.path)
			if (m != nil) != tc.on {
				t.Fatalf("sharing = %v, want %v", m != nil, tc.on)
			}
			if !tc.on {
				if slotOpts != nil {
					t.Errorf("slot options %q without sharing", slotOpts)
				}
				return
			}
			if want := []string{"-o", "ControlMaster=no", "-o", "ControlPath=" + tc.path}; !slices.Equal(slotOpts, want) {
				t.Errorf("slot options %q, want %q", slotOpts, want)
			}
			_, slot, err := daemon.SSHCommand(tc.uri, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			want := append(slices.Clone(slot[:len(slot)-1]), "-M", "-N", "-o", "ControlPath="+tc.path, "-o", "ControlPersist=no", slot[len(slot)-1])
			if m.prog != "ssh" || !slices.Equal(m.args, want) {
				t.Errorf("master: %s %q, want ssh %q", m.prog, m.args, want)
			}
			if m.args[len(m.args)-1] != "builder@b1" || !slices.Contains(m.args, "/k") || !slices.Contains(m.args, "2222") {
				t.Errorf("master args %q miss the user, host, key or port", m.args)
			}
		})
	}
}
