package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/poison-nix/poison/registry"
)

func initCommand() command {
	c := command{
		name:    "init",
		summary: "create a registry: registry.toml, entries/, CODEOWNERS, README and a git repository",
		usage:   "[--env NAME] [--store-dir DIR] [--branch NAME] DIR",
	}
	c.run = func(ctx context.Context, e *env, args []string) error {
		var o registry.InitOptions
		fs := newFlags(e, &c)
		fs.StringVar(&o.Env, "env", "", "attribute injected into poisoned derivations (default POISON_SERIAL)")
		fs.StringVar(&o.StoreDir, "store-dir", "", "Nix store directory of the entries (default /nix/store)")
		fs.StringVar(&o.Branch, "branch", "main", "initial branch `NAME`")
		if err := parseFlags(e, &c, fs, args); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usageErrorf("init: want exactly one DIR, got %d arguments", fs.NArg())
		}
		dir := fs.Arg(0)
		abs := dir
		if !filepath.IsAbs(abs) {
			abs = filepath.Join(e.dir, abs)
		}
		o.Now = e.now()
		if err := registry.Init(ctx, abs, o); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "created registry %s\n", dir)
		return nil
	}
	return c
}
