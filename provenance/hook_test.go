package provenance

import "testing"

func TestChrootStore(t *testing.T) {
	const drv = "/nix/store/6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv"
	tests := []struct {
		config, root, real, log string
	}{
		{"", "", drv, ""},
		{"store = daemon\n", "", drv, ""},
		{"substituters = \nstore = local?root=/tmp/r\n", "/tmp/r", "/tmp/r" + drv, "/tmp/r/nix/var/log/nix"},
		{"store = /srv/root\n", "/srv/root", "/srv/root" + drv, "/srv/root/nix/var/log/nix"},
		{"store = local?root=/r&real=/data/store&log=/data/log\n", "/r", "/data/store/6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv", "/data/log"},
		{"store = local?root=relative\n", "", drv, ""},
		{"store = ssh-ng://host\n", "", drv, ""},
	}
	for _, tc := range tests {
		root, real, log := chrootStore(tc.config, drv)
		if root != tc.root || real != tc.real || log != tc.log {
			t.Errorf("chrootStore(%q) = %q, %q, %q; want %q, %q, %q", tc.config, root, real, log, tc.root, tc.real, tc.log)
		}
	}
}
