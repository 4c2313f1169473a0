package main

import (
	"os"
	"testing"

	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"poison": func() { os.Exit(run(os.Args[1:], newEnv())) },
	})
}

// TestScripts runs the CLI scenarios in testdata/script/*.txtar. Scripts
// that need Nix start with [!nix] skip; under POISON_REQUIRE_NIX=1 (set by
// .ci/run) a missing Nix fails the test instead.
func TestScripts(t *testing.T) {
	hasNix := nixtest.Available()
	if !hasNix && nixtest.Required() {
		t.Fatal("Nix is required (POISON_REQUIRE_NIX=1) but nix-instantiate is not usable")
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			for _, kv := range nixtest.Environ() {
				env.Vars = append(env.Vars, kv)
			}
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "nix":
				return hasNix, nil
			}
			return false, nil
		},
		RequireExplicitExec: true,
	})
}
