package dispatch

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/poison-nix/poison/fleet/machines"
)

// scheduler hands out build slots on machines: per derivation the
// machine Nix's build hook would pick (the system and features fit, a
// slot is free, the least load per speed factor, then the fastest, then
// the least loaded), waiting while every fitting machine is busy.
type scheduler struct {
	mu       sync.Mutex
	machines []machines.Machine
	running  []int   // builds in progress per machine
	disabled []error // why a machine is out of the run; nil when usable
	changed  chan struct{}
}

func newScheduler(ms []machines.Machine) *scheduler {
	return &scheduler{
		machines: ms,
		running:  make([]int, len(ms)),
		disabled: make([]error, len(ms)),
		changed:  make(chan struct{}),
	}
}

// NoMachineError says that no machine can build a derivation.
type NoMachineError struct {
	DrvPath  string
	System   string
	Features []string
	// Disabled are the machines that could have but are out of the run,
	// with the reason.
	Disabled []string
	// Machines are all machines, in the machines format.
	Machines []string
}

func (e *NoMachineError) Error() string {
	feats := "no required features"
	if len(e.Features) > 0 {
		feats = "features " + strings.Join(e.Features, ",")
	}
	msg := fmt.Sprintf("no machine builds %s (system %s, %s) among %d", e.DrvPath, e.System, feats, len(e.Machines))
	if len(e.Disabled) > 0 {
		msg += "; unreachable: " + strings.Join(e.Disabled, "; ")
	}
	return msg
}

// acquire waits for a slot on a machine that can build system with
// features, skipping the machines in exclude, and returns its index.
// Release the slot with release.
func (s *scheduler) acquire(ctx context.Context, drv, system string, features []string, exclude map[int]bool) (int, error) {
	for {
		s.mu.Lock()
		best, fits := -1, false
		var disabled []string
		for i := range s.machines {
			m := &s.machines[i]
			if !m.CanBuild(system, features) || exclude[i] {
				continue
			}
			if s.disabled[i] != nil {
				disabled = append(disabled, m.URI+": "+s.disabled[i].Error())
				continue
			}
			fits = true
			if s.running[i] >= m.MaxJobs {
				continue
			}
			if best < 0 || s.better(i, best) {
				best = i
			}
		}
		if best >= 0 {
			s.running[best]++
			s.mu.Unlock()
			return best, nil
		}
		if !fits {
			s.mu.Unlock()
			e := &NoMachineError{DrvPath: drv, System: system, Features: features, Disabled: disabled}
			for _, m := range s.machines {
				e.Machines = append(e.Machines, m.String())
			}
			return -1, e
		}
		wait := s.changed
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return -1, ctx.Err()
		}
	}
}

// better reports whether machine i is a better choice than j (Nix's
// build hook order).
func (s *scheduler) better(i, j int) bool {
	mi, mj := &s.machines[i], &s.machines[j]
	li, lj := float64(s.running[i])/mi.SpeedFactor, float64(s.running[j])/mj.SpeedFactor
	switch {
	case li != lj:
		return li < lj
	case mi.SpeedFactor != mj.SpeedFactor:
		return mi.SpeedFactor > mj.SpeedFactor
	}
	return s.running[i] < s.running[j]
}

// release frees a slot of machine i.
func (s *scheduler) release(i int) {
	s.mu.Lock()
	s.running[i]--
	s.notify()
	s.mu.Unlock()
}

// disable takes machine i out of the run (it cannot be reached).
func (s *scheduler) disable(i int, why error) {
	s.mu.Lock()
	if s.disabled[i] == nil {
		s.disabled[i] = why
	}
	s.notify()
	s.mu.Unlock()
}

// notify wakes the waiters; s.mu is held.
func (s *scheduler) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// slots returns how many builds the usable machines run at once.
func (s *scheduler) slots() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i, m := range s.machines {
		if s.disabled[i] == nil {
			n += m.MaxJobs
		}
	}
	return n
}

// load returns the running builds per machine (tests).
func (s *scheduler) load() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.running)
}
