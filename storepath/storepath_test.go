package storepath_test

import (
	"strings"
	"testing"

	"github.com/poison-nix/poison/storepath"
)

func TestSplit(t *testing.T) {
	const h = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"
	good := []string{"/nix/store/" + h + "-a", "/nix/store/" + h + "-A+-._?=9.drv"}
	bad := []string{"", "/nix/store", "/nix/store/", "/nix/store/" + h, "/nix/store/" + h + "-", "/nix/store/" + h + "_a",
		"/nix/storex/" + h + "-a", "/nix/store/" + strings.Replace(h, "0", "e", 1) + "-a", "/nix/store/" + h + "-a/b",
		"/nix/store/" + h + "-" + strings.Repeat("a", 212), "/other/" + h + "-a"}
	for _, p := range good {
		if _, _, _, err := storepath.Split("/nix/store", p); err != nil {
			t.Errorf("Split(%q): %v", p, err)
		}
	}
	for _, p := range bad {
		if _, _, _, err := storepath.Split("/nix/store", p); err == nil {
			t.Errorf("Split(%q): no error", p)
		}
	}
}

// TestSyntax: one table for every check the registry, the lock and the
// builder make, with the message that names the problem.
func TestSyntax(t *testing.T) {
	const h = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"
	for _, c := range []struct {
		path, root, err string
	}{
		{"/nix/store/" + h + "-hello-2.12", "/nix/store/" + h + "-hello-2.12", ""},
		{"/nix/store/" + h + "-hello-2.12/bin/hello", "/nix/store/" + h + "-hello-2.12", ""},
		{"/nix/store/" + h + "-x.drv", "/nix/store/" + h + "-x.drv", ""},
		{"", "", "empty store path"},
		{"hello", "", `"hello" is not absolute`},
		{"/etc/passwd", "", `"/etc/passwd" is outside the store /nix/store`},
		{"/nix/store/" + h, "", "32-character hash, '-' and a name"},
		{"/nix/store/" + strings.ToUpper(h) + "-a", "", "outside nixbase32"},
		{"/nix/store/" + strings.Replace(h, "0", "e", 1) + "-a", "", "outside nixbase32"},
		{"/nix/store/" + h + "-.hidden", "", "starts with '.'"},
		{"/nix/store/" + h + "-a b", "", "has the character ' ', which store path names cannot contain"},
		{"/nix/store/" + h + "-über", "", "has the character 'ü', which store path names cannot contain"},
		{"/nix/store/" + h + "-a\xffb", "", `has the character '\xff', which store path names cannot contain`},
		{"/nix/store/" + h + "-" + strings.Repeat("a", 212), "", "name is 212 bytes long; Nix allows at most 211"},
	} {
		root, err := storepath.Root("/nix/store", c.path)
		if c.err == "" {
			if err != nil || root != c.root {
				t.Errorf("Root(%q) = %q, %v; want %q", c.path, root, err, c.root)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("Root(%q): error %v, want %q", c.path, err, c.err)
		}
	}
	if _, err := storepath.Base("/nix/store", "/nix/store/"+h+"-a/b"); err == nil || !strings.Contains(err.Error(), "names a file inside a store path") {
		t.Errorf("Base of a sub-path: %v", err)
	}
	if err := storepath.CheckName(strings.Repeat("a", 211)); err != nil {
		t.Errorf("211-character name: %v", err)
	}
}

func TestCheckStoreDir(t *testing.T) {
	for _, ok := range []string{"/nix/store", "/gnu/store", "/a", "/home/u/.nix/store", "/x+y/s_t-o.r=e?"} {
		if err := storepath.CheckStoreDir(ok); err != nil {
			t.Errorf("storepath.CheckStoreDir(%q) = %v, want nil", ok, err)
		}
	}
	for _, tc := range []struct{ dir, want string }{
		{"", "is empty"},
		{"nix/store", "is not absolute"},
		{"/", "is the root directory"},
		{"/nix/store/", "ends in a slash"},
		{"/nix//store", "empty"},
		{"/nix/./store", `"."`},
		{"/nix/../store", `".."`},
		{"/nix/..", `".."`},
		{"/nix store", `the character ' '`},
		{"/nix/store\n", `the character '\n'`},
		{"/nix/st$ore", `the character '$'`},
		{"/nix/st\"ore", `the character '"'`},
		{"/nix/störe", "the character 'ö'"},
		{"/" + strings.Repeat("a", storepath.MaxStoreDirLen), "bytes long"},
	} {
		err := storepath.CheckStoreDir(tc.dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasSuffix(err.Error(), "write a clean absolute directory such as /nix/store") || strings.Contains(err.Error(), "\n") {
			t.Errorf("storepath.CheckStoreDir(%q) = %v, want one line with %q and what to write", tc.dir, err, tc.want)
		}
	}
}

func TestDirs(t *testing.T) {
	for _, tc := range []struct{ store, real, wantStore, wantReal string }{
		{"", "", "/nix/store", "/nix/store"},
		{"/s", "", "/s", "/s"},
		{"", "/chroot/nix/store", "/nix/store", "/chroot/nix/store"},
		{"/s", "/r/s", "/s", "/r/s"},
	} {
		s, r := storepath.Dirs(tc.store, tc.real)
		if s != tc.wantStore || r != tc.wantReal {
			t.Errorf("storepath.Dirs(%q, %q) = %q, %q; want %q, %q", tc.store, tc.real, s, r, tc.wantStore, tc.wantReal)
		}
	}
}
