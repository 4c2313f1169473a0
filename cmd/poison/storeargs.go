package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/poison-nix/poison/storepath"
)

// storeArg is what a user named on the command line of show, add or
// check: a store path (from a .drv path, an output path, a path inside
// one, a relative path or a result symlink), or a derivation name.
type storeArg struct {
	// Path is the store path ("" for a name).
	Path string
	// Name is the derivation name when the argument is no path.
	Name string
}

// parseStoreArg interprets arg as show, add and check take it. Anything
// that looks like a path (a '/', a leading '.', a symlink here) must
// resolve into the store, else it is an error naming what it points to;
// a bare HASH-NAME is a store path in storeDir; anything else a name,
// which must be a valid derivation name.
func parseStoreArg(e *env, storeDir, arg string) (storeArg, error) {
	if arg == "" {
		return storeArg{}, fmt.Errorf("empty argument")
	}
	// DRV!out and DRV^out as Nix tools print them.
	for _, sep := range []string{"^", "!"} {
		if i := strings.LastIndex(arg, sep); i > 0 && strings.HasSuffix(arg[:i], ".drv") {
			arg = arg[:i]
		}
	}
	local := arg
	if !filepath.IsAbs(local) {
		local = filepath.Join(e.dir, arg)
	}
	fi, statErr := os.Lstat(local)
	// A bare word is a path only when it is a symlink here (result); a
	// file or directory that happens to share a derivation's name is not.
	pathLike := strings.ContainsRune(arg, '/') || strings.HasPrefix(arg, ".") || statErr == nil && fi.Mode()&os.ModeSymlink != 0
	if !pathLike {
		if storepath.CheckBase(arg) == nil {
			return storeArg{Path: storeDir + "/" + arg}, nil
		}
		if err := storepath.CheckName(arg); err != nil {
			return storeArg{}, fmt.Errorf("%q is neither a store path nor a derivation name: %v", arg, err)
		}
		return storeArg{Name: arg}, nil
	}
	p := arg
	if !strings.HasPrefix(arg, storeDir+"/") {
		if statErr != nil {
			return storeArg{}, fmt.Errorf("%s: no such file (not a store path, a result link or a derivation name)", arg)
		}
		r, err := filepath.EvalSymlinks(local)
		if err != nil {
			return storeArg{}, fmt.Errorf("%s: %w", arg, err)
		}
		if !strings.HasPrefix(r, storeDir+"/") {
			return storeArg{}, fmt.Errorf("%s is %s, outside the store %s", arg, r, storeDir)
		}
		p = r
	}
	root, err := storepath.Root(storeDir, p)
	if err != nil {
		return storeArg{}, err
	}
	return storeArg{Path: root}, nil
}

// storeDirValue is a --store-dir flag: the text is checked as a store
// directory when it is parsed (storepath.CheckStoreDir), so a bad value is
// a usage error naming the flag before anything is read.
type storeDirValue struct{ p *string }

// storeDirVar defines --store-dir on fs, storing into p (which holds the
// default).
func storeDirVar(fs *flag.FlagSet, p *string, usage string) {
	fs.Var(storeDirValue{p}, "store-dir", usage)
}

func (v storeDirValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v storeDirValue) Set(s string) error {
	if err := storepath.CheckStoreDir(s); err != nil {
		return err
	}
	*v.p = s
	return nil
}

// Placeholder names the value in help.
func (storeDirValue) Placeholder() string { return "DIR" }
