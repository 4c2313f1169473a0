package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseStoreArg: what show, add and check accept, in a directory with
// a result link and a directory named like a derivation.
func TestParseStoreArg(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	const h = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"
	out := store + "/" + h + "-hello-2.12"
	os.MkdirAll(filepath.Join(out, "bin"), 0o755)
	os.WriteFile(store+"/"+h+"-hello-2.12.drv", nil, 0o644)
	os.Symlink(out, filepath.Join(dir, "result"))
	os.Symlink("/etc", filepath.Join(dir, "etc-link"))
	os.Mkdir(filepath.Join(dir, "openssl-3.0.13"), 0o755)
	e := &env{dir: dir}
	for _, c := range []struct {
		arg, path, name, err string
	}{
		{arg: out, path: out},
		{arg: out + "/bin/hello", path: out},
		{arg: h + "-hello-2.12", path: out},
		{arg: store + "/" + h + "-hello-2.12.drv!out", path: store + "/" + h + "-hello-2.12.drv"},
		{arg: store + "/" + h + "-hello-2.12.drv^out,dev", path: store + "/" + h + "-hello-2.12.drv"},
		{arg: "result", path: out},
		{arg: "./result", path: out},
		{arg: filepath.Join(dir, "result"), path: out},
		{arg: "hello-2.12", name: "hello-2.12"},
		{arg: "openssl-3.0.13", name: "openssl-3.0.13"}, // a directory here, but no link: a name
		{arg: "./resutl", err: "./resutl: no such file"},
		{arg: "etc-link", err: "outside the store"},
		{arg: "/etc/passwd", err: "is /etc/passwd, outside the store"},
		{arg: "a b", err: "neither a store path nor a derivation name"},
		{arg: store + "/" + strings.ToUpper(h) + "-x", err: "outside nixbase32"},
		{arg: "", err: "empty argument"},
	} {
		sa, err := parseStoreArg(e, store, c.arg)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %+v, %v; want error %q", c.arg, sa, err, c.err)
			}
			continue
		}
		if err != nil || sa.Path != c.path || sa.Name != c.name {
			t.Errorf("%q: %+v, %v; want path %q name %q", c.arg, sa, err, c.path, c.name)
		}
	}
}
