package closurecache_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/closurecache"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/storepath"
)

// members returns n derivations with random paths (from seed), one
// output each (every fourth three): the shape of a record of n
// derivations.
func members(n int, seed uint64) []builder.Member {
	r := rand.New(rand.NewPCG(seed, 2))
	hash := func() string {
		b := make([]byte, storepath.HashLen)
		for i := range b {
			b[i] = storepath.Alphabet[r.IntN(len(storepath.Alphabet))]
		}
		return string(b)
	}
	ms := make([]builder.Member, n)
	for i := range ms {
		name := fmt.Sprintf("package-%d-1.2.3", i)
		ms[i].DrvPath = "/nix/store/" + hash() + "-" + name + ".drv"
		ms[i].Outputs = []string{"/nix/store/" + hash() + "-" + name}
		if i%4 == 0 {
			ms[i].Outputs = append(ms[i].Outputs, "/nix/store/"+hash()+"-"+name+"-dev", "/nix/store/"+hash()+"-"+name+"-doc")
		}
	}
	return ms
}

// BenchmarkLoad: what a build with a record pays instead of reading the
// closure: Load (read, checksum, check) and Poisons against a lock of
// 1,000 entries that names nothing in it.
func BenchmarkLoad(b *testing.B) {
	lk := lock.New(lock.Source{}, lock.DefaultEnv)
	for _, m := range members(1000, 99) {
		lk.Derivations[filepath.Base(m.DrvPath)] = 1
		lk.Outputs[filepath.Base(m.Outputs[0])] = 1
	}
	for _, n := range []int{1001, 20000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ms := members(n, 1)
			c := closurecache.New(filepath.Join(b.TempDir(), "closures"))
			k := closurecache.Key{StoreDir: "/nix/store", RealStoreDir: "/nix/store", Attr: lock.DefaultEnv, Roots: []string{ms[0].DrvPath}}
			if err := c.Save(k, ms); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				r, err := c.Load(k)
				if err != nil {
					b.Fatal(err)
				}
				if r.Poisons(lk, true) {
					b.Fatal("poisons")
				}
			}
		})
	}
}

// BenchmarkSave: what a build without a record pays, in the background,
// to write one.
func BenchmarkSave(b *testing.B) {
	for _, n := range []int{1001, 20000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ms := members(n, 1)
			c := closurecache.New(filepath.Join(b.TempDir(), "closures"))
			k := closurecache.Key{StoreDir: "/nix/store", RealStoreDir: "/nix/store", Attr: lock.DefaultEnv, Roots: []string{ms[0].DrvPath}}
			for range b.N {
				if err := c.Save(k, ms); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
