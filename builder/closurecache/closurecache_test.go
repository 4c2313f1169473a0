package closurecache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/closurecache"
	"github.com/poison-nix/poison/registry/lock"
)

// The closures of testdata/drv: .drv files Nix wrote (plain, multi-output,
// structured, fixed-output, floating content-addressed, escapes), clean
// and with the serial attribute, kept outside the store.
const goldenDir = "../../testdata/drv"

type cases struct {
	Roots []struct {
		Clean    string `json:"clean"`
		Poisoned string `json:"poisoned"`
	} `json:"roots"`
}

// golden returns the clean and the poisoned roots of testdata/drv.
func golden(t *testing.T) (clean, poisoned []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenDir, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g cases
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	for _, r := range g.Roots {
		clean = append(clean, r.Clean)
		poisoned = append(poisoned, r.Poisoned)
	}
	return clean, poisoned
}

func load(t *testing.T, roots []string) *builder.Closure {
	t.Helper()
	c, err := builder.LoadClosure(context.Background(), builder.LoadOptions{RealStoreDir: filepath.Join(goldenDir, "store")}, roots)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func key(roots []string) closurecache.Key {
	return closurecache.Key{StoreDir: "/nix/store", RealStoreDir: filepath.Join(goldenDir, "store"), Attr: lock.DefaultEnv, Roots: roots}
}

// saved writes the record of the clean closure into a new cache.
func saved(t *testing.T) (*closurecache.Cache, closurecache.Key, []builder.Member) {
	t.Helper()
	clean, _ := golden(t)
	ms, ok := load(t, clean).Members(lock.DefaultEnv)
	if !ok {
		t.Fatal("Members: the clean closure carries the attribute")
	}
	c := closurecache.New(filepath.Join(t.TempDir(), "closures"))
	k := key(clean)
	if err := c.Save(k, ms); err != nil {
		t.Fatal(err)
	}
	return c, k, ms
}

// TestAgreesWithRewrite: a lock that names any path (or, by name, any
// name) of the closure is one the record says poisons it, and Rewrite
// poisons something with it; a lock naming none of them is one the
// record lets pass, and Rewrite changes nothing with it. This is the
// property a build relies on to skip the closure.
func TestAgreesWithRewrite(t *testing.T) {
	c, k, ms := saved(t)
	rec, err := c.Load(k)
	if err != nil {
		t.Fatal(err)
	}
	clean, _ := golden(t)
	cl := load(t, clean)
	if rec.Len() != cl.Len() || len(ms) != cl.Len() {
		t.Fatalf("record of %d, members %d, closure %d derivations", rec.Len(), len(ms), cl.Len())
	}
	ctx := context.Background()
	rewrite := func(lk *lock.File, byName bool) *builder.Result {
		t.Helper()
		res, err := builder.Rewrite(ctx, cl, builder.Options{Lock: lk, ByName: byName})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	type one struct {
		what   string
		lk     *lock.File
		byName bool
	}
	var locks []one
	for _, m := range ms {
		lk := lock.New(lock.Source{}, lock.DefaultEnv)
		lk.Derivations[filepath.Base(m.DrvPath)] = 1
		locks = append(locks, one{m.DrvPath, lk, false})
		for _, o := range m.Outputs {
			lk := lock.New(lock.Source{}, lock.DefaultEnv)
			lk.Outputs[filepath.Base(o)] = 2
			locks = append(locks, one{o, lk, false})
		}
		name := strings.TrimSuffix(filepath.Base(m.DrvPath)[33:], ".drv")
		lk = lock.New(lock.Source{}, lock.DefaultEnv)
		lk.Names[name] = 1
		locks = append(locks, one{"name " + name, lk, true})
	}
	var recorded []string
	for _, l := range locks {
		if !rec.Poisons(l.lk, l.byName) {
			t.Errorf("a lock naming %s: the record says it poisons nothing", l.what)
		}
		if res := rewrite(l.lk, l.byName); len(res.Poisoned) == 0 {
			t.Errorf("a lock naming %s: Rewrite poisons nothing (the test's assumption is wrong)", l.what)
		}
		for o := range l.lk.Outputs {
			recorded = append(recorded, "/nix/store/"+o)
		}
	}
	// Every output path of the closure is recorded (OutPaths maps each
	// to its new path).
	res := rewrite(lock.New(lock.Source{}, lock.DefaultEnv), false)
	var all []string
	for o := range res.OutPaths {
		all = append(all, o)
	}
	slices.Sort(all)
	slices.Sort(recorded)
	if !slices.Equal(recorded, all) || len(all) <= len(ms)/2 {
		t.Errorf("recorded outputs %v\nwant %v", recorded, all)
	}

	// Locks naming nothing of the closure: other paths, names without
	// --by-name.
	elsewhere := lock.New(lock.Source{}, lock.DefaultEnv)
	elsewhere.Derivations["00000000000000000000000000000000-lib.drv"] = 3
	elsewhere.Outputs["00000000000000000000000000000000-lib"] = 3
	elsewhere.Names["elsewhere"] = 1
	names := lock.New(lock.Source{}, lock.DefaultEnv)
	for _, m := range ms {
		names.Names[strings.TrimSuffix(filepath.Base(m.DrvPath)[33:], ".drv")] = 1
	}
	for _, l := range []one{
		{"nothing", lock.New(lock.Source{}, lock.DefaultEnv), true},
		{"paths elsewhere", elsewhere, true},
		{"names, without by-name", names, false},
	} {
		if rec.Poisons(l.lk, l.byName) {
			t.Errorf("a lock naming %s: the record says it poisons something", l.what)
		}
		if res := rewrite(l.lk, l.byName); len(res.Poisoned) != 0 || len(res.Changed) != 0 || !slices.Equal(res.Roots, clean) {
			t.Errorf("a lock naming %s: Rewrite changes %d derivations", l.what, len(res.Changed))
		}
	}

	// A lock of another store could not be applied: the record does not
	// say it is harmless.
	other := lock.New(lock.Source{}, lock.DefaultEnv)
	other.StoreDir = "/other/store"
	if !rec.Poisons(other, false) {
		t.Error("a lock of another store: the record says it poisons nothing")
	}
}

// TestMembers: a closure that carries the lock's attribute has no record
// (its canonical paths, what a lock names, are not its own); under
// another attribute name it has one.
func TestMembers(t *testing.T) {
	clean, poisoned := golden(t)
	cl, pc := load(t, clean), load(t, poisoned)
	if _, ok := pc.Members(lock.DefaultEnv); ok {
		t.Error("Members of a closure carrying POISON_SERIAL: ok")
	}
	ms, ok := pc.Members("OTHER_SERIAL")
	if !ok || len(ms) != pc.Len() {
		t.Errorf("Members under another attribute: %d members, ok %v", len(ms), ok)
	}
	ms, _ = cl.Members(lock.DefaultEnv)
	for i, r := range clean {
		if ms[i].DrvPath != r {
			t.Errorf("member %d is %s, want the root %s", i, ms[i].DrvPath, r)
		}
	}
	paths := cl.Paths()
	slices.Sort(paths)
	var got []string
	for _, m := range ms {
		got = append(got, m.DrvPath)
	}
	slices.Sort(got)
	if !slices.Equal(got, paths) {
		t.Errorf("members %v\nwant the closure %v", got, paths)
	}
}

// TestNoRecord: every reason not to trust a record makes Load fail with
// ErrNoRecord, never return a record.
func TestNoRecord(t *testing.T) {
	c, k, _ := saved(t)
	file := func() string {
		m, _ := filepath.Glob(filepath.Join(c.Dir(), "*.closure"))
		if len(m) != 1 {
			t.Fatalf("records: %v", m)
		}
		return m[0]
	}
	good, err := os.ReadFile(file())
	if err != nil {
		t.Fatal(err)
	}
	other := func(f func(*closurecache.Key)) closurecache.Key {
		k2 := k
		k2.Roots = slices.Clone(k.Roots)
		f(&k2)
		return k2
	}
	for _, tc := range []struct {
		name  string
		key   closurecache.Key
		setup func(t *testing.T, f string)
	}{
		{name: "missing", key: k, setup: func(t *testing.T, f string) { os.Remove(f) }},
		{name: "a byte changed", key: k, setup: func(t *testing.T, f string) {
			b := []byte(string(good))
			b[len(b)/2] ^= 1
			os.WriteFile(f, b, 0o600)
		}},
		{name: "truncated", key: k, setup: func(t *testing.T, f string) { os.WriteFile(f, good[:len(good)-10], 0o600) }},
		{name: "a member line lost", key: k, setup: func(t *testing.T, f string) {
			i := strings.Index(string(good), "members ")
			j := i + strings.IndexByte(string(good[i:]), '\n') + 1
			l := j + strings.IndexByte(string(good[j:]), '\n') + 1
			os.WriteFile(f, append(slices.Clone(good[:j]), good[l:]...), 0o600)
		}},
		{name: "empty", key: k, setup: func(t *testing.T, f string) { os.WriteFile(f, nil, 0o600) }},
		{name: "writable by others", key: k, setup: func(t *testing.T, f string) { os.Chmod(f, 0o622) }},
		{name: "directory writable by others", key: k, setup: func(t *testing.T, f string) { os.Chmod(c.Dir(), 0o777) }},
		{name: "a symlink", key: k, setup: func(t *testing.T, f string) {
			g := filepath.Join(t.TempDir(), "elsewhere")
			os.WriteFile(g, good, 0o600)
			os.Remove(f)
			os.Symlink(g, f)
		}},
		// A record renamed to the file of another key (filenames are
		// the key's hash): the key inside is checked.
		// The record put where another key's would be (file names are
		// the key's hash): the key inside is checked. The other keys
		// are as long as the record's, so that only that check tells.
		{name: "another store", key: other(func(k *closurecache.Key) {
			k.StoreDir = "/nix/stora"
			for i, r := range k.Roots {
				k.Roots[i] = "/nix/stora/" + filepath.Base(r)
			}
		})},
		{name: "another real store", key: other(func(k *closurecache.Key) { k.RealStoreDir = k.RealStoreDir[:len(k.RealStoreDir)-1] + "X" })},
		{name: "another attribute", key: other(func(k *closurecache.Key) { k.Attr = "POISON_SERIAX" })},
		{name: "another root", key: other(func(k *closurecache.Key) {
			r := []byte(k.Roots[0])
			if i := len("/nix/store/"); r[i] == '0' {
				r[i] = '1'
			} else {
				r[i] = '0'
			}
			k.Roots[0] = string(r)
		})},
		{name: "fewer roots", key: other(func(k *closurecache.Key) { k.Roots = k.Roots[1:] })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := file()
			if tc.setup != nil {
				tc.setup(t, f)
			} else if err := os.WriteFile(filepath.Join(c.Dir(), closurecache.FileOf(tc.key)), good, 0o600); err != nil {
				t.Fatal(err)
			}
			if r, err := c.Load(tc.key); err == nil || !errors.Is(err, closurecache.ErrNoRecord) {
				t.Errorf("Load: record %v, error %v; want ErrNoRecord", r, err)
			}
			// Restore the good record.
			os.Chmod(c.Dir(), 0o700)
			os.Remove(f)
			if err := os.WriteFile(f, good, 0o600); err != nil {
				t.Fatal(err)
			}
			m, _ := filepath.Glob(filepath.Join(c.Dir(), "*.closure"))
			for _, g := range m {
				if g != f {
					os.Remove(g)
				}
			}
			if _, err := c.Load(k); err != nil {
				t.Fatalf("the good record: %v", err)
			}
		})
	}
}

// TestSaveRefuses: what cannot be recorded exactly is not written.
func TestSaveRefuses(t *testing.T) {
	clean, _ := golden(t)
	c := closurecache.New(filepath.Join(t.TempDir(), "closures"))
	for _, tc := range []struct {
		name string
		key  closurecache.Key
		ms   []builder.Member
	}{
		{"no roots", closurecache.Key{StoreDir: "/nix/store", RealStoreDir: "/nix/store", Attr: "A"}, []builder.Member{{DrvPath: clean[0]}}},
		{"a root outside the store", key([]string{"/other/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x.drv"}), []builder.Member{{DrvPath: clean[0]}}},
		{"a line break in the store", closurecache.Key{StoreDir: "/nix/store\n", RealStoreDir: "/nix/store", Attr: "A", Roots: clean}, nil},
		{"a member outside the store", key(clean[:1]), []builder.Member{{DrvPath: clean[0]}, {DrvPath: "/tmp/x.drv"}}},
		{"roots not first", key(clean[:1]), []builder.Member{{DrvPath: clean[1]}, {DrvPath: clean[0]}}},
		{"an output with a space", key(clean[:1]), []builder.Member{{DrvPath: clean[0], Outputs: []string{"/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a b"}}}},
	} {
		if err := c.Save(tc.key, tc.ms); err == nil {
			t.Errorf("%s: saved", tc.name)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(c.Dir(), "*")); len(m) != 0 {
		t.Errorf("files written: %v", m)
	}
}

// TestPrune: past its bounds the cache drops the records least recently
// read, and keeps the one just written.
func TestPrune(t *testing.T) {
	clean, _ := golden(t)
	c := closurecache.New(filepath.Join(t.TempDir(), "closures"))
	c.MaxRecords = 4
	// Each attribute name is a key of its own.
	keyN := func(i int) closurecache.Key {
		k := key(clean[:1])
		k.Attr = fmt.Sprintf("ATTR_%d", i)
		return k
	}
	var keys []closurecache.Key
	for i := range 4 {
		k := keyN(i)
		if err := c.Save(k, []builder.Member{{DrvPath: clean[0]}}); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(time.Duration(i-10) * time.Minute)
		os.Chtimes(filepath.Join(c.Dir(), closurecache.FileOf(k)), old, old)
		keys = append(keys, k)
	}
	// Reading the first makes it the most recently used.
	if _, err := c.Load(keys[0]); err != nil {
		t.Fatal(err)
	}
	last := keyN(4)
	if err := c.Save(last, []builder.Member{{DrvPath: clean[0]}}); err != nil {
		t.Fatal(err)
	}
	m, _ := filepath.Glob(filepath.Join(c.Dir(), "*.closure"))
	if len(m) != 3 {
		t.Errorf("%d records left, want 3", len(m))
	}
	for i, k := range append(keys, last) {
		_, err := c.Load(k)
		if want := i == 0 || i == 3 || i == 4; (err == nil) != want {
			t.Errorf("record %d: kept %v, want %v", i, err == nil, want)
		}
	}
}
