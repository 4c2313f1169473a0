package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/poison-nix/poison/resolver"
	"github.com/poison-nix/poison/resolver/internal/regtest"
)

// TestBothFiles checks that resolve --nix writes the lock and poison.nix
// both or neither: a poison.nix that cannot be written (its directory is
// missing; its rename fails) leaves the previous lock as it was, and when
// even putting the previous lock back fails, the error says the lock
// changed and poison.nix did not.
func TestBothFiles(t *testing.T) {
	w := newWorld(t, baseEntries())
	ctx := context.Background()
	url := "file://" + w.bare

	setup := func(t *testing.T) (lockPath, nixPath string, oldLock, oldNix []byte) {
		proj := t.TempDir()
		lockPath, nixPath = filepath.Join(proj, "poison.lock"), filepath.Join(proj, "poison.nix")
		// The previous state: both files from the first commit.
		if _, _, err := resolver.Update(ctx, resolver.UpdateOptions{Options: w.opts(url), LockPath: lockPath, NixPath: nixPath}); err != nil {
			t.Fatal(err)
		}
		oldLock, _ = os.ReadFile(lockPath)
		oldNix, _ = os.ReadFile(nixPath)
		return
	}
	same := func(t *testing.T, path string, want []byte) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil || string(got) != string(want) {
			t.Errorf("%s changed (err %v)", filepath.Base(path), err)
		}
	}
	noTemps := func(t *testing.T, dir string) {
		t.Helper()
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("temporary file %s left behind", e.Name())
			}
		}
	}

	// Each case resolves a new commit.
	next := func(t *testing.T, name string) {
		w.repo.AddEntry(name, regtest.Entry(name+"-1.0", "incident "+name))
		w.push(false)
	}

	t.Run("poison.nix directory missing", func(t *testing.T) {
		lockPath, _, oldLock, _ := setup(t)
		next(t, "d1")
		bad := filepath.Join(filepath.Dir(lockPath), "missing", "poison.nix")
		_, _, err := resolver.Update(ctx, resolver.UpdateOptions{Options: w.opts(url), LockPath: lockPath, NixPath: bad})
		var we *resolver.WriteError
		if !errors.As(err, &we) || we.LockChanged || !strings.Contains(err.Error(), "neither") {
			t.Fatalf("err = %v, want a WriteError saying neither file changed", err)
		}
		same(t, lockPath, oldLock)
		noTemps(t, filepath.Dir(lockPath))
	})

	t.Run("lock directory missing", func(t *testing.T) {
		lockPath, nixPath, _, oldNix := setup(t)
		next(t, "d2")
		bad := filepath.Join(filepath.Dir(lockPath), "missing", "poison.lock")
		_, _, err := resolver.Update(ctx, resolver.UpdateOptions{Options: w.opts(url), LockPath: bad, NixPath: nixPath})
		if err == nil || !strings.Contains(err.Error(), "neither") {
			t.Fatalf("err = %v", err)
		}
		same(t, nixPath, oldNix)
		noTemps(t, filepath.Dir(nixPath))
	})

	t.Run("poison.nix rename fails", func(t *testing.T) {
		lockPath, nixPath, oldLock, oldNix := setup(t)
		next(t, "d3")
		o := resolver.WithRename(resolver.UpdateOptions{Options: w.opts(url), LockPath: lockPath, NixPath: nixPath},
			func(from, to string) error {
				if to == nixPath {
					return fmt.Errorf("injected failure")
				}
				return os.Rename(from, to)
			})
		_, _, err := resolver.Update(ctx, o)
		var we *resolver.WriteError
		if !errors.As(err, &we) || we.LockChanged {
			t.Fatalf("err = %v, want a WriteError with the lock put back", err)
		}
		same(t, lockPath, oldLock)
		same(t, nixPath, oldNix)
		noTemps(t, filepath.Dir(lockPath))
	})

	t.Run("poison.nix rename and restore fail", func(t *testing.T) {
		lockPath, nixPath, oldLock, oldNix := setup(t)
		next(t, "d4")
		renames := 0
		o := resolver.WithRename(resolver.UpdateOptions{Options: w.opts(url), LockPath: lockPath, NixPath: nixPath},
			func(from, to string) error {
				renames++
				if renames > 1 {
					return fmt.Errorf("injected failure %d", renames)
				}
				return os.Rename(from, to)
			})
		_, _, err := resolver.Update(ctx, o)
		var we *resolver.WriteError
		if !errors.As(err, &we) || !we.LockChanged {
			t.Fatalf("err = %v, want a WriteError saying the lock changed", err)
		}
		if !strings.Contains(err.Error(), lockPath+" was updated but "+nixPath+" was not") {
			t.Errorf("message %q does not say which file changed", err)
		}
		if got, _ := os.ReadFile(lockPath); string(got) == string(oldLock) {
			t.Error("the lock did not change, yet the error says it did")
		}
		same(t, nixPath, oldNix)
		noTemps(t, filepath.Dir(lockPath))
	})

	t.Run("both written", func(t *testing.T) {
		lockPath, nixPath, oldLock, oldNix := setup(t)
		next(t, "d5")
		if _, _, err := resolver.Update(ctx, resolver.UpdateOptions{Options: w.opts(url), LockPath: lockPath, NixPath: nixPath}); err != nil {
			t.Fatal(err)
		}
		l, _ := os.ReadFile(lockPath)
		n, _ := os.ReadFile(nixPath)
		if string(l) == string(oldLock) || string(n) == string(oldNix) {
			t.Error("a file was not updated")
		}
		if !strings.Contains(string(n), w.repo.Head()) || !strings.Contains(string(l), w.repo.Head()) {
			t.Error("the files do not both pin the new commit")
		}
	})
}
