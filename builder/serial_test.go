package builder_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/registry/lock"
)

// TestCarriedSerials: the attribute is read from env and from __json, is 0
// when absent, and agrees with what Rewrite writes.
func TestCarriedSerials(t *testing.T) {
	dir := t.TempDir()
	a := hA + "-a.drv"
	b := hB + "-b.drv"
	c := hC + "-c.drv"
	out := func(n string) string { return `("out","/nix/store/` + hO + `-` + n + `")` }
	files := map[string]string{
		a: drvText("a", nil, ""),
		b: drvText("b", []string{a}, `("POISON_SERIAL","2"),`+out("b")),
		c: drvText("c", []string{b}, `("__json","{\"POISON_SERIAL\":\"3\",\"x\":1}"),`+out("c")),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	cl, err := builder.LoadClosure(ctx, builder.LoadOptions{RealStoreDir: dir, NoVerify: true}, []string{"/nix/store/" + c})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cl.CarriedSerials("")
	if want := map[string]int{"/nix/store/" + b: 2, "/nix/store/" + c: 3}; err != nil || !maps.Equal(got, want) {
		t.Errorf("CarriedSerials = %v, %v; want %v", got, err, want)
	}
	if got, err := cl.CarriedSerials("OTHER"); err != nil || len(got) != 0 {
		t.Errorf("other attribute: %v, %v; want none", got, err)
	}

	// Rewritten with a lock that gives a serial 5: the new closure carries it.
	lk := lock.New(lock.Source{}, lock.DefaultEnv)
	lk.Names["a"] = 5
	res, err := builder.Rewrite(ctx, cl, builder.Options{Lock: lk, ByName: true})
	if err != nil {
		t.Fatal(err)
	}
	dir2 := t.TempDir()
	for _, d := range res.Changed {
		if err := os.WriteFile(filepath.Join(dir2, filepath.Base(d.Path)), d.ATerm, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cl2, err := builder.LoadClosure(ctx, builder.LoadOptions{RealStoreDir: dir2, NoVerify: true}, []string{res.DrvPaths["/nix/store/"+c]})
	if err != nil {
		t.Fatal(err)
	}
	got, err = cl2.CarriedSerials("")
	if want := map[string]int{res.DrvPaths["/nix/store/"+a]: 5}; err != nil || !maps.Equal(got, want) {
		t.Errorf("rewritten: %v, %v; want %v (only a carries a serial)", got, err, want)
	}

	// A value that is no serial is an error naming the derivation.
	bad := hA + "-bad.drv"
	if err := os.WriteFile(filepath.Join(dir, bad), []byte(drvText("bad", nil, `("POISON_SERIAL","x"),`+out("bad"))), 0o644); err != nil {
		t.Fatal(err)
	}
	cl3, err := builder.LoadClosure(ctx, builder.LoadOptions{RealStoreDir: dir, NoVerify: true}, []string{"/nix/store/" + bad})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl3.CarriedSerials(""); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad value: %v", err)
	}
}
