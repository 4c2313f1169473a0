package dispatch

import (
	"strings"
	"testing"

	"github.com/poison-nix/poison/fleet/machines"
)

func TestStoreURI(t *testing.T) {
	for _, tc := range []struct {
		entry, want, err string
	}{
		{"ssh-ng://b1", "ssh-ng://b1", ""},
		{"b1", "ssh-ng://b1", ""},
		{"ssh://builder@b1", "ssh-ng://builder@b1", ""},
		{"ssh-ng://b1 - /keys/id", "ssh-ng://b1?ssh-key=%2Fkeys%2Fid", ""},
		{"ssh-ng://b1?ssh-key=/mine - /keys/id", "ssh-ng://b1?ssh-key=/mine", ""},
		{"ssh-ng://b1:2222?remote-store=local%3Froot%3D/r", "ssh-ng://b1:2222?remote-store=local%3Froot%3D/r", ""},
		{"unix:///run/nix/socket", "unix:///run/nix/socket", ""},
		{"local?root=/tmp/st", "local?root=/tmp/st", ""},
		{"ssh://b1?remote-program=/bin/nix-store", "", "write ssh-ng://"},
	} {
		s, err := machines.Parse(tc.entry, machines.Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := storeURI(s.Machines[0])
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("storeURI(%q) error = %v, want %q", tc.entry, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("storeURI(%q) = %q, %v; want %q", tc.entry, got, err, tc.want)
		}
	}
}
