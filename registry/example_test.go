package registry_test

import (
	"errors"
	"fmt"
	"testing/fstest"
	"time"

	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/registry/lock"
)

func ExampleLoad() {
	fsys := fstest.MapFS{
		"registry.toml": {Data: []byte(`env = "POISON_SERIAL"`)},
		"entries/2026/11/2026-11-25-fpu.toml": {Data: []byte(`
reason = "board rev B FPU erratum"
author = "Jane Doe <jane@example.com>"
date   = 2026-11-25

[[derivation]]
path    = "/nix/store/6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv"
outputs = ["/nix/store/bgzy1gmnwailjvdn2v79cvkn4xmr45v8-b"]
`)},
		"entries/2026/11/broken.toml": {Data: []byte("reason = \"x\"\nauthor = \"y\"\ndate = 2026-11-25\nnames = [\"a b\"]\n")},
	}
	r, err := registry.Load(fsys, registry.LoadOptions{Now: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)})
	var problems registry.Problems
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Println(p)
		}
	}
	// The valid entries are still there.
	lk := r.Lock(lock.Source{})
	fmt.Println(len(r.Entries), lk.Derivations, lk.Outputs, lk.Names)
	// Output:
	// entries/2026/11/broken.toml:4:10: names[0]: name "a b" has the character ' ', which store path names cannot contain; write a derivation name such as openssl-3.0.13
	// 1 map[6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv:1] map[bgzy1gmnwailjvdn2v79cvkn4xmr45v8-b:1] map[b:1]
}

func ExampleDecodeEntry() {
	data := []byte("reason = \"x\"\nauthor = \"y\"\ndate = 2026-11-25\n\n[[derivation]]\npath = \"/nix/store/6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv\"\n")
	e, problems := registry.DecodeEntry("entries/x.toml", data, registry.Config{}, time.Time{})
	fmt.Println(e.Derivations[0].Name())
	fmt.Println(problems[0].Severity, problems[0])
	// Output:
	// b
	// warning entries/x.toml:5:1: derivation[0]: no outputs recorded for 6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv; a derivation with other .drv paths but the same outputs slips through: record them with poison add
}
