package machines

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/poison-nix/poison/internal/nixtest"
)

const hostKeyB64 = "c3NoLWVkMjU1MTkgQUFBQUMzTnphQzFsWkRJMU5URTVBQUFBSUhvc3RrZXk="

// parseCases are machine specifications and what Nix reads from them, as
// entries in the machines format (Machine.String), or an error. "$D" is the
// absolute testdata directory. nix28 marks the cases where Nix 2.8 to 2.27
// read the same as Nix since 2.28 (which Parse follows): TestParseLikeNix
// checks those against the installed Nix.
var parseCases = []struct {
	name    string
	spec    string
	want    []string
	missing []string
	wantErr string
	nix28   bool
}{
	{name: "empty", spec: "", nix28: true},
	{name: "only comments", spec: "# nothing\n\n   # here\n"},
	{name: "bare host", spec: "builder1", want: []string{"ssh://builder1 x86_64-linux - 1 1 - - -"}, nix28: true},
	{name: "all columns", spec: "ssh-ng://root@b x86_64-linux,i686-linux /k 4 2 kvm,big-parallel,kvm benchmark " + hostKeyB64,
		want:  []string{"ssh-ng://root@b x86_64-linux,i686-linux /k 4 2 big-parallel,kvm benchmark " + hostKeyB64},
		nix28: true},
	{name: "dashes take defaults", spec: "b - - - - - - -", want: []string{"ssh://b x86_64-linux - 1 1 - - -"}, nix28: true},
	{name: "max jobs 0", spec: "b - - 0", want: []string{"ssh://b x86_64-linux - 0 1 - - -"}, nix28: true},
	{name: "speed factor 0 is 1", spec: "b - - 3 0", want: []string{"ssh://b x86_64-linux - 3 1 - - -"}, nix28: true},
	{name: "fractional speed factor", spec: "b - - 3 2.5", want: []string{"ssh://b x86_64-linux - 3 2.5 - - -"}},
	{name: "semicolons and newlines", spec: "a;b\nc x86_64-linux - 2",
		want:  []string{"ssh://a x86_64-linux - 1 1 - - -", "ssh://b x86_64-linux - 1 1 - - -", "ssh://c x86_64-linux - 2 1 - - -"},
		nix28: true},
	{name: "tabs separate columns", spec: "a\tx86_64-linux\t-\t5", want: []string{"ssh://a x86_64-linux - 5 1 - - -"}, nix28: true},
	{name: "comment at end", spec: "a - - 2 # the big one", want: []string{"ssh://a x86_64-linux - 2 1 - - -"}, nix28: true},
	{name: "comment runs to end of line", spec: "a # x; b\nc",
		want: []string{"ssh://a x86_64-linux - 1 1 - - -", "ssh://c x86_64-linux - 1 1 - - -"}},
	{name: "spaces around semicolons", spec: "a ; @$D/nested.machines ;  ",
		want: []string{"ssh://a x86_64-linux - 1 1 - - -", "ssh://nested x86_64-linux - 1 1 - benchmark -"}},
	{name: "store words and paths keep their scheme", spec: "daemon;local;auto?x=1;local?root=/r;/some/store;unix:///s;ssh-ng://h",
		want: []string{"daemon x86_64-linux - 1 1 - - -", "local x86_64-linux - 1 1 - - -", "auto?x=1 x86_64-linux - 1 1 - - -",
			"local?root=/r x86_64-linux - 1 1 - - -", "/some/store x86_64-linux - 1 1 - - -", "unix:///s x86_64-linux - 1 1 - - -",
			"ssh-ng://h x86_64-linux - 1 1 - - -"},
		nix28: true},
	{name: "include", spec: "@$D/team.machines",
		want: []string{
			"ssh-ng://big x86_64-linux,aarch64-linux /keys/big 8 2 big-parallel,kvm - " + hostKeyB64,
			"ssh://small x86_64-linux - 2 1 - - -",
			"ssh://nested x86_64-linux - 1 1 - benchmark -",
		},
		nix28: true},
	{name: "missing include gives nothing", spec: "a\n@$D/nope.machines\nb",
		want:    []string{"ssh://a x86_64-linux - 1 1 - - -", "ssh://b x86_64-linux - 1 1 - - -"},
		missing: []string{"$D/nope.machines"}, nix28: true},
	{name: "bad max jobs", spec: "a - - many", wantErr: `builders entry 1: bad machine specification "a - - many": column 4 (max jobs) "many" is not a non-negative integer`, nix28: true},
	{name: "negative max jobs", spec: "a;b - - -1", wantErr: `builders entry 2: bad machine specification "b - - -1": column 4`, nix28: true},
	{name: "bad speed factor", spec: "a - - 1 fast", wantErr: `column 5 (speed factor) "fast"`, nix28: true},
	{name: "negative speed factor", spec: "a - - 1 -2", wantErr: `column 5 (speed factor) "-2"`, nix28: true},
	{name: "bad host key", spec: "a - - 1 1 - - not*base64", wantErr: "column 8 (host key) is not valid base64", nix28: true},
	{name: "error in an included file names it", spec: "@$D/bad.machines", wantErr: `$D/bad.machines:2: bad machine specification "bad x86_64-linux - many"`, nix28: true},
	{name: "include loop", spec: "@$D/loop.machines", wantErr: "nested @FILE includes"},
	{name: "include of a directory", spec: "@$D", wantErr: "is a directory"},
}

// testdataDir copies testdata/*.machines to a temporary directory with
// "$D" in them replaced by its path (Nix reads @FILE relative to the
// working directory, so includes in files are absolute).
func testdataDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	files, err := filepath.Glob("testdata/*.machines")
	if err != nil || len(files) == 0 {
		t.Fatalf("testdata: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, filepath.Base(f)), []byte(strings.ReplaceAll(string(data), "$D", d)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func TestParse(t *testing.T) {
	dir := testdataDir(t)
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			spec := strings.ReplaceAll(tc.spec, "$D", dir)
			got, err := Parse(spec, Options{DefaultSystem: "x86_64-linux"})
			if tc.wantErr != "" {
				want := strings.ReplaceAll(tc.wantErr, "$D", dir)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("Parse(%q) error = %v, want %q", spec, err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", spec, err)
			}
			var lines []string
			for _, m := range got.Machines {
				lines = append(lines, m.String())
			}
			if fmt.Sprint(lines) != fmt.Sprint(tc.want) {
				t.Errorf("Parse(%q) =\n  %q\nwant\n  %q", spec, lines, tc.want)
			}
			var missing []string
			for _, m := range tc.missing {
				missing = append(missing, strings.ReplaceAll(m, "$D", dir))
			}
			if fmt.Sprint(got.Missing) != fmt.Sprint(missing) {
				t.Errorf("Missing = %q, want %q", got.Missing, missing)
			}
		})
	}
}

func TestSource(t *testing.T) {
	dir := testdataDir(t)
	got, err := Parse("x;@"+dir+"/team.machines", Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"builders entry 1", dir + "/team.machines:2", dir + "/team.machines:3", dir + "/nested.machines:1"}
	var srcs []string
	for _, m := range got.Machines {
		srcs = append(srcs, m.Source)
	}
	if fmt.Sprint(srcs) != fmt.Sprint(want) {
		t.Errorf("sources %q, want %q", srcs, want)
	}
	if len(got.Machines[0].Systems) != 0 {
		t.Errorf("no default system given, got systems %q", got.Machines[0].Systems)
	}
	if k := got.Machines[1].PublicHostKey(); k != "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostkey" {
		t.Errorf("PublicHostKey = %q", k)
	}
	var pe *Error
	if _, err := Parse("a - - x", Options{}); !errors.As(err, &pe) || pe.Source != "builders entry 1" {
		t.Errorf("error %v is not an *Error naming its entry", err)
	}
}

func TestFileBound(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(p, []byte(strings.Repeat("a;", 600)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("@"+p, Options{MaxFileSize: 1000}); err == nil || !strings.Contains(err.Error(), "larger than 1000 bytes") {
		t.Errorf("oversized file: %v", err)
	}
	if s, err := Parse("@"+p, Options{}); err != nil || len(s.Machines) != 600 {
		t.Errorf("600 entries within the default bound: %v", err)
	}
}

// TestCanBuild follows Nix's rule for choosing a machine.
func TestCanBuild(t *testing.T) {
	s, err := Parse("a x86_64-linux,i686-linux - 1 1 kvm,big benchmark", Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := s.Machines[0]
	for _, tc := range []struct {
		system   string
		features []string
		want     bool
	}{
		{"x86_64-linux", []string{"benchmark"}, true},
		{"i686-linux", []string{"benchmark", "kvm"}, true},
		{"builtin", []string{"benchmark"}, true},
		{"x86_64-linux", nil, false},                          // mandatory feature not required
		{"x86_64-linux", []string{"benchmark", "gpu"}, false}, // not offered
		{"aarch64-linux", []string{"benchmark"}, false},
	} {
		if got := m.CanBuild(tc.system, tc.features); got != tc.want {
			t.Errorf("CanBuild(%s, %v) = %v, want %v", tc.system, tc.features, got, tc.want)
		}
	}
}

// TestParseLikeNix checks the cases Nix 2.8 reads like current Nix against
// the installed Nix: its build hook, asked for a derivation no machine
// can build, lists the machines it read (systems, max jobs, features) or
// rejects the specification.
func TestParseLikeNix(t *testing.T) {
	nixtest.Need(t)
	dir := testdataDir(t)
	odd := filepath.Join(t.TempDir(), "odd.nix")
	if err := os.WriteFile(odd, []byte(`derivation { name = "poison-machines-oracle"; system = "poison-oracle"; builder = "/bin/sh"; requiredSystemFeatures = [ "poison-oracle" ]; }`), 0o644); err != nil {
		t.Fatal(err)
	}
	store := t.TempDir()
	lineRE := regexp.MustCompile(`(?m)^\(.*\)$`)
	for _, tc := range parseCases {
		if !tc.nix28 || tc.spec == "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			spec := strings.ReplaceAll(tc.spec, "$D", dir)
			cmd := nixtest.Command("nix-build", "--no-out-link", "--store", "local?root="+store, "--max-jobs", "0", "--builders", spec, odd)
			out, _ := cmd.CombinedOutput()
			text := string(out)
			ours, err := Parse(spec, Options{DefaultSystem: nixSystem(t)})
			if strings.Contains(text, "bad machine specification") {
				if err == nil {
					t.Fatalf("Nix rejects %q:\n%s\nParse accepts it", spec, text)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v; Nix accepts it:\n%s", spec, err, text)
			}
			var want []string
			if len(ours.Machines) > 0 || strings.Contains(text, "available machines") {
				want = lineRE.FindAllString(text[strings.Index(text, "available machines"):], -1)
				if len(want) > 0 && want[0] == "(systems, maxjobs, supportedFeatures, mandatoryFeatures)" {
					want = want[1:]
				}
			}
			var got []string
			for _, m := range ours.Machines {
				got = append(got, "("+strings.Join(append(append(append(cloneStrings(m.Systems), fmt.Sprint(m.MaxJobs)), strings.Join(m.SupportedFeatures, ", ")), strings.Join(m.MandatoryFeatures, ", ")), ", ")+")")
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("spec %q:\nNix read  %q\nParse read %q\n%s", spec, want, got, text)
			}
		})
	}
}

func cloneStrings(s []string) []string { return append([]string(nil), s...) }

func nixSystem(t *testing.T) string {
	out, err := exec.Command("nix-instantiate", "--eval", "--expr", "builtins.currentSystem").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Trim(strings.TrimSpace(string(out)), `"`)
}
