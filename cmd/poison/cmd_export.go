package main

import (
	"context"
	"os"

	"strings"
)

func exportCommand() command {
	c := command{
		name:    "export",
		summary: "write the lock in another format: 'export nix' writes poison.nix",
		usage:   "nix [--lock FILE] [-o FILE] [--max-age DURATION]",
	}
	c.run = func(ctx context.Context, e *env, args []string) error {
		fs := newFlags(e, &c)
		var rf resolveFlags
		rf.register(fs, false)
		out := fs.String("o", "", "write to this file (atomically) instead of stdout")
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			if err := parseFlags(e, &c, fs, args); err != nil {
				return err
			}
			return usageErrorf("export: name a format (known: nix)")
		}
		if args[0] != "nix" {
			return usageErrorf("export: unknown format %q (known: nix)", args[0])
		}
		if err := parseFlags(e, &c, fs, args[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usageErrorf("export nix takes no arguments, got %q", fs.Arg(0))
		}
		s, err := rf.settings(e, fs)
		if err != nil {
			return err
		}
		l, err := readLockDescribed(e, s)
		if err != nil {
			return err
		}
		if *out == "" || *out == "-" {
			_, err := e.stdout.Write(l.Nix())
			return err
		}
		path := absPath(e, *out)
		if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
			// A device or pipe (/dev/stdout): write into it; never rename
			// a temporary file over it.
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.Write(l.Nix())
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		}
		return l.WriteNixFile(path)
	}
	return c
}
