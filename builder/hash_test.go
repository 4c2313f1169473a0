package builder

import (
	"testing"

	"github.com/poison-nix/poison/builder/internal/aterm"
)

// TestAppendModuloInputs: inputs sorted by hash-modulo, written in hex;
// two inputs with the same hash-modulo (twins) become one entry with the
// union of their output names.
func TestAppendModuloInputs(t *testing.T) {
	h := func(b byte) [32]byte { var x [32]byte; x[0] = b; x[31] = b; return x }
	hex := func(b byte) string {
		const digits = "0123456789abcdef"
		s := []byte{digits[b>>4], digits[b&15]}
		for range 30 {
			s = append(s, '0', '0')
		}
		return string(append(s, digits[b>>4], digits[b&15]))
	}
	d := &aterm.Derivation{InputDrvs: []aterm.InputDrv{
		{Path: "/nix/store/a.drv", Outputs: []string{"out"}},
		{Path: "/nix/store/b.drv", Outputs: []string{"dev", "out"}},
		{Path: "/nix/store/c.drv", Outputs: []string{"lib"}},
		{Path: "/nix/store/d.drv", Outputs: []string{"bin", "dev"}},
	}}
	hms := [][32]byte{h(0xb0), h(0x1f), h(0xb0), h(0x1f)}
	var es []modEntry
	got := string(appendModuloInputs([]byte("x"), &es, d, func(j int) [32]byte { return hms[j] }))
	want := `x("` + hex(0x1f) + `",["bin","dev","out"]),("` + hex(0xb0) + `",["lib","out"])`
	if got != want {
		t.Errorf("appendModuloInputs =\n%s\nwant\n%s", got, want)
	}
	// Reused scratch, no inputs.
	if got := string(appendModuloInputs(nil, &es, &aterm.Derivation{}, nil)); got != "" {
		t.Errorf("no inputs: %q", got)
	}
}
