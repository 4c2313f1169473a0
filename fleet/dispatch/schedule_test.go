package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/fleet/machines"
)

func parse(t *testing.T, spec string) []machines.Machine {
	t.Helper()
	s, err := machines.Parse(spec, machines.Options{DefaultSystem: "x86_64-linux"})
	if err != nil {
		t.Fatal(err)
	}
	return s.Machines
}

// TestSchedulerPicks: successive acquires without release go where Nix's
// build hook would send them.
func TestSchedulerPicks(t *testing.T) {
	for _, tc := range []struct {
		name     string
		spec     string
		system   string
		features []string
		want     string // machine host per acquire, in order
	}{
		{"fills by load", "a - - 2; b - - 2", "x86_64-linux", nil, "a b a b"},
		{"speed factor weighs load", "a - - 4 1; b - - 4 2", "x86_64-linux", nil, "b a b b a b a a"},
		{"system", "a aarch64-linux - 4; b x86_64-linux - 1", "x86_64-linux", nil, "b"},
		{"builtin runs anywhere", "a aarch64-linux - 1", "builtin", nil, "a"},
		{"features", "a - - 4; b - - 2 1 kvm", "x86_64-linux", []string{"kvm"}, "b b"},
		{"mandatory only when required", "a - - 1; b - - 4 9 - bench", "x86_64-linux", nil, "a"},
		{"mandatory met", "a - - 1 9; b - - 4 1 - bench", "x86_64-linux", []string{"bench"}, "b b b b"},
		{"zero jobs never", "a - - 0; b - - 1", "x86_64-linux", nil, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScheduler(parse(t, tc.spec))
			var got []string
			for range strings.Fields(tc.want) {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				i, err := s.acquire(ctx, "/nix/store/x.drv", tc.system, tc.features, nil)
				cancel()
				if err != nil {
					t.Fatalf("after %v: %v", got, err)
				}
				got = append(got, strings.TrimPrefix(s.machines[i].URI, "ssh://"))
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("picked %v, want %s", got, tc.want)
			}
		})
	}
}

func TestSchedulerWaitsForASlot(t *testing.T) {
	s := newScheduler(parse(t, "a - - 1"))
	i, err := s.acquire(context.Background(), "x", "x86_64-linux", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := s.acquire(context.Background(), "y", "x86_64-linux", nil, nil)
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("second acquire returned %v while the only slot is taken", err)
	case <-time.After(50 * time.Millisecond):
	}
	s.release(i)
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("release did not wake the waiter")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.acquire(ctx, "z", "x86_64-linux", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("acquire on a full machine after the deadline: %v", err)
	}
}

func TestSchedulerNoMachine(t *testing.T) {
	s := newScheduler(parse(t, "a - - 1; b - - 1 1 kvm"))
	var nm *NoMachineError
	if _, err := s.acquire(context.Background(), "/nix/store/x.drv", "aarch64-linux", nil, nil); !errors.As(err, &nm) || !strings.Contains(err.Error(), "system aarch64-linux") {
		t.Errorf("wrong system: %v", err)
	}
	if _, err := s.acquire(context.Background(), "x", "x86_64-linux", []string{"gpu"}, nil); !errors.As(err, &nm) || !strings.Contains(err.Error(), "features gpu") {
		t.Errorf("missing feature: %v", err)
	}
	// Excluded and disabled machines do not count; waiting on them would
	// never end.
	s.disable(0, errors.New("connection refused"))
	_, err := s.acquire(context.Background(), "x", "x86_64-linux", nil, map[int]bool{1: true})
	if !errors.As(err, &nm) || !strings.Contains(err.Error(), "ssh://a: connection refused") {
		t.Errorf("all fitting machines out: %v", err)
	}
	if n := s.slots(); n != 1 {
		t.Errorf("slots() = %d with a disabled, want 1", n)
	}
	if i, err := s.acquire(context.Background(), "x", "x86_64-linux", []string{"kvm"}, nil); err != nil || i != 1 {
		t.Errorf("b with kvm: %d, %v", i, err)
	}
	if fmt.Sprint(s.load()) != "[0 1]" {
		t.Errorf("load %v", s.load())
	}
}
