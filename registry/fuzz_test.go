package registry

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
	"github.com/poison-nix/poison/registry/internal/gen"
)

func addSeeds(f *testing.F) {
	for _, pat := range []string{"../testdata/registry/bad/entry/*.toml", "../testdata/registry/good/entries/*/*/*.toml"} {
		files, _ := filepath.Glob(pat)
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	for i := 0; i < 10; i++ {
		_, data := gen.Entry(1, i)
		f.Add(data)
	}
	f.Add([]byte("reason = \"a\"\n[[derivation]]\npath = \"x\"\nnames = [\"a\",]\n"))
}

// FuzzDecodeEntry checks that no input crashes the decoder, that every
// problem is one line with a position inside the file, and that an
// accepted entry holds only valid values.
func FuzzDecodeEntry(f *testing.F) {
	addSeeds(f)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		e, ps := DecodeEntry("entries/x.toml", data, Config{}, now)
		lines := strings.Count(string(data), "\n") + 1
		for _, p := range ps {
			if strings.ContainsAny(p.String(), "\n\r") {
				t.Errorf("problem spans lines: %q", p.String())
			}
			if p.Line > lines || p.Line < 0 {
				t.Errorf("problem line %d outside the file (%d lines): %s", p.Line, lines, p)
			}
		}
		if e == nil {
			if len(ps.Errors()) == 0 {
				t.Fatal("no entry and no error")
			}
			return
		}
		if strings.TrimSpace(e.Reason) == "" || e.Author == "" || e.Date.IsZero() {
			t.Fatalf("accepted entry lacks required fields: %+v", e)
		}
		if len(e.Derivations) == 0 && len(e.Names) == 0 {
			t.Fatalf("accepted entry poisons nothing: %+v", e)
		}
		for _, d := range e.Derivations {
			if _, err := ParseDrvPath("/nix/store", d.Path); err != nil {
				t.Fatalf("accepted invalid .drv path: %v", err)
			}
			for _, o := range d.Outputs {
				if _, err := ParseStorePath("/nix/store", o); err != nil {
					t.Fatalf("accepted invalid output: %v", err)
				}
			}
		}
		for _, n := range e.Names {
			if err := ValidateName(n); err != nil {
				t.Fatalf("accepted invalid name: %v", err)
			}
		}
		// What poison add would write from it must decode to the same entry.
		again, ps2 := DecodeEntry("entries/x.toml", EncodeEntry(e), Config{}, now)
		if again == nil {
			t.Fatalf("re-encoded entry rejected: %v\n%s", ps2, EncodeEntry(e))
		}
		again.File = e.File
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("re-encoded entry differs:\n%+v\n%+v", again, e)
		}
	})
}

// FuzzFastParse checks the fast path against the TOML decoder: whatever
// fastParse accepts, the decoder must accept with the same value.
func FuzzFastParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			return
		}
		fast, ok := fastParse(string(data))
		if !ok {
			return
		}
		var slow map[string]any
		if _, err := toml.Decode(string(data), &slow); err != nil {
			t.Fatalf("fast path accepted what the decoder rejects (%v):\n%q", err, data)
		}
		if !sameValue(fast, slow) {
			t.Fatalf("fast path differs from the decoder:\nfast %#v\nslow %#v\ninput %q", fast, slow, data)
		}
	})
}

// sameValue compares decoded TOML values; dates compare by calendar day
// and the location name that marks local dates.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Format(time.DateTime) == y.Format(time.DateTime) && x.Location().String() == y.Location().String()
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case []map[string]any:
		y, ok := b.([]map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// TestFastPathCoversWrittenEntries keeps the fast path in use: what
// poison add writes and what the generator writes must take it.
func TestFastPathCoversWrittenEntries(t *testing.T) {
	for i := 0; i < 50; i++ {
		_, data := gen.Entry(3, i)
		if _, ok := fastParse(string(data)); !ok {
			t.Fatalf("generated entry %d takes the slow path:\n%s", i, data)
		}
	}
	e := &Entry{Reason: "multi\nline \"quoted\" reason", Author: "A <a@b.c>", Date: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC),
		Group: "g", Ticket: "T-1", Names: []string{"x", "y"},
		Derivations: []Derivation{{Path: "/nix/store/6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv", Outputs: []string{"/nix/store/bgzy1gmnwailjvdn2v79cvkn4xmr45v8-b"}}}}
	plain := *e
	plain.Reason = "one line"
	if _, ok := fastParse(string(EncodeEntry(&plain))); !ok {
		t.Errorf("poison add output takes the slow path:\n%s", EncodeEntry(&plain))
	}
	// Escapes take the slow path, and both paths agree on the result.
	data := EncodeEntry(e)
	if _, ok := fastParse(string(data)); ok {
		t.Errorf("escaped strings must take the slow path")
	}
	got, ps := DecodeEntry("entries/x.toml", data, Config{}, time.Time{})
	if got == nil || got.Reason != e.Reason {
		t.Fatalf("round trip: %+v %v", got, ps)
	}
}
