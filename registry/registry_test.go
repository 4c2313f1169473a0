package registry_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/registry/lock"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testNow is the reference time of every test: 2026-11-25 noon UTC.
var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func format(ps registry.Problems) []byte {
	var b bytes.Buffer
	for _, p := range ps {
		b.WriteString(p.Severity.String())
		b.WriteString(": ")
		b.WriteString(p.String())
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func golden(t *testing.T, file string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("problems differ from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", file, got, want)
	}
}

// TestBadEntries decodes every testdata/registry/bad/entry/*.toml and
// compares the problems with the .golden file next to it. Every case must
// be rejected with at least one error naming a line.
func TestBadEntries(t *testing.T) {
	files, err := filepath.Glob("../testdata/registry/bad/entry/*.toml")
	if err != nil || len(files) < 40 {
		t.Fatalf("want at least 40 bad entries, found %d (%v)", len(files), err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".toml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			e, ps := registry.DecodeEntry("entries/2026/11/"+name+".toml", data, registry.Config{}, testNow)
			if len(ps) == 0 {
				t.Fatal("no problem reported")
			}
			for _, p := range ps {
				if p.Path != "entries/2026/11/"+name+".toml" || p.Message == "" || strings.Contains(p.Message, "\n") {
					t.Errorf("malformed problem %+v", p)
				}
			}
			if errs := ps.Errors(); len(errs) > 0 && e != nil {
				t.Errorf("entry returned despite errors: %+v", e)
			}
			golden(t, strings.TrimSuffix(f, ".toml")+".golden", format(ps))
		})
	}
}

// TestBadConfig does the same for registry.toml.
func TestBadConfig(t *testing.T) {
	files, err := filepath.Glob("../testdata/registry/bad/config/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".toml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg, ps := registry.DecodeConfig(data)
			if len(ps.Errors()) == 0 {
				t.Fatal("no error reported")
			}
			if cfg.Env != lock.DefaultEnv || cfg.StoreDir != lock.DefaultStoreDir {
				t.Errorf("bad settings not replaced by defaults: %+v", cfg)
			}
			golden(t, strings.TrimSuffix(f, ".toml")+".golden", format(ps))
		})
	}
}

// TestGoodRegistry loads testdata/registry/good and checks its lock (the
// serials) against a golden file.
func TestGoodRegistry(t *testing.T) {
	r, err := registry.Load(os.DirFS("../testdata/registry/good"), registry.LoadOptions{Now: testNow})
	if err != nil {
		t.Fatalf("good registry has problems:\n%v", err)
	}
	if len(r.Warnings) != 0 {
		t.Errorf("good registry has warnings:\n%v", r.Warnings)
	}
	if r.Config.Env != "POISON_SERIAL" {
		t.Errorf("env = %q", r.Config.Env)
	}
	lk := r.Lock(lock.Source{URL: "file:///good", Ref: "main", Commit: strings.Repeat("a", 40)})
	if err := lk.Validate(); err != nil {
		t.Fatal(err)
	}
	data, err := lk.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "../testdata/registry/good.lock.golden", data)
}

const (
	drvA  = "/nix/store/6jqi0n92z10kb50fggvwqzi15jj32g5b-a.drv"
	drvA2 = "/nix/store/7jqi0n92z10kb50fggvwqzi15jj32g5b-a.drv" // same output as drvA (quotient hashing)
	outA  = "/nix/store/bgzy1gmnwailjvdn2v79cvkn4xmr45v8-a"
	drvB  = "/nix/store/0aaa0n92z10kb50fggvwqzi15jj32g5b-b.drv"
	outB  = "/nix/store/0bbb1gmnwailjvdn2v79cvkn4xmr45v8-b"
	outBd = "/nix/store/0ccc1gmnwailjvdn2v79cvkn4xmr45v8-b-dev"
)

func entry(derivs string, names string) string {
	s := "reason = \"r\"\nauthor = \"A <a@b.c>\"\ndate = 2026-11-01\n"
	if names != "" {
		s += "names = [" + names + "]\n"
	}
	return s + derivs
}

func deriv(path string, outs ...string) string {
	s := "\n[[derivation]]\npath = \"" + path + "\"\n"
	if len(outs) > 0 {
		s += "outputs = [\"" + strings.Join(outs, "\", \"") + "\"]\n"
	}
	return s
}

// TestSerials checks the serial rules of docs/formats.md on small registries.
func TestSerials(t *testing.T) {
	base := func(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }
	tests := []struct {
		name    string
		entries []string
		drvs    map[string]int // .drv path -> lock.Serial with its outputs
		outs    map[string][]string
		names   map[string]int
	}{
		{
			name:    "one entry",
			entries: []string{entry(deriv(drvA, outA), "")},
			drvs:    map[string]int{drvA: 1, drvB: 0},
			names:   map[string]int{"a": 1, "b": 0},
		},
		{
			name:    "two incidents",
			entries: []string{entry(deriv(drvA, outA), ""), entry(deriv(drvA, outA), "")},
			drvs:    map[string]int{drvA: 2},
			names:   map[string]int{"a": 2},
		},
		{
			name: "other drv path, same output: counted through the output",
			entries: []string{
				entry(deriv(drvA, outA), ""),
				entry(deriv(drvA2, outA), ""),
			},
			drvs:  map[string]int{drvA: 2, drvA2: 2},
			names: map[string]int{"a": 2},
		},
		{
			name: "fixed-output twins in one entry: the shared output counts once",
			entries: []string{
				entry(deriv(drvA, outA)+deriv(drvA2, outA), ""),
			},
			drvs:  map[string]int{drvA: 1, drvA2: 1},
			names: map[string]int{"a": 1},
		},
		{
			name: "twins in one entry and one of them in another: 2",
			entries: []string{
				entry(deriv(drvA, outA)+deriv(drvA2, outA), ""),
				entry(deriv(drvA2, outA), ""),
			},
			drvs:  map[string]int{drvA: 2, drvA2: 2},
			names: map[string]int{"a": 2},
		},
		{
			name:    "a name and a derivation of that name in one entry count once",
			entries: []string{entry(deriv(drvA, outA), `"a", "zlib"`), entry("", `"a"`)},
			drvs:    map[string]int{drvA: 1},
			names:   map[string]int{"a": 2, "zlib": 1},
		},
		{
			name:    "several derivations in one entry",
			entries: []string{entry(deriv(drvA, outA)+deriv(drvB, outB, outBd), "")},
			drvs:    map[string]int{drvA: 1, drvB: 1},
			names:   map[string]int{"a": 1, "b": 1},
		},
		{
			name:    "entry without outputs counts by .drv only",
			entries: []string{entry(deriv(drvA), ""), entry(deriv(drvA2, outA), "")},
			drvs:    map[string]int{drvA: 1, drvA2: 1},
			names:   map[string]int{"a": 2},
		},
	}
	outsOf := map[string][]string{drvA: {outA}, drvA2: {outA}, drvB: {outB, outBd}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{"registry.toml": {Data: []byte("")}}
			for i, e := range tc.entries {
				fsys["entries/2026/11/e"+string(rune('a'+i))+".toml"] = &fstest.MapFile{Data: []byte(e)}
			}
			r, err := registry.Load(fsys, registry.LoadOptions{Now: testNow})
			if err != nil {
				t.Fatal(err)
			}
			lk := r.Lock(lock.Source{})
			for d, want := range tc.drvs {
				var ob []string
				for _, o := range outsOf[d] {
					ob = append(ob, base(o))
				}
				if got := lk.Serial(base(d), ob); got != want {
					t.Errorf("serial(%s) = %d, want %d", base(d), got, want)
				}
				if want > 0 && len(r.EntriesFor(base(d))) == 0 {
					t.Errorf("EntriesFor(%s) is empty", base(d))
				}
			}
			for n, want := range tc.names {
				if got := lk.NameSerial(n); got != want {
					t.Errorf("name serial(%s) = %d, want %d", n, got, want)
				}
				if got := len(r.EntriesForName(n)); got != want {
					t.Errorf("EntriesForName(%s) has %d entries, want %d", n, got, want)
				}
			}
		})
	}
}

// TestLayout checks the rules about files: only *.toml under entries/, no
// symlinks, registry.toml required and plain.
func TestLayout(t *testing.T) {
	good := []byte(entry(deriv(drvA, outA), ""))
	cfg := &fstest.MapFile{Data: []byte("env = \"POISON_SERIAL\"\n")}
	tests := []struct {
		name  string
		fs    fstest.MapFS
		want  []string // substrings of the problems, in order
		valid int
	}{
		{"symlinked entry", fstest.MapFS{"registry.toml": cfg, "entries/a.toml": {Data: good}, "entries/b.toml": {Data: []byte("../../etc/passwd"), Mode: os.ModeSymlink}},
			[]string{"entries/b.toml: is a symlink"}, 1},
		{"symlinked directory", fstest.MapFS{"registry.toml": cfg, "entries/2026": {Data: []byte("/etc"), Mode: os.ModeSymlink}},
			[]string{"entries/2026: is a symlink"}, 0},
		{"symlinked entries/", fstest.MapFS{"registry.toml": cfg, "entries": {Data: []byte("/etc"), Mode: os.ModeSymlink}},
			[]string{"entries: is not a directory"}, 0},
		{"not toml", fstest.MapFS{"registry.toml": cfg, "entries/a.toml": {Data: good}, "entries/notes.md": {Data: []byte("x")}, "entries/.gitkeep": {}},
			[]string{"entries/notes.md: is not a *.toml file"}, 1},
		{"bare .toml", fstest.MapFS{"registry.toml": cfg, "entries/.toml": {Data: good}},
			[]string{"entries/.toml: is not a *.toml file"}, 0},
		{"huge entry", fstest.MapFS{"registry.toml": cfg, "entries/a.toml": {Data: bytes.Repeat([]byte("#"), registry.MaxEntrySize+1)}},
			[]string{"entries/a.toml: file is more than the limit"}, 0},
		{"problems in several files", fstest.MapFS{"registry.toml": cfg, "entries/a.toml": {Data: []byte("reason = 1")}, "entries/b.toml": {Data: good}, "entries/c.toml": {Data: []byte("x")}},
			[]string{"entries/a.toml:1:1: reason: is an integer", "entries/a.toml:1:1: author: missing", "entries/a.toml:1:1: date: missing", "entries/a.toml:1:1: entry poisons nothing", "entries/c.toml:1:1: invalid TOML"}, 1},
		{"copied entry", fstest.MapFS{"registry.toml": cfg, "entries/a.toml": {Data: good}, "entries/b.toml": {Data: good}},
			[]string{"entries/b.toml: has the same content as entries/a.toml"}, 2},
		{"entries elsewhere are ignored", fstest.MapFS{"registry.toml": cfg, "other/a.toml": {Data: []byte("junk")}}, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := registry.Load(tc.fs, registry.LoadOptions{Now: testNow})
			if r == nil {
				t.Fatalf("Load: %v", err)
			}
			var ps registry.Problems
			if err != nil && !errors.As(err, &ps) {
				t.Fatalf("error is %T, not Problems: %v", err, err)
			}
			ps = append(ps, r.Warnings...)
			ps.Sort()
			if len(ps) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.Contains(ps[i].String(), w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, ps[i], w)
				}
			}
			if len(r.Entries) != tc.valid {
				t.Errorf("%d valid entries, want %d", len(r.Entries), tc.valid)
			}
		})
	}
	// A bad registry.toml makes every entry uninterpretable: no registry.
	for name, fsys := range map[string]fstest.MapFS{
		"symlinked registry.toml": {"registry.toml": {Data: []byte("/etc/passwd"), Mode: os.ModeSymlink}, "entries/a.toml": {Data: good}, "entries/b.toml": {Data: []byte("x")}},
		"reserved env":            {"registry.toml": {Data: []byte("env = \"out\"")}, "entries/a.toml": {Data: good}, "entries/b.toml": {Data: []byte("x")}},
		"huge registry.toml":      {"registry.toml": {Data: bytes.Repeat([]byte("#"), registry.MaxEntrySize+1)}, "entries/b.toml": {Data: []byte("x")}},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := registry.Load(fsys, registry.LoadOptions{Now: testNow})
			var ps registry.Problems
			if r != nil || !errors.As(err, &ps) || ps[len(ps)-1].Path != "registry.toml" || ps[0].Path != "entries/b.toml" {
				t.Fatalf("Load = %v, %v; want nil and the problems of registry.toml and entries/b.toml", r, err)
			}
		})
	}
	t.Run("no registry.toml", func(t *testing.T) {
		r, err := registry.Load(fstest.MapFS{"entries/a.toml": {Data: good}}, registry.LoadOptions{})
		if r != nil || !errors.Is(err, registry.ErrNotRegistry) {
			t.Fatalf("Load = %v, %v; want nil, ErrNotRegistry", r, err)
		}
	})
}

// TestLoadDirMatchesLoad checks that the fast reader of LoadDir gives the
// same result as Load over os.DirFS, on the good and a broken registry.
func TestLoadDirMatchesLoad(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "entries/x"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "registry.toml"), nil, 0o644))
	must(os.WriteFile(filepath.Join(dir, "entries/x/a.toml"), []byte(entry(deriv(drvA, outA), "")), 0o644))
	must(os.WriteFile(filepath.Join(dir, "entries/x/b.toml"), []byte("reason = 3"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "entries/x/big.toml"), bytes.Repeat([]byte(" "), registry.MaxEntrySize+10), 0o644))
	must(os.Symlink("/etc/passwd", filepath.Join(dir, "entries/x/c.toml")))
	r1, err1 := registry.Load(os.DirFS(dir), registry.LoadOptions{Now: testNow})
	r2, err2 := registry.LoadDir(dir, registry.LoadOptions{Now: testNow})
	if err1 == nil || err2 == nil || err1.Error() != err2.Error() {
		t.Fatalf("errors differ:\n%v\n---\n%v", err1, err2)
	}
	if len(r1.Entries) != 1 || len(r2.Entries) != 1 {
		t.Fatalf("entries: %d and %d, want 1", len(r1.Entries), len(r2.Entries))
	}
	if !strings.Contains(err1.Error(), "entries/x/c.toml: is a symlink") || !strings.Contains(err1.Error(), "entries/x/big.toml: file is more than") {
		t.Errorf("missing problems:\n%v", err1)
	}
}

// TestProblemOddFileNames: a problem in a file whose name holds a newline
// or a control character stays one line, the name quoted; printable
// names are left as they are.
func TestProblemOddFileNames(t *testing.T) {
	for name, shown := range map[string]string{
		"entries/2026/11/a\nb.toml":      `"entries/2026/11/a\nb.toml"`,
		"entries/2026/11/tab\there.toml": `"entries/2026/11/tab\there.toml"`,
		"entries/2026/11/bell\a.toml":    `"entries/2026/11/bell\a.toml"`,
		"entries/2026/11/ünï cödé.toml":  `entries/2026/11/ünï cödé.toml`,
	} {
		fsys := fstest.MapFS{
			"registry.toml": {Data: []byte("")},
			name:            {Data: []byte("author = \"A <a@b.c>\"\ndate = 2026-11-01\nnames = [\"a\"]\n")},
		}
		_, err := registry.Load(fsys, registry.LoadOptions{Now: testNow})
		var ps registry.Problems
		if !errors.As(err, &ps) || len(ps) != 1 {
			t.Fatalf("%q: %v, want one problem", name, err)
		}
		got := ps[0].String()
		if strings.Contains(got, "\n") || !strings.HasPrefix(got, shown+":") || !strings.Contains(got, "reason: missing") {
			t.Errorf("%q: problem %q, want one line starting %s:", name, got, shown)
		}
	}
}
