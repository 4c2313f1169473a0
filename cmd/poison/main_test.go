package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/internal/sshtest"
	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"poison": func() { os.Exit(run(os.Args[1:], newEnv())) },
	})
}

// TestScripts runs the CLI scenarios in testdata/script/*.txtar. Scripts
// that need Nix start with [!nix] skip; under POISON_REQUIRE_NIX=1 (set by
// .ci/run) a missing Nix fails the test instead. Scripts with [sshd] get a
// real OpenSSH server on 127.0.0.1 in front of the local store: SSH_STORE
// is its ssh-ng:// URI and NIX_SSHOPTS the client options; SSHD_ADDR,
// SSHD_USER, SSHD_KEY and SSHD_KNOWN_HOSTS reach it as an ssh git server.
func TestScripts(t *testing.T) {
	hasNix := nixtest.Available()
	if !hasNix && nixtest.Required() {
		t.Fatal("Nix is required (POISON_REQUIRE_NIX=1) but nix-instantiate is not usable")
	}
	var ssh *sshtest.Server
	if hasNix && os.Geteuid() == 0 && (sshtest.Available() || nixtest.Required()) {
		ssh = sshtest.Start(t) // fails under POISON_REQUIRE_NIX=1 when OpenSSH is missing
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			for _, kv := range nixtest.Environ() {
				env.Vars = append(env.Vars, kv)
			}
			// Caches (fetched registries, locks, closure records) stay in
			// the script's work directory, not in testscript's $HOME.
			env.Vars = append(env.Vars, "XDG_CACHE_HOME="+filepath.Join(env.WorkDir, ".cache"))
			if ssh != nil {
				env.Vars = append(env.Vars, "SSH_STORE="+ssh.URI("ssh-ng", nil),
					"NIX_SSHOPTS="+strings.Join(ssh.SSHOpts(), " "),
					// For ssh registries: sshd's address, client key, known_hosts.
					"SSHD_ADDR="+ssh.Addr(), "SSHD_USER="+ssh.User, "SSHD_KEY="+ssh.Key, "SSHD_KNOWN_HOSTS="+ssh.KnownHosts)
			}
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "nix":
				return hasNix, nil
			case "sshd":
				return ssh != nil, nil
			}
			return false, nil
		},
		RequireExplicitExec: true,
	})
}
