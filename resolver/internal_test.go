package resolver

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/resolver/internal/regtest"
)

// randomLock makes a lock with awkward names too.
func randomLock(rng *rand.Rand, n int, weird bool) *lock.File {
	l := lock.New(lock.Source{URL: "git://h/r", Ref: "main", Commit: fmt.Sprintf("%040x", rng.Uint64())}, "POISON_SERIAL")
	names := []string{"plain-1.0", "quo\"te", "back\\slash", "${inject}", "new\nline", "ünïcode", "tab\there", "<html>&amp;", "\u2028sep"}
	for i := 0; i < n; i++ {
		h := regtest.Hash(fmt.Sprint(rng.Uint64()))
		l.Derivations[h+"-p.drv"] = 1 + rng.IntN(3)
		l.Outputs[h+"-p"] = 1 + rng.IntN(3)
		l.Names[fmt.Sprintf("p%d", i)] = 1 + rng.IntN(3)
	}
	if weird {
		for i, nm := range names {
			l.Names[nm] = i + 1
		}
	}
	return l
}

// TestFastLock checks the fast encoder and decoder against the lock
// package.
func TestFastLock(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []*lock.File{
		lock.New(lock.Source{}, "POISON_SERIAL"),
		randomLock(rng, 1, false),
		randomLock(rng, 500, false),
		randomLock(rng, 50, true),
	}
	const weird = 3
	store := randomLock(rng, 3, false)
	store.StoreDir = "/gnu/store"
	cases = append(cases, store)
	weirdSrc := randomLock(rng, 3, false)
	weirdSrc.Registry.URL = "file:///a \"quoted\" path/ü"
	cases = append(cases, weirdSrc)
	for i, l := range cases {
		want, err := l.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeLock(l)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("case %d: encodeLock differs from Marshal:\n%s\nwant:\n%s", i, got, want)
		}
		back, err := decodeLock(want)
		ref, rerr := lock.Unmarshal(want)
		if i == weird {
			// Name keys that are no derivation names: the encoder writes
			// them (escaped), but no decoder takes them back.
			if err == nil || rerr == nil {
				t.Errorf("case %d: a lock with invalid name keys decoded: decodeLock %v, Unmarshal %v", i, err, rerr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if rerr != nil {
			t.Fatalf("case %d: %v", i, rerr)
		}
		if !reflect.DeepEqual(back, ref) {
			t.Errorf("case %d: decodeLock differs from Unmarshal", i)
		}
		if src, ok := decodeSource(want); !ok || src != l.Registry {
			t.Errorf("case %d: decodeSource = %v, %v", i, src, ok)
		}
	}
	for _, bad := range []string{"", "{", "{\n  \"version\": 1,\n}\n", "[]"} {
		if _, err := decodeLock([]byte(bad)); err == nil {
			t.Errorf("decodeLock(%q) succeeded", bad)
		}
	}
}

func FuzzDecodeLock(f *testing.F) {
	l := randomLock(rand.New(rand.NewPCG(3, 4)), 3, true)
	b, _ := l.Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeLock(data)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to a lock that decodes the same.
		enc, err := encodeLock(got)
		if err != nil {
			return
		}
		again, err := decodeLock(enc)
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// TestExtendEncoded checks the byte-level merge against encoding the
// summed lock.
func TestExtendEncoded(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	empty := lock.New(lock.Source{URL: "u", Ref: "r", Commit: fmt.Sprintf("%040x", 1)}, "POISON_SERIAL")
	for i, c := range []struct{ base, add *lock.File }{
		{randomLock(rng, 200, false), randomLock(rng, 3, false)},
		{empty, randomLock(rng, 3, false)},
		{randomLock(rng, 50, false), lock.New(lock.Source{}, "POISON_SERIAL")},
		{randomLock(rng, 1, false), randomLock(rng, 40, false)},
	} {
		// Overlapping keys too.
		for k, v := range c.base.Outputs {
			c.add.Outputs[k] = v
			break
		}
		baseBytes, _ := encodeLock(c.base)
		src := lock.Source{URL: "git://new", Ref: "main", Commit: fmt.Sprintf("%040x", i+7)}
		got, ok := extendEncoded(baseBytes, src, c.add)
		if !ok {
			t.Fatalf("case %d: not extended", i)
		}
		sum := lock.New(src, "POISON_SERIAL")
		for _, l := range []*lock.File{c.base, c.add} {
			for k, v := range l.Derivations {
				sum.Derivations[k] += v
			}
			for k, v := range l.Outputs {
				sum.Outputs[k] += v
			}
			for k, v := range l.Names {
				sum.Names[k] += v
			}
		}
		want, _ := sum.Marshal()
		if string(got) != string(want) {
			t.Errorf("case %d:\n%s\nwant:\n%s", i, got, want)
		}
	}
	weird := randomLock(rng, 3, true)
	if _, ok := extendEncoded([]byte("{}"), lock.Source{}, weird); ok {
		t.Error("extended with non-plain keys")
	}
	other := randomLock(rng, 3, false)
	other.Env = "OTHER"
	b, _ := encodeLock(randomLock(rng, 3, false))
	if _, ok := extendEncoded(b, lock.Source{}, other); ok {
		t.Error("extended across env attributes")
	}
}

// TestEncodeRegistry checks that the lock written from a registry's
// compact serial counts is byte for byte the lock the lock package
// marshals from maps, on a registry with repeated derivations, outputs
// and names. (Keys that are not plain cannot come from a valid registry:
// names are store path names.)
func TestEncodeRegistry(t *testing.T) {
	for _, weird := range []bool{false} {
		dir := t.TempDir()
		write := func(name, content string) {
			p := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("registry.toml", "env = \"POISON_SERIAL\"\n")
		for i := 0; i < 3000; i++ {
			j := i
			if i%10 == 9 {
				j = i - 9 // a second incident of the same derivation
			}
			h := regtest.Hash(fmt.Sprint("drv", j))
			name := fmt.Sprintf("pkg%d-1.%d", j%97, j%13)
			names := ""
			if i%7 == 0 {
				names = fmt.Sprintf("names = [%q]\n", name)
			}
			write(fmt.Sprintf("entries/2026/%02d/incident-%d.toml", 1+i%12, i), fmt.Sprintf(
				"reason = \"incident %d\"\nauthor = \"A <a@example.com>\"\ndate = 2026-01-01\n%s\n[[derivation]]\npath = \"/nix/store/%s-%s.drv\"\noutputs = [\"/nix/store/%s-%s\"]\n",
				i, names, h, name, regtest.Hash(fmt.Sprint("out", j)), name))
		}
		src := lock.Source{URL: "git://h/r", Ref: "main", Commit: strings.Repeat("ab", 20)}
		load := func() *registry.Registry {
			reg, err := registry.Load(os.DirFS(dir), registry.LoadOptions{OnlyLock: true, Now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)})
			if err != nil {
				t.Fatal(err)
			}
			return reg
		}
		want, err := load().Lock(src).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, _, ok := encodeRegistry(load(), src)
		if ok == weird {
			t.Errorf("weird=%v: encodeRegistry ok = %v", weird, ok)
		}
		if !ok {
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("encodeRegistry differs from Marshal (%d bytes, want %d)", len(got), len(want))
		}
		if !bytes.Contains(got, []byte("-pkg0-1.0.drv\": 2")) {
			t.Errorf("no serial of 2 in the lock: the repeated incidents were not counted")
		}
	}
}
