// Package fleettest runs a fleet of remote Nix hosts for tests, all on
// this machine: hosts h1…hN (internal/remotetest: a real sshd each, a
// chroot store each, sandbox on, /marker naming the host), one ssh_config
// giving every host an alias so store URIs are plain "ssh-ng://h1" (Nix
// 2.8 takes no port in a builder URI), machines files in Nix's format, and
// a private nix-daemon on this machine's store configured with `builders`
// and `max-jobs = 0` (Nix's own distributed builds).
package fleettest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/internal/remotetest"
)

// Fleet is a set of hosts started by Start.
type Fleet struct {
	Hosts []*remotetest.Host
	// SSHConfig is an ssh_config file with a Host block per host, named
	// by the host's name.
	SSHConfig string
	// Dir is a world-readable temporary directory of the fleet's files.
	Dir string
}

// Start starts n hosts named h1…hn; opts gives the options of host i
// (0-based) and may be nil.
func Start(t testing.TB, n int, opts func(i int) remotetest.Options) *Fleet {
	t.Helper()
	remotetest.Need(t)
	f := &Fleet{Dir: daemontest.WorldDir(t)}
	var cfg strings.Builder
	for i := range n {
		var o remotetest.Options
		if opts != nil {
			o = opts(i)
		}
		h := remotetest.Start(t, fmt.Sprintf("h%d", i+1), o)
		f.Hosts = append(f.Hosts, h)
		cfg.WriteString(h.SSHConfig(h.Name))
	}
	f.SSHConfig = filepath.Join(f.Dir, "ssh_config")
	if err := os.WriteFile(f.SSHConfig, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// SSHOpts returns the ssh options that reach every host by its name.
func (f *Fleet) SSHOpts() []string { return []string{"-F", f.SSHConfig} }

// NixSSHOpts returns SSHOpts as a NIX_SSHOPTS value.
func (f *Fleet) NixSSHOpts() string { return "-F " + f.SSHConfig }

// Host returns the host named name, or nil.
func (f *Fleet) Host(name string) *remotetest.Host {
	for _, h := range f.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Machine returns a machines-format entry for host name: scheme "ssh-ng"
// or "ssh", this machine's system, maxJobs, speed factor and features
// (comma-separated; "" for none).
func (f *Fleet) Machine(scheme, name string, maxJobs int, speed float64, supported, mandatory string) string {
	col := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	return fmt.Sprintf("%s://%s %s - %d %s %s %s", scheme, name, System(), maxJobs,
		strconv.FormatFloat(speed, 'g', -1, 64), col(supported), col(mandatory))
}

// MachinesFile writes entries to a machines file in the fleet's
// directory and returns its path.
func (f *Fleet) MachinesFile(t testing.TB, name string, entries ...string) string {
	t.Helper()
	p := filepath.Join(f.Dir, name)
	if err := os.WriteFile(p, []byte(strings.Join(entries, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// BuiltOn returns the names of the hosts whose store holds path, and the
// marker text path's content starts with ("" when it names no host).
func (f *Fleet) BuiltOn(t testing.TB, path string) (valid []string, marker string) {
	t.Helper()
	for _, h := range f.Hosts {
		if h.Valid(t, path) {
			valid = append(valid, h.Name)
			content := h.Read(t, path)
			for _, o := range f.Hosts {
				if strings.HasPrefix(content, o.Marker+"\n") {
					marker = o.Name
				}
			}
		}
	}
	return valid, marker
}

// System returns the system of this machine (builtins.currentSystem).
func System() string {
	out, err := exec.Command("nix-instantiate", "--eval", "--expr", "builtins.currentSystem").Output()
	if err != nil {
		return "x86_64-linux"
	}
	return strings.Trim(strings.TrimSpace(string(out)), `"`)
}

// NixDaemon is a private nix-daemon on this machine's store whose
// nix.conf sends every build to remote builders.
type NixDaemon struct {
	*daemontest.Daemon
	ConfDir string
}

// StartNixDaemon starts a nix-daemon on its own socket with `builders =
// builders`, `max-jobs = 0` and extra appended to its nix.conf; it
// reaches the hosts with NIX_SSHOPTS = f.NixSSHOpts(). It is killed with
// its children when the test ends.
func (f *Fleet) StartNixDaemon(t testing.TB, builders, extra string) *NixDaemon {
	t.Helper()
	confDir := filepath.Join(daemontest.WorldDir(t), "etc")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("builders = %s\nmax-jobs = 0\nsubstituters =\nrequire-sigs = false\nbuilders-use-substitutes = false\n%s\n", builders, extra)
	if err := os.WriteFile(filepath.Join(confDir, "nix.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d := daemontest.StartWith(t, daemontest.Config{Env: []string{"NIX_CONF_DIR=" + confDir, "NIX_SSHOPTS=" + f.NixSSHOpts()}})
	return &NixDaemon{Daemon: d, ConfDir: confDir}
}

// Graph instantiates testdata/graph.nix (a, b(a), c(a), top(b, c), and
// k(a) needing the kvm feature; every builder writes its host's marker
// and reads its inputs) with a fresh nonce and args (--argstr slow NAME,
// --argstr sleep SECONDS, --argstr fail NAME), and returns the .drv paths
// by node name.
func Graph(t testing.TB, args ...string) map[string]string {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("fleettest: no caller information")
	}
	file := filepath.Join(filepath.Dir(self), "testdata", "graph.nix")
	names := []string{"a", "b", "c", "top", "k"}
	cl := append([]string{file, "--argstr", "nonce", fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())}, args...)
	for _, n := range names {
		cl = append(cl, "-A", n)
	}
	paths := strings.Fields(nixtest.Output(t, "nix-instantiate", cl...))
	if len(paths) != len(names) {
		t.Fatalf("nix-instantiate printed %q", paths)
	}
	out := map[string]string{}
	for i, n := range names {
		out[n] = paths[i]
	}
	return out
}

// KVMOnSecond is a Start option: host h2 (and only h2) has the kvm
// system feature.
func KVMOnSecond(i int) remotetest.Options {
	if i == 1 {
		return remotetest.Options{SystemFeatures: []string{"kvm"}}
	}
	return remotetest.Options{}
}
