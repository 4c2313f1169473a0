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
			asJSON := fs.Bool("json", false, "print one JSON document instead of text")
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
				if *asJSON {
					if err != nil {
						return withHint(fmt.Errorf("show: entries: %w", err), "the lock alone gives the serial; the registry commit it pins is not in the cache (run 'poison resolve')")
					}
					return writeReport(e.stdout, true, showJSON(sh), nil)
				}
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

// shownJSON is `poison show --json` (docs/json.md).
type shownJSON struct {
	Kind    string           `json:"kind"` // derivation, output or name
	Key     string           `json:"key"`
	Serial  int              `json:"serial"`
	Entries []shownEntryJSON `json:"entries"`
}

type shownEntryJSON struct {
	File   string `json:"file"`
	Commit string `json:"commit"` // "" when unknown
	Date   string `json:"date"`   // YYYY-MM-DD
	Author string `json:"author"`
	Reason string `json:"reason"`
	Group  string `json:"group,omitempty"`
	Ticket string `json:"ticket,omitempty"`
}

func showJSON(sh *resolver.Shown) shownJSON {
	j := shownJSON{Kind: sh.Kind, Key: sh.Key, Serial: sh.Serial, Entries: []shownEntryJSON{}}
	for _, en := range sh.Entries {
		j.Entries = append(j.Entries, shownEntryJSON{File: en.File, Commit: en.Commit, Date: en.Date.Format("2006-01-02"),
			Author: en.Author, Reason: en.Reason, Group: en.Group, Ticket: en.Ticket})
	}
	return j
}
