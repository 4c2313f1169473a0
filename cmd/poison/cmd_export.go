package main

import (
	"context"
	"flag"
	"os"

	"github.com/poison-nix/poison/internal/settings"
)

func exportCommand() command {
	return command{
		name:    "export",
		words:   []string{"nix"},
		summary: "write the lock in another format: 'export nix' writes poison.nix",
		usage:   "nix [--lock FILE] [-o FILE] [--max-age DURATION]",
		setup: func(fs *flag.FlagSet) runFunc {
			sf := settings.Register(fs, "lock", "max-age")
			out := fs.String("o", "", "write to `FILE` (atomically) instead of stdout")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) == 0 {
					return usageErrorf("export: name a format (known: nix)")
				}
				if args[0] != "nix" {
					return usageErrorf("export: unknown format %q (known: nix)", args[0])
				}
				if len(args) > 1 {
					return usageErrorf("export nix takes no arguments, got %q", args[1])
				}
				s, err := loadSettings(e, sf)
				if err != nil {
					return err
				}
				l, err := readLock(e, "export", s)
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
		},
	}
}
