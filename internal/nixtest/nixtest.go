// Package nixtest gives tests access to the real Nix installation: whether
// it is usable, the environment that keeps it offline, and a way to fail
// loudly in CI where Nix must be present.
package nixtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Required reports whether tests must fail, not skip, when Nix is missing.
// .ci/run sets POISON_REQUIRE_NIX=1.
func Required() bool { return os.Getenv("POISON_REQUIRE_NIX") == "1" }

// Available reports whether nix-instantiate runs.
func Available() bool {
	if _, err := exec.LookPath("nix-instantiate"); err != nil {
		return false
	}
	return exec.Command("nix-instantiate", "--version").Run() == nil
}

// Need skips t when Nix is not usable, or fails it under Required.
func Need(t testing.TB) {
	t.Helper()
	if Available() {
		return
	}
	if Required() {
		t.Fatal("Nix is required (POISON_REQUIRE_NIX=1) but nix-instantiate is not usable")
	}
	t.Skip("Nix is not installed; set POISON_REQUIRE_NIX=1 to make this a failure")
}

// Config is the nix.conf text tests run with: no substituters (the public
// cache is unreachable here and would stall every query).
const Config = "substituters =\nrequire-sigs = false\n"

// Environ returns the environment variables (KEY=VALUE) that child Nix
// processes of tests need, on top of the inherited environment.
func Environ() []string {
	cfg := Config
	if extra := os.Getenv("NIX_CONFIG"); extra != "" {
		cfg = extra + "\n" + cfg
	}
	return []string{"NIX_CONFIG=" + cfg}
}

// Command returns an exec.Cmd for a Nix tool with the test environment.
func Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), Environ()...)
	return cmd
}

// Output runs a Nix tool and returns its trimmed stdout, failing t with the
// tool's stderr on error.
func Output(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}
