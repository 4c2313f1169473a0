package fleettest_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/internal/fleettest"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/internal/remotetest"
)

// TestNixBuildsOnTheFleet: a private daemon with builders = a machines
// file (names from the fleet's ssh_config) and max-jobs = 0 sends a build
// to the host whose features fit; the output is valid there, says so, and
// comes back to this machine's store.
func TestNixBuildsOnTheFleet(t *testing.T) {
	f := fleettest.Start(t, 2, func(i int) remotetest.Options {
		if i == 1 {
			return remotetest.Options{SystemFeatures: []string{"kvm"}}
		}
		return remotetest.Options{}
	})
	machines := f.MachinesFile(t, "machines",
		f.Machine("ssh-ng", "h1", 1, 1, "", ""),
		f.Machine("ssh-ng", "h2", 1, 1, "kvm", ""))
	d := f.StartNixDaemon(t, "@"+machines, "")

	file := filepath.Join(t.TempDir(), "kvm.nix")
	nonce := fmt.Sprint(time.Now().UnixNano())
	if err := os.WriteFile(file, []byte(`derivation { name = "fleet-kvm"; system = builtins.currentSystem; nonce = "`+nonce+`";
  requiredSystemFeatures = [ "kvm" ];
  builder = "/bin/sh"; args = [ "-c" "read m < /marker; echo \"$m\" > $out" ]; }`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := nixtest.Command("nix-build", "--no-out-link", file)
	cmd.Env = append(cmd.Env, "NIX_REMOTE="+d.URI())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix-build through the daemon with builders: %v\n%s", err, stderrOf(err))
	}
	path := strings.TrimSpace(string(out))
	valid, marker := f.BuiltOn(t, path)
	if !slices.Equal(valid, []string{"h2"}) || marker != "h2" {
		t.Errorf("%s valid on %v, built on %q; want h2 (the only host with kvm)", path, valid, marker)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != f.Host("h2").Marker+"\n" {
		t.Errorf("output at home: %q, %v", data, err)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
