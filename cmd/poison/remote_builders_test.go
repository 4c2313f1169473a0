package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/fleettest"
	"github.com/poison-nix/poison/internal/nixtest"
)

// TestNixRemoteBuilders: default `poison build` through a daemon whose
// nix.conf has `builders` (ssh-ng:// and ssh://) and `max-jobs = 0`:
// Nix's own build hook sends the rewritten closure to the remote host.
// Every output is valid in the host's store and holds the marker its
// sandbox showed the builder; Nix copied the outputs home. With -j 0 and
// no machine able to build, the build fails instead of running here.
func TestNixRemoteBuilders(t *testing.T) {
	for _, scheme := range []string{"ssh-ng", "ssh"} {
		t.Run(scheme, func(t *testing.T) {
			f := fleettest.Start(t, 1, nil)
			h := f.Hosts[0]
			d := f.StartNixDaemon(t, f.Machine(scheme, h.Name, 4, 1, "", ""), "")
			g := newRemoteGraph(t, "b")
			vars := map[string]string{"NIX_DAEMON_SOCKET_PATH": d.Socket}

			code, stdout, stderr := runPoisonRemote(t, g.dir, vars, "build", "--store", d.URI(), "-j", "0", "--print-out-paths", g.drvs["top"])
			if code != 0 {
				daemonLog, _ := os.ReadFile(d.ConfDir + "/../daemon.log")
				t.Fatalf("poison build through a daemon with builders: exit %d\n%s\ndaemon log: %s", code, stderr, daemonLog)
			}
			out := strings.TrimSpace(stdout)
			if out == nixtest.Output(t, "nix-store", "--query", "--outputs", g.drvs["top"]) {
				t.Fatalf("top was not rewritten: %s", out)
			}
			// Every rewritten derivation and the unchanged a, built there.
			outs := []string{out}
			for _, r := range strings.Fields(nixtest.Output(t, "nix-store", "--query", "--requisites", out)) {
				if strings.HasSuffix(r, "-a") || strings.HasSuffix(r, "-b") {
					outs = append(outs, r)
				}
			}
			if len(outs) != 3 {
				t.Fatalf("runtime closure of %s: %v, want the outputs of a, b and top", out, outs)
			}
			for _, o := range outs {
				valid, marker := f.BuiltOn(t, o)
				if !slices.Equal(valid, []string{h.Name}) || marker != h.Name {
					t.Errorf("%s: valid on %v, marker of %q; want built on %s", o, valid, marker, h.Name)
				}
				if got, err := os.ReadFile(o); err != nil || !strings.HasPrefix(string(got), h.Marker+"\n") {
					t.Errorf("%s here holds %q, %v; want Nix to have copied the host's build home", o, got, err)
				}
			}
			if cmds := h.Commands(t); len(cmds) == 0 {
				t.Errorf("the host saw no ssh session")
			}

			// No machine for this system: with max-jobs 0 nothing builds here.
			d2 := f.StartNixDaemon(t, strings.Replace(f.Machine(scheme, h.Name, 4, 1, "", ""), fleettest.System(), "mips64-plan9", 1), "")
			g2 := newRemoteGraph(t, "a")
			code, _, stderr = runPoisonRemote(t, g2.dir, map[string]string{"NIX_DAEMON_SOCKET_PATH": d2.Socket}, "build", "--store", d2.URI(), "-j", "0", g2.drvs["top"])
			errs, _ := errorLines(stderr)
			if code == 0 || len(errs) == 0 {
				t.Fatalf("build without a usable builder and -j 0: exit %d\n%s", code, stderr)
			}
			code, stdout, stderr = runPoisonRemote(t, g2.dir, map[string]string{"NIX_DAEMON_SOCKET_PATH": d2.Socket}, "rewrite", "--store", d2.URI(), g2.drvs["top"])
			if code != 0 {
				t.Fatalf("poison rewrite: exit %d\n%s", code, stderr)
			}
			var drvs []string
			for _, p := range strings.Fields(nixtest.Output(t, "nix-store", "--query", "--requisites", strings.TrimSpace(stdout))) {
				if strings.HasSuffix(p, ".drv") {
					drvs = append(drvs, p)
				}
			}
			if len(drvs) != 3 {
				t.Fatalf("rewritten .drv closure %v, want a, b, top", drvs)
			}
			for _, o := range strings.Fields(nixtest.Output(t, "nix-store", append([]string{"--query", "--outputs"}, drvs...)...)) {
				if _, err := os.Stat(o); err == nil {
					t.Errorf("%s was built here", o)
				}
			}
			t.Logf("without a builder: %s", errs)
		})
	}
}

// TestBuildersFlag: --builders goes to the daemon as its builders
// setting; a daemon that does not trust the user drops it, and poison
// says so instead of letting the build run elsewhere without a word.
func TestBuildersFlag(t *testing.T) {
	f := fleettest.Start(t, 1, nil)
	h := f.Hosts[0]
	machine := f.Machine("ssh-ng", h.Name, 2, 1, "", "")

	t.Run("trusted", func(t *testing.T) {
		d := f.StartNixDaemon(t, "", "")
		g := newRemoteGraph(t, "top")
		code, stdout, stderr := runPoisonRemote(t, g.dir, map[string]string{"NIX_DAEMON_SOCKET_PATH": d.Socket},
			"build", "--store", d.URI(), "-j", "0", "--builders", machine, "--print-out-paths", g.drvs["top"])
		if code != 0 {
			t.Fatalf("poison build --builders: exit %d\n%s", code, stderr)
		}
		out := strings.TrimSpace(stdout)
		if valid, marker := f.BuiltOn(t, out); !slices.Equal(valid, []string{h.Name}) || marker != h.Name {
			t.Errorf("%s: valid on %v, marker %q; want built on %s", out, valid, marker, h.Name)
		}
	})
	t.Run("not trusted", func(t *testing.T) {
		d := f.StartNixDaemon(t, "", "trusted-users = nobody")
		g := newRemoteGraph(t, "top")
		before := len(h.Commands(t))
		code, _, stderr := runPoisonRemote(t, g.dir, map[string]string{"NIX_DAEMON_SOCKET_PATH": d.Socket},
			"build", "--store", d.URI(), "--builders", machine, g.drvs["top"])
		errs, hints := errorLines(stderr)
		if code != 1 || len(errs) != 1 || !strings.Contains(errs[0], "ignores --builders") || len(hints) != 1 || !strings.Contains(hints[0], "trusted-users") {
			t.Fatalf("poison build --builders as an untrusted user: exit %d, errors %q, hints %q\n%s", code, errs, hints, stderr)
		}
		if n := len(h.Commands(t)); n != before {
			t.Errorf("the host was contacted %d times", n-before)
		}
	})
}

// TestBuildersFlagModernNix: a Nix 2.26 daemon says in the handshake
// whether it trusts the client (protocol 1.35): poison refuses
// --builders when it does not, and goes on when it does.
func TestBuildersFlagModernNix(t *testing.T) {
	bin := daemontest.ModernNix(t)
	f := fleettest.Start(t, 1, nil)
	machine := f.Machine("ssh-ng", f.Hosts[0].Name, 2, 1, "", "")
	// Not in the 2.26 store: a trusted client gets past the check and
	// stops at the missing .drv.
	drv := "/nix/store/" + strings.Repeat("0", 32) + "-missing.drv"
	for _, tc := range []struct {
		name    string
		args    []string
		refused bool
	}{
		{"not trusted", []string{"--option", "trusted-users", "nobody"}, true},
		{"trusted", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := daemontest.StartWith(t, daemontest.Config{Program: filepath.Join(bin, "nix-daemon"), Args: tc.args, Env: []string{}})
			dir := t.TempDir()
			writeLock(t, dir)
			code, _, stderr := runPoisonRemote(t, dir, nil, "build", "--store", d.URI(), "--builders", machine, drv)
			errs, hints := errorLines(stderr)
			if code != 1 || len(errs) != 1 {
				t.Fatalf("exit %d, errors %q\n%s", code, errs, stderr)
			}
			refused := strings.Contains(errs[0], "ignores --builders: the daemon does not trust this user")
			if refused != tc.refused {
				t.Fatalf("refused = %v, want %v: %q", refused, tc.refused, errs[0])
			}
			if tc.refused && (len(hints) != 1 || !strings.Contains(hints[0], "trusted-users")) {
				t.Errorf("hints %q", hints)
			}
			if len(f.Hosts[0].Commands(t)) != 0 {
				t.Errorf("the host was contacted")
			}
		})
	}
}
