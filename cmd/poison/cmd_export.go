package main

import (
	"context"

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
		if *out == "" {
			_, err := e.stdout.Write(l.Nix())
			return err
		}
		return l.WriteNixFile(absPath(e, *out))
	}
	return c
}
