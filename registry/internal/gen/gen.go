// Package gen writes synthetic registries for benchmarks and tests: valid
// entries with deterministic store paths, optionally committed one by one
// into a git history.
package gen

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

const nixbase32 = "0123456789abcdfghijklmnpqrsvwxyz"

// Hash returns a deterministic 32-character nixbase32 hash part.
func Hash(r *rand.Rand) string {
	var b [32]byte
	for i := range b {
		b[i] = nixbase32[r.IntN(32)]
	}
	return string(b[:])
}

// Entry returns the path (relative to the registry root) and content of
// the i-th synthetic entry. Every tenth entry re-poisons an earlier
// derivation, so serials above 1 occur.
func Entry(seed uint64, i int) (string, []byte) {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	year, month, day := 2020+i%6, 1+i%12, 1+i%28
	name := fmt.Sprintf("pkg%d-1.%d", i%997, i%13)
	h := Hash(r)
	if i%10 == 9 {
		// Same derivation as entry i-9 (a second incident).
		h = Hash(rand.New(rand.NewPCG(seed, uint64(i-9))))
		name = fmt.Sprintf("pkg%d-1.%d", (i-9)%997, (i-9)%13)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "reason = \"synthetic incident %d: miscompiled on builder b%d\"\n", i, i%17)
	fmt.Fprintf(&b, "author = \"Gen Erator <gen@example.com>\"\n")
	fmt.Fprintf(&b, "date = %04d-%02d-%02d\n", year, month, day)
	if i%3 == 0 {
		fmt.Fprintf(&b, "group = \"release-%d\"\nticket = \"HW-%d\"\n", i%50, i)
	}
	if i%7 == 0 {
		fmt.Fprintf(&b, "names = [\"%s\"]\n", name)
	}
	fmt.Fprintf(&b, "\n[[derivation]]\npath = \"/nix/store/%s-%s.drv\"\n", h, name)
	fmt.Fprintf(&b, "outputs = [\"/nix/store/%s-%s\", \"/nix/store/%s-%s-dev\"]\n", Hash(r), name, Hash(r), name)
	file := fmt.Sprintf("entries/%04d/%02d/%04d-%02d-%02d-incident-%d.toml", year, month, year, month, day, i)
	return file, []byte(b.String())
}

// Config is the registry.toml of generated registries.
const Config = "env = \"POISON_SERIAL\"\nstore-dir = \"/nix/store\"\n"

// Write creates a registry of n entries under dir.
func Write(dir string, seed uint64, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "registry.toml"), []byte(Config), 0o644); err != nil {
		return err
	}
	made := map[string]bool{}
	for i := 0; i < n; i++ {
		file, data := Entry(seed, i)
		p := filepath.Join(dir, filepath.FromSlash(file))
		if d := filepath.Dir(p); !made[d] {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			made[d] = true
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
