package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/poison-nix/poison/builder/drvread"
	"github.com/poison-nix/poison/internal/settings"
	"github.com/poison-nix/poison/provenance"
)

// defaultJournal is where the post-build-hook appends when no journal is
// configured.
const defaultJournal = settings.DefaultJournal

type journalHookOptions struct {
	journal string
	host    string
}

// journalHookCommand is Nix's post-build-hook (through the script that
// 'poison hooks install --post-build' writes). Nix runs it synchronously
// after every build and halts its build loop when a hook fails, so it
// always exits 0: a journal problem is a warning on stderr (Nix shows it
// in the build's log), never a failed build.
func journalHookCommand() command {
	warn := func(e *env, err error) error {
		fmt.Fprintf(e.stderr, "poison journal-hook: warning: %v (the build is not affected; it is not journalled)\n", err)
		return nil
	}
	return command{
		name:    "journal-hook",
		summary: "Nix post-build-hook: append the build Nix just finished to the build journal",
		usage:   "[--journal FILE] [--host NAME]",
		// A bad flag must not fail the build either.
		flagError: warn,
		setup: func(fs *flag.FlagSet) runFunc {
			var o journalHookOptions
			fs.StringVar(&o.journal, "journal", "", "the journal `FILE` (default: $POISON_JOURNAL, else "+defaultJournal+")")
			fs.StringVar(&o.host, "host", "", "record this host `NAME` instead of the hostname (default: $POISON_HOST)")
			return func(ctx context.Context, e *env, args []string) (err error) {
				defer func() {
					if r := recover(); r != nil {
						fmt.Fprintf(e.stderr, "poison journal-hook: warning: internal error: %v (the build is not affected; it is not journalled)\n", r)
						err = nil
					}
				}()
				if err := runJournalHook(ctx, e, o); err != nil {
					return warn(e, err)
				}
				return nil
			}
		},
	}
}

func runJournalHook(ctx context.Context, e *env, o journalHookOptions) error {
	if o.journal == "" {
		o.journal = e.getenv("POISON_JOURNAL")
	}
	if o.journal == "" {
		o.journal = defaultJournal
	}
	if o.host == "" {
		o.host = e.getenv("POISON_HOST")
	}
	warnings, err := provenance.RunHook(ctx, o.journal, provenance.HookOptions{
		Getenv:  e.getenv,
		Now:     e.now,
		Host:    o.host,
		ReadDrv: drvread.Outputs,
	})
	for _, w := range warnings {
		fmt.Fprintf(e.stderr, "poison journal-hook: warning: %s\n", w)
	}
	return err
}
