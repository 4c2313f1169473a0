package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/poison-nix/poison/registry"
)

func initCommand() command {
	return command{
		name:    "init",
		summary: "create a registry: registry.toml, entries/, CODEOWNERS, README, CI workflows and a git repository",
		usage:   "[--env NAME] [--store-dir DIR] [--branch NAME] [--ci github,gitlab|all|none] DIR",
		setup: func(fs *flag.FlagSet) runFunc {
			var o registry.InitOptions
			fs.StringVar(&o.Env, "env", "", "`NAME` of the attribute injected into poisoned derivations (default POISON_SERIAL)")
			storeDirVar(fs, &o.StoreDir, "Nix store directory `DIR` of the entries (default /nix/store)")
			fs.StringVar(&o.Branch, "branch", "main", "initial branch `NAME`")
			ci := fs.String("ci", "all", "pull-request workflows to write: `LIST` of github, gitlab, or all, none (lint --base and an impact report comment)")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usageErrorf("init: want exactly one DIR, got %d arguments", len(args))
				}
				var err error
				if o.CI, err = registry.ParseCI(*ci); err != nil {
					return usageErrorf("init: --ci: %v", err)
				}
				o.Now = e.now()
				if err := registry.Init(ctx, absPath(e, args[0]), o); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "created registry %s\n", args[0])
				return nil
			}
		},
	}
}
