package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/fleettest"
	"github.com/poison-nix/poison/internal/nixtest"
)

type fleetRun struct {
	code           int
	stdout, stderr string
}

// runPoison runs poison in dir with the test's Nix settings and vars.
func runFleetPoison(t testing.TB, dir string, vars map[string]string, args ...string) fleetRun {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, now: time.Now, dir: dir,
		getenv: func(k string) string {
			if v, ok := vars[k]; ok {
				return v
			}
			if k == "NIX_CONFIG" {
				return nixtest.Config
			}
			return ""
		}}
	code := run(args, e)
	return fleetRun{code, stdout.String(), stderr.String()}
}

func writeLock(t testing.TB, dir string, drvs ...string) string {
	t.Helper()
	var entries []string
	for _, d := range drvs {
		entries = append(entries, fmt.Sprintf("%q:1", filepath.Base(d)))
	}
	lk := fmt.Sprintf(`{"version":1,"registry":{"url":"file:///srv/registry","ref":"main","commit":"%s"},"env":"POISON_SERIAL","derivations":{%s},"outputs":{},"names":{}}`,
		strings.Repeat("ab", 20), strings.Join(entries, ","))
	p := filepath.Join(dir, "poison.lock")
	if err := os.WriteFile(p, []byte(lk), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBuildPerDerivationFleet: `poison build --per-derivation --builders
// @FILE` rewrites the closure (b poisoned) and builds every derivation on
// a host of the fleet: its output is valid there and holds the host's
// marker, it is back in the home store, and --json and the progress name
// the machine of each build. The home daemon builds nothing itself.
func TestBuildPerDerivationFleet(t *testing.T) {
	f := fleettest.Start(t, 2, fleettest.KVMOnSecond)
	home := daemontest.Start(t)
	dir := t.TempDir()
	drvs := fleettest.Graph(t)
	lockFile := writeLock(t, dir, drvs["b"])
	machines := f.MachinesFile(t, "machines", f.Machine("ssh-ng", "h1", 2, 1, "", ""), f.Machine("ssh-ng", "h2", 2, 1, "kvm", ""))
	vars := map[string]string{"NIX_SSHOPTS": f.NixSSHOpts(), "NIX_CONF_DIR": dir}

	r := runFleetPoison(t, dir, vars, "build", "--lock", lockFile, "--store", home.URI(), "--per-derivation", "--builders", "@"+machines, "--json", drvs["top"], drvs["k"])
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var doc []buildResultJSON
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc) != 2 {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if doc[0].OriginalDrvPath != drvs["top"] || doc[0].DrvPath == drvs["top"] {
		t.Errorf("top not rewritten: %+v", doc[0])
	}
	if len(doc[0].Builds) != 5 {
		t.Fatalf("builds %+v, want the 5 derivations", doc[0].Builds)
	}
	for i, root := range doc {
		if !strings.HasPrefix(root.Machine, "ssh-ng://h") {
			t.Errorf("root %d names machine %q", i, root.Machine)
		}
		host := strings.TrimPrefix(root.Machine, "ssh-ng://")
		out := root.Outputs["out"]
		valid, marker := f.BuiltOn(t, out)
		if marker != host || !slices.Contains(valid, host) {
			t.Errorf("root %d: %s valid on %v, marker of %q, JSON says %s", i, out, valid, marker, root.Machine)
		}
		if data, err := os.ReadFile(out); err != nil || !strings.HasPrefix(string(data), f.Host(host).Marker) {
			t.Errorf("root %d at home: %q, %v", i, data, err)
		}
	}
	if doc[1].Machine != "ssh-ng://h2" {
		t.Errorf("k (needs kvm) built on %s", doc[1].Machine)
	}
	for _, b := range doc[0].Builds {
		if !strings.Contains(r.stderr, fmt.Sprintf("building '%s' on '%s'", b.DrvPath, b.Machine)) {
			t.Errorf("progress does not say %s was built on %s:\n%s", b.DrvPath, b.Machine, r.stderr)
		}
	}
}

// TestBuildPerDerivationSetup: a setup that cannot build fails with one
// clear error instead of building on the home store.
func TestBuildPerDerivationSetup(t *testing.T) {
	home := daemontest.Start(t)
	dir := t.TempDir()
	drvs := fleettest.Graph(t)
	lockFile := writeLock(t, dir)
	vars := map[string]string{"NIX_CONF_DIR": dir}
	for _, tc := range []struct {
		name      string
		args      []string
		err, hint string
	}{
		{"max-jobs 0 without builders", []string{"-j", "0"}, "--per-derivation with max-jobs 0 and no builders", "pass --builders"},
		{"missing machines file", []string{"--builders", "@" + filepath.Join(dir, "nope")}, "--builders: no machine: " + filepath.Join(dir, "nope") + " does not exist", "machines format"},
		{"bad entry", []string{"--builders", "ssh-ng://h1 x86_64-linux - lots"}, `--builders: builders entry 1: bad machine specification "ssh-ng://h1 x86_64-linux - lots": column 4 (max jobs)`, "URI SYSTEMS SSH-KEY"},
		{"no machine for the system", []string{"--builders", "ssh-ng://h1 mips-linux - 1"}, "no machine builds " + drvs["a"] + " (system " + fleettest.System(), "add a machine for that system"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"build", "--lock", lockFile, "--store", home.URI(), "--per-derivation"}, tc.args...)
			r := runFleetPoison(t, dir, vars, append(args, drvs["a"])...)
			if r.code == 0 || !strings.Contains(r.stderr, "poison: error: build: "+tc.err) || !strings.Contains(r.stderr, "poison: hint: ") || !strings.Contains(r.stderr, tc.hint) {
				t.Errorf("exit %d, stderr:\n%s\nwant error %q and hint %q", r.code, r.stderr, tc.err, tc.hint)
			}
			if _, err := os.Stat(strings.TrimSpace(nixtest.Output(t, "nix-store", "-q", "--outputs", drvs["a"]))); err == nil {
				t.Errorf("a was built at home")
			}
		})
	}
}

// TestBuildUnit: a coordinated unit whose derivation c fails writes a
// draft registry entry (group = the unit, the reason naming c) that
// poisons what built in the run (a and b), prints its path, commits
// nothing and exits with the build's status; per derivation on the fleet
// and in the daemon's default mode.
func TestBuildUnit(t *testing.T) {
	f := fleettest.Start(t, 1, nil)
	for _, perDrv := range []bool{true, false} {
		t.Run(fmt.Sprintf("per-derivation=%v", perDrv), func(t *testing.T) {
			home := daemontest.Start(t)
			dir := t.TempDir()
			reg := filepath.Join(dir, "registry")
			if r := runFleetPoison(t, dir, nil, "init", reg); r.code != 0 {
				t.Fatalf("init: %d %s", r.code, r.stderr)
			}
			drvs := fleettest.Graph(t, "--argstr", "fail", "c", "--argstr", "slow", "c", "--argstr", "sleep", "1")
			lockFile := writeLock(t, dir)
			args := []string{"build", "--lock", lockFile, "--store", home.URI(), "-k", "--unit", "release-42", "--registry", reg}
			vars := map[string]string{"NIX_CONF_DIR": dir}
			if perDrv {
				vars["NIX_SSHOPTS"] = f.NixSSHOpts()
				args = append(args, "--per-derivation", "--builders", f.Machine("ssh-ng", "h1", 1, 1, "", ""))
			}
			r := runFleetPoison(t, dir, vars, append(args, drvs["top"])...)
			if r.code != 100 {
				t.Fatalf("exit %d, want 100 (a build failed)\n%s", r.code, r.stderr)
			}
			entries, _ := filepath.Glob(filepath.Join(reg, "entries", "*", "*", "*.toml"))
			if len(entries) != 1 || !strings.Contains(r.stderr, "\n"+strings.TrimPrefix(entries[0], dir+"/")+"\n") {
				t.Fatalf("entries %v; stderr:\n%s", entries, r.stderr)
			}
			data, err := os.ReadFile(entries[0])
			if err != nil {
				t.Fatal(err)
			}
			entry := string(data)
			for _, want := range []string{`group  = "release-42"`, "Coordinated unit release-42 failed: c (" + drvs["c"] + "): its builder failed", filepath.Base(drvs["a"]), filepath.Base(drvs["b"])} {
				if !strings.Contains(entry, want) {
					t.Errorf("entry lacks %q:\n%s", want, entry)
				}
			}
			for _, not := range []string{filepath.Base(drvs["c"]) + `"`, filepath.Base(drvs["top"])} {
				if strings.Contains(entry, "\""+not) {
					t.Errorf("entry poisons %s, which did not build:\n%s", not, entry)
				}
			}
			if r := runFleetPoison(t, dir, nil, "lint", "--registry", reg); r.code != 0 {
				t.Errorf("lint of the draft: %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			out, err := exec.Command("git", "-C", reg, "status", "--porcelain").Output()
			if err != nil || !strings.Contains(string(out), "?? entries/") {
				t.Errorf("git status %q, %v: want the draft untracked", out, err)
			}
		})
	}
}

// TestBuildBuildersDefaultMode: in the default mode --builders @FILE (a
// relative path) goes to the daemon as its builders setting, made
// absolute; with -j 0 the daemon's own build hook builds on the host.
func TestBuildBuildersDefaultMode(t *testing.T) {
	f := fleettest.Start(t, 1, nil)
	d := f.StartNixDaemon(t, "", "")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "machines"), []byte(f.Machine("ssh-ng", "h1", 1, 1, "", "")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	drvs := fleettest.Graph(t)
	lockFile := writeLock(t, dir, drvs["a"])
	r := runFleetPoison(t, dir, map[string]string{"NIX_CONF_DIR": dir}, "build", "--lock", lockFile, "--store", d.URI(), "-j", "0", "--builders", "@machines", "--print-out-paths", drvs["b"])
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	out := strings.TrimSpace(r.stdout)
	if valid, marker := f.BuiltOn(t, out); marker != "h1" || !slices.Contains(valid, "h1") {
		t.Errorf("%s valid on %v, marker %q; want built on h1 by Nix's build hook", out, valid, marker)
	}
}
