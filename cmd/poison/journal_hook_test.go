package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/hooks"
	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/provenance"
)

// hookFixture is a private nix-daemon whose post-build-hook is the script
// 'poison hooks install --post-build' writes, running this test binary as
// poison.
type hookFixture struct {
	dir, journal string
	daemon       *daemontest.Daemon
}

func startHookDaemon(t *testing.T, journal, host string) *hookFixture {
	return startHookDaemonWith(t, journal, host, "")
}

// startHookDaemonWith is startHookDaemon with the hook script running the
// poison-journal-hook binary hookBin (when not "").
func startHookDaemonWith(t *testing.T, journal, host, hookBin string) *hookFixture {
	t.Helper()
	nixtest.Need(t)
	dir := daemontest.WorldDir(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	poison := filepath.Join(dir, "poison") // testscript.Main runs the CLI when called "poison"
	if err := os.Symlink(self, poison); err != nil {
		t.Fatal(err)
	}
	if journal == "" {
		journal = filepath.Join(dir, "journal.jsonl")
	}
	script := filepath.Join(dir, "post-build-hook")
	if _, err := hooks.InstallPostBuild(script, hooks.PostBuildOptions{Poison: poison, Hook: hookBin, Journal: journal, Host: host}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NIX_CONFIG", "post-build-hook = "+script+"\n"+os.Getenv("NIX_CONFIG"))
	return &hookFixture{dir: dir, journal: journal, daemon: daemontest.Start(t)}
}

// build instantiates testdata/provenance/wide.nix and builds it through the
// daemon with -j jobs; it returns the .drv paths.
func (f *hookFixture) build(t *testing.T, n, jobs int) []string {
	t.Helper()
	file := filepath.Join(daemontest.RepoRoot(t), "testdata", "provenance", "wide.nix")
	nonce := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	drvs := strings.Fields(nixtest.Output(t, "nix-instantiate", file, "--argstr", "nonce", nonce, "--arg", "n", fmt.Sprint(n)))
	cmd := nixtest.Command("nix-store", append([]string{"--realise", "-j", fmt.Sprint(jobs)}, drvs...)...)
	cmd.Env = append(cmd.Env, "NIX_REMOTE="+f.daemon.URI())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nix-store --realise: %v\n%s", err, out)
	}
	return drvs
}

func readJournal(t *testing.T, path string) []provenance.Entry {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var got []provenance.Entry
	err = provenance.Read(context.Background(), fh, path, provenance.ReadOptions{}, func(e *provenance.Entry) error {
		got = append(got, *e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestJournalHookRealBuilds builds seven derivations at once (-j 7)
// through a private daemon running poison's post-build-hook and reads the
// journal back: one whole line per build, with the outputs Nix reports
// (Nix 2.8 passes OUT_PATHS empty: they come from the .drv), the host
// setting, the machine id, the system and the Nix version.
func TestJournalHookRealBuilds(t *testing.T) {
	f := startHookDaemon(t, "", "board7")
	before := time.Now()
	drvs := f.build(t, 6, 7)
	after := time.Now()
	got := readJournal(t, f.journal)
	if len(got) != len(drvs) {
		t.Fatalf("journal has %d lines, want %d (one per build)", len(got), len(drvs))
	}
	byDrv := map[string]provenance.Entry{}
	for _, e := range got {
		byDrv[e.Drv] = e
	}
	machineID, _ := os.ReadFile("/etc/machine-id")
	system := nixtest.Output(t, "nix-instantiate", "--eval", "--expr", "builtins.currentSystem")
	version := strings.Fields(nixtest.Output(t, "nix-daemon", "--version"))
	var overlapping int
	for _, drv := range drvs {
		e, ok := byDrv[drv]
		if !ok {
			t.Errorf("%s: not in the journal", drv)
			continue
		}
		want := strings.Fields(nixtest.Output(t, "nix-store", "--query", "--outputs", drv))
		sort.Strings(want)
		if strings.Join(e.Outputs, " ") != strings.Join(want, " ") {
			t.Errorf("%s: outputs %q, want %q", drv, e.Outputs, want)
		}
		if e.Host != "board7" {
			t.Errorf("%s: host %q, want the setting board7", drv, e.Host)
		}
		if e.MachineID != strings.TrimSpace(string(machineID)) {
			t.Errorf("%s: machine id %q, want %q", drv, e.MachineID, machineID)
		}
		if `"`+e.System+`"` != system {
			t.Errorf("%s: system %q, want %s", drv, e.System, system)
		}
		if e.Nix != version[len(version)-1] {
			t.Errorf("%s: nix %q, want %q", drv, e.Nix, version[len(version)-1])
		}
		if e.End.Before(before) || e.End.After(after) {
			t.Errorf("%s: end %v outside the build (%v .. %v)", drv, e.End, before, after)
		}
		if e.StartSource != "" {
			if e.Start.After(e.End) || e.Start.Before(before.Add(-time.Second)) {
				t.Errorf("%s: start %v, end %v, build ran %v .. %v", drv, e.Start, e.End, before, after)
			}
			if strings.Contains(drv, "-leaf-") && e.End.Sub(e.Start) >= time.Second {
				overlapping++
			}
		}
	}
	t.Logf("%d of %d builds have a start time from their build log", overlapping, len(drvs)-1)

	// poison add --built-on drafts one entry with every build of the window.
	reg := filepath.Join(t.TempDir(), "reg")
	var stdout, stderr strings.Builder
	e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: os.Getenv, now: time.Now, dir: f.dir}
	if code := run([]string{"init", reg}, e); code != 0 {
		t.Fatalf("init: %s", stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"add", "--registry", reg, "--built-on", "board7", "--since", "1h", "--journal", f.journal,
		"--reason", "board 7 erratum", "--author", "T <t@example.com>"}, e); code != 0 {
		t.Fatalf("add --built-on: exit %d: %s", code, stderr.String())
	}
	entry, err := os.ReadFile(strings.TrimSpace(stdout.String()))
	if err != nil {
		t.Fatal(err)
	}
	for _, drv := range drvs {
		if !strings.Contains(string(entry), `path    = "`+drv+`"`) {
			t.Errorf("entry lacks %s:\n%s", drv, entry)
		}
		for _, out := range byDrv[drv].Outputs {
			if !strings.Contains(string(entry), `"`+out+`"`) {
				t.Errorf("entry lacks output %s", out)
			}
		}
	}
	if !strings.Contains(string(entry), `group  = "board7"`) {
		t.Errorf("entry has no group board7:\n%s", entry)
	}
	if code := run([]string{"lint", "--registry", reg}, e); code != 0 {
		t.Errorf("lint of the drafted entry: exit %d: %s", code, stderr.String())
	}
}

// TestJournalHookNeverFailsBuild points the hook at a journal it cannot
// write: the builds still succeed, and the hook's warning reaches Nix.
func TestJournalHookNeverFailsBuild(t *testing.T) {
	dir := daemontest.WorldDir(t)
	journal := filepath.Join(dir, "is-a-directory")
	if err := os.Mkdir(journal, 0o755); err != nil {
		t.Fatal(err)
	}
	f := startHookDaemon(t, journal, "")
	f.build(t, 2, 2) // fails the test if a build fails
	if fi, err := os.Stat(journal); err != nil || !fi.IsDir() {
		t.Fatalf("journal path changed: %v", err)
	}
}

// TestJournalHookOutsideNix runs the hook without Nix's environment: it
// warns and exits 0.
func TestJournalHookOutsideNix(t *testing.T) {
	dir := t.TempDir()
	for _, env := range [][]string{nil, {"DRV_PATH=/etc/passwd"}} {
		cmd := exec.Command(os.Args[0], "journal-hook", "--journal", filepath.Join(dir, "j"))
		cmd.Args[0] = "poison"
		cmd.Path = os.Args[0]
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("journal-hook %v: %v\n%s", env, err, out)
		}
		if !strings.Contains(string(out), "warning:") {
			t.Errorf("journal-hook %v printed %q, want a warning", env, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "j")); err == nil {
		t.Error("a journal was written without a build")
	}
}

// TestJournalHookBinary runs the post-build-hook through the small
// poison-journal-hook binary (built here) with four builds at once.
func TestJournalHookBinary(t *testing.T) {
	nixtest.Need(t)
	bin := filepath.Join(daemontest.WorldDir(t), "poison-journal-hook")
	build := exec.Command("go", "build", "-o", bin, "github.com/poison-nix/poison/cmd/poison-journal-hook")
	build.Dir = daemontest.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build poison-journal-hook: %v\n%s", err, out)
	}
	f := startHookDaemonWith(t, "", "", bin)
	script, err := os.ReadFile(filepath.Join(f.dir, "post-build-hook"))
	if err != nil || !strings.Contains(string(script), "exec '"+bin+"' --journal") {
		t.Fatalf("hook script does not run the binary: %v\n%s", err, script)
	}
	drvs := f.build(t, 3, 4)
	got := readJournal(t, f.journal)
	hostname, _ := os.Hostname()
	if len(got) != len(drvs) {
		t.Fatalf("journal has %d lines, want %d", len(got), len(drvs))
	}
	seen := map[string]bool{}
	for _, e := range got {
		seen[e.Drv] = true
		if e.Host != hostname || len(e.Outputs) == 0 {
			t.Errorf("%s: host %q (want %q), outputs %q", e.Drv, e.Host, hostname, e.Outputs)
		}
	}
	for _, d := range drvs {
		if !seen[d] {
			t.Errorf("%s not journalled", d)
		}
	}
}

// TestJournalHookModernNix builds with Nix 2.26 (POISON_MODERN_NIX), which
// passes OUT_PATHS to the hook, in a chroot store with the hook set on the
// command line: the journal's outputs are the ones Nix passed, and the
// .drv and build log are found under the store's root.
func TestJournalHookModernNix(t *testing.T) {
	nixtest.Need(t)
	bin := os.Getenv("POISON_MODERN_NIX")
	if bin == "" {
		if nixtest.Required() {
			t.Fatal("Nix 2.26 is required (POISON_REQUIRE_NIX=1) but POISON_MODERN_NIX is not set; run scripts/modern-nix.sh DIR and set POISON_MODERN_NIX=DIR/bin")
		}
		t.Skip("set POISON_MODERN_NIX=DIR/bin (scripts/modern-nix.sh DIR) to test against Nix 2.26")
	}
	dir := daemontest.WorldDir(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	poison := filepath.Join(dir, "poison")
	if err := os.Symlink(self, poison); err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(dir, "journal.jsonl")
	script := filepath.Join(dir, "post-build-hook")
	if _, err := hooks.InstallPostBuild(script, hooks.PostBuildOptions{Poison: poison, Journal: journal, Host: "modern"}); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	file := filepath.Join(daemontest.RepoRoot(t), "testdata", "provenance", "wide.nix")
	cmd := exec.Command(filepath.Join(bin, "nix-build"), "--store", "local?root="+root, "--no-out-link", file,
		"--argstr", "nonce", fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano()), "--arg", "n", "2", "--argstr", "sleep", "0",
		"--option", "post-build-hook", script, "--option", "substituters", "",
		"--option", "sandbox-paths", "/bin /lib /lib64 /usr", "-j", "3")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("Nix 2.26 nix-build: %v\n%s", err, stderr)
	}
	built := strings.Fields(string(out)) // leaf-0, leaf-1, split (nix-build prints the out outputs)
	got := readJournal(t, journal)
	if len(got) != 3 {
		t.Fatalf("journal has %d lines, want 3 (one per build)", len(got))
	}
	var journalled []string
	system := nixtest.Output(t, "nix-instantiate", "--eval", "--expr", "builtins.currentSystem")
	for _, e := range got {
		if e.Host != "modern" {
			t.Errorf("%s: host %q", e.Drv, e.Host)
		}
		// The hook finds the .drv and the build log under the chroot
		// store's root (the store setting Nix passes in NIX_CONFIG).
		if `"`+e.System+`"` != system || e.StartSource != "build-log" || e.Start.After(e.End) {
			t.Errorf("%s: system %q, start %v (%q), end %v: want the .drv and the log read from the chroot store", e.Drv, e.System, e.Start, e.StartSource, e.End)
		}
		journalled = append(journalled, e.Outputs...)
	}
	// Nix 2.26 passes OUT_PATHS: the journal holds exactly its outputs.
	q := exec.Command(filepath.Join(bin, "nix-store"), "--store", "local?root="+root, "--query", "--outputs")
	for _, e := range got {
		q.Args = append(q.Args, e.Drv)
	}
	outs, err := q.Output()
	if err != nil {
		t.Fatalf("nix-store --query --outputs: %v", err)
	}
	want := strings.Fields(string(outs))
	sort.Strings(want)
	sort.Strings(journalled)
	if strings.Join(journalled, " ") != strings.Join(want, " ") || len(want) != 4 {
		t.Errorf("journalled outputs %q, want what Nix 2.26 built %q", journalled, want)
	}
	for _, b := range built {
		if !slices.Contains(journalled, b) {
			t.Errorf("%s (built) is not in the journal", b)
		}
	}
}
