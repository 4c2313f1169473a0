package dispatch_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/fleet/dispatch"
	"github.com/poison-nix/poison/fleet/machines"
	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/fleettest"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/internal/remotetest"
)

type events struct {
	mu  sync.Mutex
	all []dispatch.Event
	on  func(dispatch.Event)
}

func (e *events) add(ev dispatch.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
	if e.on != nil {
		e.on(ev)
	}
}

func (e *events) kinds(drv string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.all {
		if ev.DrvPath == drv {
			out = append(out, fmt.Sprintf("%d@%s", ev.Kind, strings.TrimPrefix(ev.Machine, "ssh-ng://")))
		}
	}
	return out
}

// setup starts a fleet of two hosts (h2 has kvm), a home daemon on this
// machine's store and a dispatcher over spec (entries of the fleet).
func setup(t *testing.T, spec func(f *fleettest.Fleet) string, retries int, ev *events) (*fleettest.Fleet, *daemon.Pool, *dispatch.Dispatcher) {
	t.Helper()
	f := fleettest.Start(t, 2, fleettest.KVMOnSecond)
	d := daemontest.Start(t)
	s := daemon.DefaultSettings()
	s.Overrides = map[string]string{"substituters": ""}
	home := daemon.NewPool(d.URI(), daemon.Options{Settings: &s}, 8)
	t.Cleanup(func() { home.Close() })
	ms, err := machines.Parse(spec(f), machines.Options{DefaultSystem: fleettest.System()})
	if err != nil {
		t.Fatal(err)
	}
	dp, err := dispatch.New(dispatch.Options{
		Machines: ms.Machines,
		Home:     home,
		Copy:     dispatch.StoreCopier,
		Daemon:   daemon.Options{SSHOpts: f.SSHOpts(), Settings: &s, HandshakeTimeout: time.Minute},
		Retries:  retries,
		OnEvent:  ev.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	return f, home, dp
}

func twoHosts(f *fleettest.Fleet) string {
	return f.Machine("ssh-ng", "h1", 2, 1, "", "") + "\n" + f.Machine("ssh-ng", "h2", 2, 1, "kvm", "")
}

// TestDispatch: every derivation of the graph is built on a host that
// fits, with its inputs copied there first; its output is valid on that
// host, holds the host's marker, and is back home; results name the host.
func TestDispatch(t *testing.T) {
	ev := &events{}
	f, home, dp := setup(t, twoHosts, 0, ev)
	drvs := fleettest.Graph(t)
	ctx := daemontest.Context(t, 2*time.Minute)
	rep, err := builder.Build(ctx, builder.DaemonStore(home), []string{drvs["top"], drvs["k"]}, builder.BuildOptions{PerDerivation: true, Executor: dp, Jobs: dp.Slots()})
	if err != nil || rep.Failed() {
		t.Fatalf("build: %+v, %v", rep, err)
	}
	if len(rep.Derivations) != 5 {
		t.Fatalf("%d derivations built, want 5", len(rep.Derivations))
	}
	for _, r := range rep.Derivations {
		host := strings.TrimPrefix(r.Machine, "ssh-ng://")
		out := r.Outputs["out"]
		valid, marker := f.BuiltOn(t, out)
		if marker != host || !slices.Contains(valid, host) {
			t.Errorf("%s: result names %q; output %s valid on %v, marker of %q", r.DrvPath, r.Machine, out, valid, marker)
		}
		data := readHome(t, home, out)
		if !strings.HasPrefix(data, f.Host(host).Marker+"\n") {
			t.Errorf("%s at home holds %q", out, data)
		}
		if got := ev.kinds(r.DrvPath); !slices.Equal(got, []string{"0@" + host, "1@" + host}) {
			t.Errorf("events of %s: %v", r.DrvPath, got)
		}
		if r.DrvPath == drvs["k"] && host != "h2" {
			t.Errorf("k (needs kvm) built on %s", host)
		}
	}
	// top read b and c, which read a: the inputs reached each host.
	if top := readHome(t, home, rep.Roots[0].Outputs["out"]); strings.Count(top, "built on") != 3 {
		t.Errorf("top holds %q, want its marker and the first lines of b and c", top)
	}
}

// TestDispatchMachineDrops: the machine building a slow derivation drops
// the connection mid-build; the derivation is built on the other machine.
// Without retries it fails, naming the machine lost.
func TestDispatchMachineDrops(t *testing.T) {
	// With two slots h1's sessions share an ssh master connection, which
	// the drop ends too.
	for _, tc := range []struct{ retries, slots int }{{0, 1}, {-1, 1}, {0, 2}} {
		retries := tc.retries
		t.Run(fmt.Sprintf("retries=%d,slots=%d", retries, tc.slots), func(t *testing.T) {
			ev := &events{}
			// h1 is faster: it gets the first build.
			f, home, dp := setup(t, func(f *fleettest.Fleet) string {
				return f.Machine("ssh-ng", "h1", tc.slots, 4, "", "") + "\n" + f.Machine("ssh-ng", "h2", 1, 1, "", "")
			}, retries, ev)
			drvs := fleettest.Graph(t, "--argstr", "slow", "a", "--argstr", "sleep", "5")
			ctx := daemontest.Context(t, 3*time.Minute)
			// Drop h1 once a's builder sleeps there: mid-build, however
			// slowly the machine got there.
			dropped := make(chan bool, 1)
			go func() {
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						dropped <- false
						return
					case <-tick.C:
					}
					if f.Host("h1").Running("sleep") {
						f.Host("h1").Drop()
						dropped <- true
						return
					}
				}
			}()
			rep, err := builder.Build(ctx, builder.DaemonStore(home), []string{drvs["a"]}, builder.BuildOptions{PerDerivation: true, Executor: dp, Jobs: 2})
			if err != nil {
				t.Fatal(err)
			}
			if !<-dropped {
				t.Fatal("a's builder never ran on h1")
			}
			got := ev.kinds(drvs["a"])
			if len(got) < 2 || got[0] != "0@h1" || got[1] != "2@h1" {
				t.Fatalf("events %v: want started on h1, then lost", got)
			}
			r := rep.Roots[0]
			if retries < 0 {
				if r.Status.Success() || !strings.Contains(r.Error, "lost the connection to the build machine (ssh-ng://h1") {
					t.Errorf("without retries: %+v", r)
				}
				return
			}
			if !r.Status.Success() || r.Machine != "ssh-ng://h2" {
				t.Fatalf("after the drop: %+v", r)
			}
			if valid, marker := f.BuiltOn(t, r.Outputs["out"]); marker != "h2" || !slices.Contains(valid, "h2") {
				t.Errorf("output valid on %v, marker %q", valid, marker)
			}
		})
	}
}

// TestDispatchUnreachable: a machine ssh cannot reach is left out (its
// error kept), the build goes to the next; with no machine for the
// system, Build fails naming the derivation.
func TestDispatchUnreachable(t *testing.T) {
	ev := &events{}
	f, home, dp := setup(t, func(f *fleettest.Fleet) string {
		return "ssh-ng://nowhere.invalid " + fleettest.System() + " - 1 9\n" + f.Machine("ssh-ng", "h1", 1, 1, "", "")
	}, 0, ev)
	drvs := fleettest.Graph(t)
	ctx := daemontest.Context(t, 2*time.Minute)
	rep, err := builder.Build(ctx, builder.DaemonStore(home), []string{drvs["b"]}, builder.BuildOptions{PerDerivation: true, Executor: dp, Jobs: 1})
	if err != nil || rep.Failed() {
		t.Fatalf("build: %+v, %v", rep, err)
	}
	for _, r := range rep.Derivations {
		if r.Machine != "ssh-ng://h1" {
			t.Errorf("%s built on %q", r.DrvPath, r.Machine)
		}
	}
	if got := ev.kinds(drvs["a"]); len(got) == 0 || got[0] != "2@nowhere.invalid" {
		t.Errorf("events of a: %v, want the unreachable machine lost first", got)
	}
	_ = f
	_, err = builder.Build(ctx, builder.DaemonStore(home), []string{drvs["k"]}, builder.BuildOptions{PerDerivation: true, Executor: dp, Jobs: 1})
	var nm *dispatch.NoMachineError
	if !errors.As(err, &nm) || nm.DrvPath != drvs["k"] || !strings.Contains(err.Error(), "features kvm") {
		t.Errorf("no machine with kvm: %v", err)
	}
}

// readHome reads a file of the home store (this machine's).
func readHome(t *testing.T, _ *daemon.Pool, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s at home: %v", path, err)
	}
	return string(data)
}

// TestDispatchHostKey: the eighth column is the only known host key ssh
// gets: the right key lets the build through; another host's key makes
// ssh refuse the machine, which is then out of the run.
func TestDispatchHostKey(t *testing.T) {
	f := fleettest.Start(t, 2, nil)
	home := daemontest.Start(t)
	s := daemon.DefaultSettings()
	s.Overrides = map[string]string{"substituters": ""}
	hp := daemon.NewPool(home.URI(), daemon.Options{Settings: &s}, 4)
	t.Cleanup(func() { hp.Close() })
	hostKey := func(h *remotetest.Host) string {
		data, err := os.ReadFile(h.SSH.KnownHosts)
		if err != nil {
			t.Fatal(err)
		}
		fields := strings.Fields(string(data))
		return base64.StdEncoding.EncodeToString([]byte(fields[1] + " " + fields[2]))
	}
	h1 := f.Host("h1")
	// No known_hosts but the machine's column, strict checking.
	sshOpts := []string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5"}
	for _, tc := range []struct {
		name, key string
		ok        bool
	}{
		{"right key", hostKey(h1), true},
		{"another host's key", hostKey(f.Host("h2")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := fmt.Sprintf("%s %s %s 1 1 - - %s", h1.URI("ssh-ng"), fleettest.System(), h1.SSH.Key, tc.key)
			ms, err := machines.Parse(spec, machines.Options{})
			if err != nil {
				t.Fatal(err)
			}
			dp, err := dispatch.New(dispatch.Options{Machines: ms.Machines, Home: hp, Copy: dispatch.StoreCopier,
				Daemon: daemon.Options{SSHOpts: sshOpts, Settings: &s, HandshakeTimeout: time.Minute}})
			if err != nil {
				t.Fatal(err)
			}
			defer dp.Close()
			drvs := fleettest.Graph(t)
			ctx := daemontest.Context(t, time.Minute)
			rep, err := builder.Build(ctx, builder.DaemonStore(hp), []string{drvs["a"]}, builder.BuildOptions{PerDerivation: true, Executor: dp, Jobs: 1})
			if tc.ok {
				if err != nil || rep.Failed() {
					t.Fatalf("build with the right host key: %+v, %v", rep, err)
				}
				return
			}
			if err == nil && !rep.Failed() {
				t.Fatalf("build went through with a wrong host key: %+v", rep)
			}
			msg := fmt.Sprint(err)
			if rep != nil && len(rep.Roots) > 0 {
				msg += rep.Roots[0].Error
			}
			if !strings.Contains(msg, "Host key verification failed") && !strings.Contains(msg, "REMOTE HOST IDENTIFICATION HAS CHANGED") {
				t.Errorf("wrong host key: %s", msg)
			}
		})
	}
}

// TestDispatchSharesLogin: the slots of a machine open their sessions
// through one ssh login (connection sharing): two builds at once on h1
// are two nix-daemon sessions there, and sshd saw one login.
func TestDispatchSharesLogin(t *testing.T) {
	ev := &events{}
	f, home, dp := setup(t, func(f *fleettest.Fleet) string {
		return f.Machine("ssh-ng", "h1", 3, 1, "", "")
	}, 0, ev)
	// b sleeps: c needs a second slot while b holds the first.
	drvs := fleettest.Graph(t, "--argstr", "slow", "b", "--argstr", "sleep", "2")
	ctx := daemontest.Context(t, 2*time.Minute)
	rep, err := builder.Build(ctx, builder.DaemonStore(home), []string{drvs["b"], drvs["c"]}, builder.BuildOptions{PerDerivation: true, Executor: dp, Jobs: dp.Slots()})
	if err != nil || rep.Failed() {
		t.Fatalf("build: %+v, %v", rep, err)
	}
	h := f.Host("h1")
	if got := h.Commands(t); len(got) != 2 {
		t.Errorf("sessions on h1: %q, want 2", got)
	}
	if n := strings.Count(h.SSH.Log(), "Accepted publickey"); n != 1 {
		t.Errorf("%d logins on h1, want 1 shared by the sessions:\n%s", n, h.SSH.Log())
	}
}

// TestDispatchSameOutput: four derivations with one output path (fixed
// output) built at once on two machines × two slots: each build copies
// the same path home; every build succeeds and the path is valid there.
func TestDispatchSameOutput(t *testing.T) {
	ev := &events{}
	f, home, dp := setup(t, func(f *fleettest.Fleet) string {
		return f.Machine("ssh-ng", "h1", 2, 1, "", "") + "\n" + f.Machine("ssh-ng", "h2", 2, 1, "", "")
	}, 0, ev)
	file, err := filepath.Abs("testdata/same-output.nix")
	if err != nil {
		t.Fatal(err)
	}
	// A new output path at home: its content is the nonce.
	nonce := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	sum := sha256.Sum256([]byte(nonce + "\n"))
	drvs := strings.Fields(nixtest.Output(t, "nix-instantiate", file, "--argstr", "nonce", nonce, "--argstr", "hash", hex.EncodeToString(sum[:])))
	if len(drvs) != 4 {
		t.Fatalf("nix-instantiate printed %q", drvs)
	}
	ctx := daemontest.Context(t, 2*time.Minute)
	rep, err := builder.Build(ctx, builder.DaemonStore(home), drvs, builder.BuildOptions{PerDerivation: true, Executor: dp, Jobs: dp.Slots()})
	if err != nil {
		t.Fatal(err)
	}
	results := rep.Derivations
	if len(results) != 4 {
		t.Errorf("%d builds, want 4: %+v", len(results), rep)
	}
	machinesUsed := map[string]bool{}
	for _, r := range results {
		if !r.Status.Success() {
			t.Errorf("%s on %s: %v %s", r.DrvPath, r.Machine, r.Status, r.Error)
		}
		machinesUsed[r.Machine] = true
		if data := readHome(t, home, r.Outputs["out"]); data != nonce+"\n" {
			t.Errorf("%s at home holds %q", r.Outputs["out"], data)
		}
	}
	if len(machinesUsed) != 2 {
		t.Errorf("built on %v, want both machines", machinesUsed)
	}
	_ = f
}

// TestDispatchSilentMachine: a machine with several slots that accepts
// the connection and never answers (a blackholed host, as far as ssh can
// tell) is left out after one connect timeout: its master's login is the
// only one tried, no slot logs in on its own after it. The build goes to
// the other machine.
func TestDispatchSilentMachine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})

	f := fleettest.Start(t, 1, nil)
	d := daemontest.Start(t)
	s := daemon.DefaultSettings()
	s.Overrides = map[string]string{"substituters": ""}
	home := daemon.NewPool(d.URI(), daemon.Options{Settings: &s}, 8)
	t.Cleanup(func() { home.Close() })
	spec := "ssh-ng://root@" + ln.Addr().String() + " " + fleettest.System() + " - 2 9\n" + f.Machine("ssh-ng", "h1", 1, 1, "", "")
	ms, err := machines.Parse(spec, machines.Options{DefaultSystem: fleettest.System()})
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	dp, err := dispatch.New(dispatch.Options{
		Machines: ms.Machines,
		Home:     home,
		Copy:     dispatch.StoreCopier,
		Daemon:   daemon.Options{SSHOpts: f.SSHOpts(), Settings: &s, ConnectTimeout: 2 * time.Second, HandshakeTimeout: time.Minute},
		OnEvent:  ev.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	drvs := fleettest.Graph(t)
	ctx := daemontest.Context(t, 2*time.Minute)
	rep, err := builder.Build(ctx, builder.DaemonStore(home), []string{drvs["b"]}, builder.BuildOptions{PerDerivation: true, Executor: dp, Jobs: 2})
	if err != nil || rep.Failed() {
		t.Fatalf("build: %+v, %v", rep, err)
	}
	for _, r := range rep.Derivations {
		if r.Machine != "ssh-ng://h1" {
			t.Errorf("%s built on %q", r.DrvPath, r.Machine)
		}
	}
	mu.Lock()
	n := len(conns)
	mu.Unlock()
	if n != 1 {
		t.Errorf("the silent machine was dialled %d times, want once (the master's login)", n)
	}
}
