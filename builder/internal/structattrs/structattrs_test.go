package structattrs_test

import (
	"testing"

	"github.com/poison-nix/poison/builder/internal/structattrs"
)

func TestSetRemove(t *testing.T) {
	const k = "POISON_SERIAL"
	cases := []struct{ in, set, removed string }{
		{`{}`, `{"POISON_SERIAL":"3"}`, `{}`},
		{`{"PATH":"x","_x":1.5,"builder":"/bin/sh"}`, `{"PATH":"x","POISON_SERIAL":"3","_x":1.5,"builder":"/bin/sh"}`, `{"PATH":"x","_x":1.5,"builder":"/bin/sh"}`},
		{`{"POISON_SERIALZ":true,"a":[1,{"POISON_SERIAL":"inner"}]}`, `{"POISON_SERIAL":"3","POISON_SERIALZ":true,"a":[1,{"POISON_SERIAL":"inner"}]}`, `{"POISON_SERIALZ":true,"a":[1,{"POISON_SERIAL":"inner"}]}`},
		{`{"POISON_SERIAL":"1","z":"}\"{"}`, `{"POISON_SERIAL":"3","z":"}\"{"}`, `{"z":"}\"{"}`},
		{`{"A":null,"POISON_SERIAL":2}`, `{"A":null,"POISON_SERIAL":"3"}`, `{"A":null}`},
		{`{"POISON_A":1}`, `{"POISON_A":1,"POISON_SERIAL":"3"}`, `{"POISON_A":1}`},
		{"{\"k\\\"\":\"caf\xe9\"}", "{\"POISON_SERIAL\":\"3\",\"k\\\"\":\"caf\xe9\"}", "{\"k\\\"\":\"caf\xe9\"}"},
	}
	for _, tc := range cases {
		got, err := structattrs.Set(tc.in, k, `"3"`)
		if err != nil || got != tc.set {
			t.Errorf("Set(%s) = %s, %v; want %s", tc.in, got, err, tc.set)
		}
		got, _, err = structattrs.Remove(tc.set, k)
		if err != nil || got != tc.removed {
			t.Errorf("Remove(%s) = %s, %v; want %s", tc.set, got, err, tc.removed)
		}
		raw, ok, err := structattrs.Get(tc.set, k)
		if err != nil || !ok || raw != `"3"` {
			t.Errorf("Get(%s) = %s, %v, %v", tc.set, raw, ok, err)
		}
	}
	for _, bad := range []string{``, `[]`, `{"a":1`, `{"a" :1}`, `{"a":1} `, `{"a":}`, `{"POISON_SERIAL":"x}`} {
		if _, err := structattrs.Set(bad, k, `"3"`); err == nil {
			t.Errorf("Set(%q): no error", bad)
		}
	}
}

func TestSortObjects(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{`{"a":{"z":[{"y":1,"x":2}],"m":1}}`, `{"a":{"m":1,"z":[{"x":2,"y":1}]}}`},
		{`{"a":"{\"z\":1,\"a\":2}"}`, `{"a":"{\"z\":1,\"a\":2}"}`}, // strings are not objects
		{`[3,{"b":1.50,"a":-1e-07}]`, `[3,{"a":-1e-07,"b":1.50}]`},
	}
	for _, tc := range cases {
		got, err := structattrs.SortObjects(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("SortObjects(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestQuote(t *testing.T) {
	if got, want := structattrs.Quote("a\"\\\n\r\t\x01\x1f\xe9"), "\"a\\\"\\\\\\n\\r\\t\\u0001\\u001f\xe9\""; got != want {
		t.Fatalf("Quote = %s, want %s", got, want)
	}
}

func FuzzSet(f *testing.F) {
	f.Add(`{"PATH":"x","_x":1.5}`)
	f.Fuzz(func(t *testing.T, js string) {
		got, err := structattrs.Set(js, "POISON_SERIAL", `"3"`)
		if err != nil {
			return
		}
		back, removed, err := structattrs.Remove(got, "POISON_SERIAL")
		if err != nil || !removed {
			t.Fatalf("Remove(Set(%q)) = %q, %v, %v", js, back, removed, err)
		}
		if _, ok, _ := structattrs.Get(js, "POISON_SERIAL"); !ok && back != js {
			t.Fatalf("Remove(Set(%q)) = %q", js, back)
		}
	})
}

func TestLookup(t *testing.T) {
	const k = "POISON_SERIAL"
	cases := []struct {
		in, raw string
		ok      bool
	}{
		{`{}`, ``, false},
		{`{"POISON_SERIAL":"3"}`, `"3"`, true},
		{`{"A":[1,{"POISON_SERIAL":"inner"}],"POISON_SERIAL":2,"z":"}\"{"}`, `2`, true},
		{`{"POISON_SERIALZ":true,"a":[1,{"POISON_SERIAL":"inner"}]}`, ``, false},
		{`{"k\"":1,"POISON_SERIAL":{"a":"b"}}`, `{"a":"b"}`, true},
	}
	for _, tc := range cases {
		raw, ok, err := structattrs.Lookup(tc.in, k)
		if err != nil || ok != tc.ok || raw != tc.raw {
			t.Errorf("Lookup(%s) = %s, %v, %v; want %s, %v", tc.in, raw, ok, err, tc.raw, tc.ok)
		}
		graw, gok, gerr := structattrs.Get(tc.in, k)
		if graw != raw || gok != ok || gerr != nil {
			t.Errorf("Get(%s) = %s, %v, %v; Lookup gave %s, %v", tc.in, graw, gok, gerr, raw, ok)
		}
	}
	// Malformed up to the key: refused like Get.
	for _, bad := range []string{`[{"POISON_SERIAL":1}]`, `{"a" :1,"POISON_SERIAL":1}`, `{"a":,"POISON_SERIAL":1}`, `{"POISON_SERIAL":"x}`, `{"a":1,"POISON_SERIAL":}`} {
		if _, _, err := structattrs.Lookup(bad, k); err == nil {
			t.Errorf("Lookup(%q): no error", bad)
		}
	}
	// After the key nothing is read: Get refuses this object, Lookup
	// finds the key (an edit would refuse it).
	const tail = `{"POISON_SERIAL":1,"a" :2}`
	if raw, ok, err := structattrs.Lookup(tail, k); err != nil || !ok || raw != "1" {
		t.Errorf("Lookup(%s) = %s, %v, %v; want 1", tail, raw, ok, err)
	}
	if _, _, err := structattrs.Get(tail, k); err == nil {
		t.Errorf("Get(%s): no error", tail)
	}
}
