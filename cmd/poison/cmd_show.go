package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/poison-nix/poison/internal/settings"
	"github.com/poison-nix/poison/resolver"
)

func showCommand() command {
	return command{
		name:    "show",
		summary: "show the serial of a derivation, output or name and the entries behind it",
		usage:   "[--lock FILE] [--max-age DURATION] DRV|OUTPUT|NAME",
		setup: func(fs *flag.FlagSet) runFunc {
			sf := settings.Register(fs, "lock", "max-age")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usageErrorf("show takes one DRV, OUTPUT or NAME")
				}
				s, err := loadSettings(e, sf)
				if err != nil {
					return err
				}
				l, err := readLock(e, "show", s)
				if err != nil {
					return err
				}
				sh, err := resolver.Show(ctx, resolver.Cache{Dir: s.CacheDir}, l, args[0], e.now())
				if sh != nil {
					fmt.Fprintf(e.stdout, "%s %s: serial %d\n", sh.Kind, sh.Key, sh.Serial)
				}
				if err != nil {
					return withHint(fmt.Errorf("show: entries: %w", err), "the serial above comes from the lock alone")
				}
				if len(sh.Entries) == 0 {
					fmt.Fprintf(e.stdout, "no entry names it\n")
				}
				for _, en := range sh.Entries {
					commit := en.Commit
					if commit == "" {
						commit = "(unknown)"
					}
					fmt.Fprintf(e.stdout, "\nentry   %s\ncommit  %s\ndate    %s\nauthor  %s\nreason  %q\n", en.File, commit, en.Date.Format("2006-01-02"), en.Author, en.Reason)
					if en.Group != "" {
						fmt.Fprintf(e.stdout, "group   %s\n", en.Group)
					}
					if en.Ticket != "" {
						fmt.Fprintf(e.stdout, "ticket  %s\n", en.Ticket)
					}
				}
				return nil
			}
		},
	}
}
