package provenance_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poison-nix/poison/provenance"
)

const (
	drvA = "/nix/store/6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv"
	outA = "/nix/store/bgzy1gmnwailjvdn2v79cvkn4xmr45v8-b"
)

func record(i int) *provenance.Record {
	h := fmt.Sprintf("%032d", i)
	h = strings.NewReplacer("0", "a", "1", "b", "2", "c", "3", "d", "4", "f", "5", "g", "6", "h", "7", "i", "8", "j", "9", "k").Replace(h)
	return &provenance.Record{
		Drv:     "/nix/store/" + h + "-pkg-" + strconv.Itoa(i) + ".drv",
		Outputs: []string{"/nix/store/" + h + "-pkg-" + strconv.Itoa(i), "/nix/store/" + h + "-pkg-" + strconv.Itoa(i) + "-dev"},
		Host:    "board" + strconv.Itoa(i%7),
		System:  "x86_64-linux",
		Start:   time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second),
		End:     time.Date(2026, 11, 25, 8, 0, 1, 0, time.UTC).Add(time.Duration(i) * time.Second),
		Nix:     "2.8.0",
	}
}

func readAll(t *testing.T, path string, f provenance.Filter) ([]provenance.Entry, []string) {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var got []provenance.Entry
	var bad []string
	err = provenance.Read(context.Background(), fh, path, provenance.ReadOptions{
		Filter:  f,
		OnError: func(e *provenance.LineError) error { bad = append(bad, e.Error()); return nil },
	}, func(e *provenance.Entry) error { got = append(got, *e); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return got, bad
}

func TestAppendReadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	for i := 0; i < 5; i++ {
		if err := provenance.Append(path, record(i)); err != nil {
			t.Fatal(err)
		}
	}
	got, bad := readAll(t, path, provenance.Filter{})
	if len(bad) != 0 || len(got) != 5 {
		t.Fatalf("got %d records, bad %q", len(got), bad)
	}
	for i, e := range got {
		want := record(i)
		if e.Drv != want.Drv || e.Host != want.Host || !e.End.Equal(want.End) || !e.Start.Equal(want.Start) ||
			strings.Join(e.Outputs, " ") != strings.Join(want.Outputs, " ") || e.Line != i+1 || e.System != want.System || e.Nix != want.Nix {
			t.Errorf("record %d: got %+v, want %+v", i, e.Record, *want)
		}
	}
}

func TestFilter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	for i := 0; i < 30; i++ {
		r := record(i)
		if i == 3 {
			r.MachineID = "0123456789abcdef0123456789abcdef"
		}
		if err := provenance.Append(path, r); err != nil {
			t.Fatal(err)
		}
	}
	base := record(0).End
	tests := []struct {
		name string
		f    provenance.Filter
		want []int
	}{
		{"host", provenance.Filter{Host: "board2"}, []int{2, 9, 16, 23}},
		{"machine id", provenance.Filter{Host: "0123456789abcdef0123456789abcdef"}, []int{3}},
		{"window", provenance.Filter{Since: base.Add(10 * time.Second), Until: base.Add(13 * time.Second)}, []int{10, 11, 12}},
		{"host and since", provenance.Filter{Host: "board1", Since: base.Add(10 * time.Second)}, []int{15, 22, 29}},
		{"drv", provenance.Filter{Drv: record(7).Drv}, []int{7}},
		{"output", provenance.Filter{Drv: record(8).Outputs[1]}, []int{8}},
		{"none", provenance.Filter{Host: "board9"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := readAll(t, path, tc.f)
			var lines []int
			for _, e := range got {
				lines = append(lines, e.Line-1)
			}
			if fmt.Sprint(lines) != fmt.Sprint(tc.want) {
				t.Errorf("got records %v, want %v", lines, tc.want)
			}
		})
	}
}

// TestBadLines reads testdata/bad.jsonl: every bad line is reported with
// its line number and skipped; the good ones are read.
func TestBadLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	data, err := os.ReadFile("testdata/bad.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	long := `{"v":1,"drv":"` + drvA + `","outputs":["` + strings.Repeat("x", provenance.MaxLine) + `"],"host":"h","end":"2026-11-25T08:00:00Z"}` + "\n"
	data = append(data, long...)
	data = append(data, `{"v":1,"drv":"`+drvA+`","outputs":[],"host":"last","end":"2026-11-25T08:00:00Z"}`...) // no newline
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, bad := readAll(t, path, provenance.Filter{})
	var hosts []string
	for _, e := range got {
		hosts = append(hosts, fmt.Sprintf("%d:%s", e.Line, e.Host))
	}
	wantGood := "2:good 4:escaped\"host 16:future-field 19:last"
	if strings.Join(hosts, " ") != wantGood {
		t.Errorf("good records %q, want %q", strings.Join(hosts, " "), wantGood)
	}
	wantBad := []string{":1: ", ":5: ", ":6: ", ":7: ", ":8: ", ":9: ", ":10: ", ":11: ", ":12: ", ":13: ", ":14: ", ":15: ", ":17: ", ":18: line longer"}
	if len(bad) != len(wantBad) {
		t.Fatalf("bad lines:\n%s\nwant %d", strings.Join(bad, "\n"), len(wantBad))
	}
	for i, w := range wantBad {
		if !strings.Contains(bad[i], path+w) {
			t.Errorf("bad line %d: %q, want it to contain %q", i, bad[i], path+w)
		}
	}
	// Without OnError the first bad line stops Read.
	fh, _ := os.Open(path)
	defer fh.Close()
	err = provenance.Read(context.Background(), fh, "j", provenance.ReadOptions{}, func(*provenance.Entry) error { return nil })
	var le *provenance.LineError
	if !errors.As(err, &le) || le.Line != 1 {
		t.Errorf("Read without OnError: %v, want a LineError at line 1", err)
	}
}

// TestConcurrentAppend has many goroutines and processes append at once:
// every line must read back whole, none lost, none doubled.
func TestConcurrentAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	const procs, perProc, goroutines, perG = 6, 150, 16, 100
	var cmds []*exec.Cmd
	for p := 0; p < procs; p++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAppend$")
		cmd.Env = append(os.Environ(), "PROV_HELPER_JOURNAL="+path, fmt.Sprintf("PROV_HELPER_RANGE=%d,%d", 100000+p*perProc, perProc))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*perG)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				r := record(g*perG + i)
				// Lines of very different lengths make tearing visible.
				for k := 0; k < i%40; k++ {
					r.Outputs = append(r.Outputs, r.Outputs[0]+"-o"+strconv.Itoa(k))
				}
				if err := provenance.Append(path, r); err != nil {
					errs <- err
				}
			}
		}(g)
	}
	wg.Wait()
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, bad := readAll(t, path, provenance.Filter{})
	if len(bad) > 0 {
		t.Fatalf("%d torn or bad lines, first: %s", len(bad), bad[0])
	}
	seen := map[string]bool{}
	for _, e := range got {
		if seen[e.Drv] {
			t.Fatalf("%s twice", e.Drv)
		}
		seen[e.Drv] = true
	}
	if want := procs*perProc + goroutines*perG; len(seen) != want {
		t.Fatalf("read %d records, want %d", len(seen), want)
	}
}

// TestHelperAppend is the child process of TestConcurrentAppend.
func TestHelperAppend(t *testing.T) {
	path := os.Getenv("PROV_HELPER_JOURNAL")
	if path == "" {
		t.Skip("helper process only")
	}
	var start, n int
	fmt.Sscanf(os.Getenv("PROV_HELPER_RANGE"), "%d,%d", &start, &n)
	for i := start; i < start+n; i++ {
		if err := provenance.Append(path, record(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAppendAfterForeignTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	if err := os.WriteFile(path, []byte(`{"v":1,"drv":"/nix/st`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := provenance.Append(path, record(1)); err != nil {
		t.Fatal(err)
	}
	got, bad := readAll(t, path, provenance.Filter{})
	if len(got) != 1 || got[0].Line != 2 || len(bad) != 1 {
		t.Fatalf("got %d records (%v), bad %q; want our line on line 2 and the torn one reported", len(got), got, bad)
	}
}

func TestAppendRefuses(t *testing.T) {
	dir := t.TempDir()
	r := record(1)
	r.Host = ""
	if err := provenance.Append(filepath.Join(dir, "j"), r); err == nil {
		t.Error("a record without host was appended")
	}
	r = record(1)
	for i := 0; i < 2000; i++ {
		r.Outputs = append(r.Outputs, r.Outputs[0])
	}
	if err := provenance.Append(filepath.Join(dir, "j"), r); !errors.Is(err, provenance.ErrLineTooLong) {
		t.Errorf("a %d-output record: %v, want ErrLineTooLong", len(r.Outputs), err)
	}
	if err := os.Symlink(filepath.Join(dir, "target"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := provenance.Append(filepath.Join(dir, "link"), record(1)); err == nil {
		t.Error("appended through a symlink")
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"2026-11-25T08:00:00Z", time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC), false},
		{"2026-11-25T09:00:00+01:00", time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC), false},
		{"2026-11-25", time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), false},
		{"7d", now.Add(-7 * 24 * time.Hour), false},
		{"36h", now.Add(-36 * time.Hour), false},
		{"90m", now.Add(-90 * time.Minute), false},
		{"2w", now.Add(-14 * 24 * time.Hour), false},
		{"7", time.Time{}, true},
		{"d", time.Time{}, true},
		{"-7d", time.Time{}, true},
		{"7y", time.Time{}, true},
		{"yesterday", time.Time{}, true},
		{"", time.Time{}, true},
	}
	for _, tc := range tests {
		got, err := provenance.ParseTime(tc.in, now)
		if (err != nil) != tc.err || !got.Equal(tc.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}
