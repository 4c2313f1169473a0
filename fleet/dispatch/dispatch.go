// Package dispatch builds derivations one by one on a fleet of remote
// machines, for `poison build --per-derivation --builders`: per derivation
// it picks a machine as Nix's build hook would (fleet/machines), copies the
// inputs the machine lacks from the home store, sends BuildDerivation
// there, and copies the outputs back home. A Dispatcher is a
// builder.Executor.
//
// A machine that drops the connection (or cannot be reached) during a
// build is left out for that derivation, which is tried on another machine
// that fits, up to Options.Retries more times; then the derivation fails
// with a message naming every machine tried. A machine that cannot be
// reached at all is left out of the rest of the run.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/fleet/machines"
)

// Copier copies the closure of paths from one store to another, skipping
// what the destination already has.
type Copier interface {
	CopyClosure(ctx context.Context, from, to *daemon.Conn, paths []string) error
}

// CopierFunc adapts a function to Copier.
type CopierFunc func(ctx context.Context, from, to *daemon.Conn, paths []string) error

// CopyClosure calls f.
func (f CopierFunc) CopyClosure(ctx context.Context, from, to *daemon.Conn, paths []string) error {
	return f(ctx, from, to, paths)
}

// Options configures a Dispatcher.
type Options struct {
	// Machines are the build machines (machines.Parse).
	Machines []machines.Machine
	// Home is the store the inputs are in and the outputs go back to.
	Home *daemon.Pool
	// Copy moves store paths between home and the machines.
	Copy Copier
	// Daemon is the base of the connection options for the machines:
	// SSHOpts (NIX_SSHOPTS), StoreDir, timeouts, Log. Settings are sent
	// with one build job per connection.
	Daemon daemon.Options
	// Retries is how many other machines a derivation is tried on after
	// its machine was lost; 2 when 0, none when negative.
	Retries int
	// OnEvent receives what happens, for progress. May be nil; called
	// from several goroutines.
	OnEvent func(Event)
}

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	// Started: the derivation goes to Machine (its inputs are copied,
	// then it is built).
	Started EventKind = iota
	// Finished: the build on Machine ended (Err is nil even when the
	// build failed; see the result).
	Finished
	// Lost: the connection to Machine broke (Err says how); the
	// derivation is tried elsewhere or fails.
	Lost
)

// Event is a step of one derivation's dispatch.
type Event struct {
	Kind    EventKind
	DrvPath string
	Machine string
	Err     error
}

// Dispatcher builds derivations on machines. It is a builder.Executor.
type Dispatcher struct {
	opts  Options
	sched *scheduler
	pools []*daemon.Pool
	// masters share one ssh login among the slots of each ssh-ng
	// machine (nil entries: no sharing).
	masters []*sshMaster
	tmp     string // known_hosts files, ssh control sockets
	homeMu  sync.Mutex
}

// New checks the machines and prepares connections (it dials nothing).
func New(opts Options) (*Dispatcher, error) {
	if len(opts.Machines) == 0 {
		return nil, errors.New("dispatch: no build machines")
	}
	if opts.Home == nil || opts.Copy == nil {
		return nil, errors.New("dispatch: no home store or copier")
	}
	d := &Dispatcher{opts: opts, sched: newScheduler(opts.Machines)}
	settings := daemon.DefaultSettings()
	if opts.Daemon.Settings != nil {
		settings = *opts.Daemon.Settings
	}
	settings.MaxBuildJobs = 1
	for _, m := range opts.Machines {
		uri, err := storeURI(m)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("dispatch: machine %s (%s): %w", m.URI, m.Source, err)
		}
		o := opts.Daemon
		o.Settings = &settings
		o.SSHOpts = slices.Clone(o.SSHOpts)
		// A machine that vanishes without closing the connection would
		// leave a build waiting forever: ssh gives up after about a
		// minute of silence (options given earlier take precedence).
		o.SSHOpts = append(o.SSHOpts, "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4")
		if key := m.PublicHostKey(); key != "" && strings.HasPrefix(uri, "ssh-ng://") {
			kh, err := d.knownHosts(uri, key)
			if err != nil {
				d.Close()
				return nil, err
			}
			o.SSHOpts = append(o.SSHOpts, "-o", "UserKnownHostsFile="+kh)
		}
		var master *sshMaster
		if m.MaxJobs > 1 && strings.HasPrefix(uri, "ssh-ng://") {
			if err := d.mkTemp(); err != nil {
				d.Close()
				return nil, err
			}
			var mux []string
			master, mux = newSSHMaster(uri, o, filepath.Join(d.tmp, fmt.Sprintf("mux-%d", len(d.pools))))
			o.SSHOpts = append(o.SSHOpts, mux...)
		}
		d.masters = append(d.masters, master)
		d.pools = append(d.pools, daemon.NewPool(uri, o, max(m.MaxJobs, 1)))
	}
	return d, nil
}

// storeURI returns the URI poison dials for m: ssh:// machines are
// reached with the daemon protocol (ssh-ng://, nix-daemon on the machine),
// the ssh key column becomes ssh-key=.
func storeURI(m machines.Machine) (string, error) {
	uri := m.URI
	if rest, ok := strings.CutPrefix(uri, "ssh://"); ok {
		if strings.Contains(rest, "remote-program=") {
			return "", errors.New("ssh:// with remote-program= names a nix-store program; poison speaks to nix-daemon: write ssh-ng://")
		}
		uri = "ssh-ng://" + rest
	}
	if !strings.HasPrefix(uri, "ssh-ng://") {
		return uri, nil
	}
	u, err := url.Parse(uri)
	if err != nil {
		return "", err
	}
	if m.SSHKey != "" {
		q := u.Query()
		if q.Get("ssh-key") == "" {
			q.Set("ssh-key", m.SSHKey)
			u.RawQuery = q.Encode()
		}
	}
	return u.String(), nil
}

// knownHosts writes a known_hosts file holding the machine's host key.
func (d *Dispatcher) knownHosts(uri, key string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", err
	}
	host := u.Hostname()
	if p := u.Port(); p != "" {
		host = "[" + host + "]:" + p
	}
	if err := d.mkTemp(); err != nil {
		return "", err
	}
	f := filepath.Join(d.tmp, fmt.Sprintf("known_hosts-%d", len(d.pools)))
	if err := os.WriteFile(f, []byte(host+" "+key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("dispatch: %w", err)
	}
	return f, nil
}

// mkTemp creates the temporary directory (private to the user).
func (d *Dispatcher) mkTemp() error {
	if d.tmp != "" {
		return nil
	}
	dir, err := os.MkdirTemp("", "poison-dispatch-")
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	d.tmp = dir
	return nil
}

// Slots returns how many builds the machines run at once.
func (d *Dispatcher) Slots() int { return d.sched.slots() }

// Close closes the idle connections and removes temporary files.
func (d *Dispatcher) Close() error {
	var errs []error
	for _, p := range d.pools {
		errs = append(errs, p.Close())
	}
	for _, m := range d.masters {
		errs = append(errs, m.close())
	}
	if d.tmp != "" {
		errs = append(errs, os.RemoveAll(d.tmp))
	}
	return errors.Join(errs...)
}

func (d *Dispatcher) emit(e Event) {
	if d.opts.OnEvent != nil {
		d.opts.OnEvent(e)
	}
}

// BuildDerivation builds job on a machine that fits and copies its
// outputs home (builder.Executor).
func (d *Dispatcher) BuildDerivation(ctx context.Context, job builder.Job) (builder.DrvResult, error) {
	retries := d.opts.Retries
	if retries == 0 {
		retries = 2
	}
	exclude := map[int]bool{}
	var lost []string
	for {
		i, err := d.sched.acquire(ctx, job.DrvPath, job.Derivation.Platform, job.RequiredFeatures, exclude)
		var nm *NoMachineError
		if errors.As(err, &nm) && len(lost) > 0 {
			return lostResult(job, lost, "no other machine fits"), nil
		}
		if err != nil {
			return builder.DrvResult{}, err
		}
		res, dropped, err := d.buildOn(ctx, i, job)
		d.sched.release(i)
		if err == nil {
			return res, nil
		}
		if !dropped || ctx.Err() != nil {
			return builder.DrvResult{}, err
		}
		uri := d.opts.Machines[i].URI
		d.emit(Event{Kind: Lost, DrvPath: job.DrvPath, Machine: uri, Err: err})
		lost = append(lost, fmt.Sprintf("%s: %v", uri, err))
		exclude[i] = true
		if len(lost) > max(retries, 0) {
			return lostResult(job, lost, fmt.Sprintf("gave up after %d machines", len(lost))), nil
		}
	}
}

// lostResult is the failure of a derivation whose machines were lost.
func lostResult(job builder.Job, lost []string, why string) builder.DrvResult {
	return builder.DrvResult{
		DrvPath: job.DrvPath,
		Status:  daemon.MiscFailure,
		Error:   fmt.Sprintf("lost the connection to the build machine (%s; %s)", strings.Join(lost, "; "), why),
	}
}

// buildOn copies the inputs of job to machine i, builds it there and
// copies the outputs home. dropped reports that the error is the
// machine's connection: the job may go elsewhere.
func (d *Dispatcher) buildOn(ctx context.Context, i int, job builder.Job) (res builder.DrvResult, dropped bool, err error) {
	m := &d.opts.Machines[i]
	pool := d.pools[i]
	if err := d.masters[i].ensure(ctx); err != nil {
		// The machine did not answer the master's login: leave it out
		// now rather than wait as long again for a login of the slot's.
		d.sched.disable(i, err)
		return res, true, fmt.Errorf("connect: %w", err)
	}
	c, err := pool.Get(ctx)
	if err != nil {
		var pe *daemon.ProtocolError
		if errors.As(err, &pe) {
			d.sched.disable(i, err)
			return res, true, fmt.Errorf("connect: %w", err)
		}
		return res, false, fmt.Errorf("build %s on %s: %w", job.DrvPath, m.URI, err)
	}
	failed := true
	defer func() { pool.Put(c, failed) }()
	d.emit(Event{Kind: Started, DrvPath: job.DrvPath, Machine: m.URI})
	start := time.Now()

	// Inputs: what the machine lacks of their closure, from home.
	if ins := job.Derivation.InputSrcs; len(ins) > 0 {
		if err := d.withHome(ctx, func(home *daemon.Conn) error {
			return d.opts.Copy.CopyClosure(ctx, home, c, ins)
		}); err != nil {
			return res, c.Broken() != nil, fmt.Errorf("copy the inputs of %s to %s: %w", job.DrvPath, m.URI, err)
		}
		if err := c.AddTempRoots(ctx, ins); err != nil {
			return res, c.Broken() != nil, fmt.Errorf("protect the inputs of %s on %s: %w", job.DrvPath, m.URI, err)
		}
	}
	br, err := c.BuildDerivation(ctx, job.DrvPath, job.Derivation, daemon.BuildNormal)
	if err != nil {
		var de *daemon.Error
		switch {
		case errors.As(err, &de) && de.NotTrusted():
			return res, false, fmt.Errorf("build %s on %s: %w (%s)", job.DrvPath, m.URI, builder.ErrNotTrusted, de.Message)
		case errors.As(err, &de):
			// The machine refused this derivation: a failure of the
			// build, not of the machine.
			failed = false
			d.emit(Event{Kind: Finished, DrvPath: job.DrvPath, Machine: m.URI})
			return builder.DrvResult{DrvPath: job.DrvPath, Status: daemon.MiscFailure, Error: de.Message, StartTime: start, StopTime: time.Now(), Machine: m.URI}, false, nil
		}
		return res, c.Broken() != nil, fmt.Errorf("build %s on %s: %w", job.DrvPath, m.URI, err)
	}
	res = builder.DrvResult{DrvPath: job.DrvPath, Outputs: br.BuiltOutputs, Status: br.Status, Error: br.ErrorMsg, StartTime: br.StartTime, StopTime: br.StopTime, Machine: m.URI}
	if res.StartTime.IsZero() {
		res.StartTime, res.StopTime = start, time.Now()
	}
	if res.Status.Success() {
		outs := outputPaths(job, br)
		if err := d.withHome(ctx, func(home *daemon.Conn) error {
			// One copy into the home store at a time: builds that end
			// together could otherwise send it the same path at once
			// (fixed-output derivations that differ but share their
			// output path), racing each other for its locks. The
			// copies to the machines stay parallel.
			d.homeMu.Lock()
			defer d.homeMu.Unlock()
			if err := d.opts.Copy.CopyClosure(ctx, c, home, outs); err != nil {
				return err
			}
			return home.AddTempRoots(ctx, outs)
		}); err != nil {
			return res, c.Broken() != nil, fmt.Errorf("copy the outputs of %s from %s: %w", job.DrvPath, m.URI, err)
		}
		if len(res.Outputs) == 0 {
			res.Outputs = map[string]string{}
			for _, o := range job.Derivation.Outputs {
				res.Outputs[o.Name] = o.Path
			}
		}
	}
	failed = false
	d.emit(Event{Kind: Finished, DrvPath: job.DrvPath, Machine: m.URI})
	return res, false, nil
}

// outputPaths returns the output paths of a finished build.
func outputPaths(job builder.Job, br *daemon.BuildResult) []string {
	var outs []string
	for _, p := range br.BuiltOutputs {
		outs = append(outs, p)
	}
	if len(outs) == 0 {
		for _, o := range job.Derivation.Outputs {
			if o.Path != "" {
				outs = append(outs, o.Path)
			}
		}
	}
	slices.Sort(outs)
	return outs
}

// withHome runs f with a connection to the home store.
func (d *Dispatcher) withHome(ctx context.Context, f func(*daemon.Conn) error) error {
	return d.opts.Home.Do(ctx, f)
}
