// Command poison-journal-hook is poison's Nix post-build-hook as a small
// binary of its own: it appends one line per build to the build journal
// (see docs/provenance.md), exactly as 'poison journal-hook' does, but
// starts several times faster because it links only the journal code
// and the .drv reader. Nix runs the hook synchronously after every build.
//
// Point nix.conf at it directly when the defaults suit:
//
//	post-build-hook = /usr/local/bin/poison-journal-hook
//
// (journal $POISON_JOURNAL, else /var/log/poison/journal.jsonl; host
// $POISON_HOST, else the hostname), or at the script 'poison hooks install
// --post-build FILE' writes, which passes --journal and --host.
//
// It always exits 0: Nix halts its build loop when a hook fails, and a
// journal problem must never fail a build. Problems are warnings on
// stderr, which Nix shows in the build's log.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/poison-nix/poison/builder/drvread"
	"github.com/poison-nix/poison/provenance"
)

// defaultJournal matches poison's journal setting default.
const defaultJournal = "/var/log/poison/journal.jsonl"

func main() {
	run(os.Args[1:], os.Stderr, os.Getenv)
	os.Exit(0)
}

func run(args []string, stderr io.Writer, getenv func(string) string) {
	warn := func(format string, a ...any) {
		fmt.Fprintf(stderr, "poison-journal-hook: warning: "+format+"\n", a...)
	}
	defer func() {
		if r := recover(); r != nil {
			warn("internal error: %v (the build is not affected; it is not journalled)", r)
		}
	}()
	fs := flag.NewFlagSet("poison-journal-hook", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	journal := fs.String("journal", "", "")
	host := fs.String("host", "", "")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		warn("usage: poison-journal-hook [--journal FILE] [--host NAME] (%v); the build is not affected; it is not journalled", err)
		return
	}
	if *journal == "" {
		*journal = getenv("POISON_JOURNAL")
	}
	if *journal == "" {
		*journal = defaultJournal
	}
	if *host == "" {
		*host = getenv("POISON_HOST")
	}
	warnings, err := provenance.RunHook(context.Background(), *journal, provenance.HookOptions{
		Getenv:  getenv,
		Now:     time.Now,
		Host:    *host,
		ReadDrv: drvread.Outputs,
	})
	for _, w := range warnings {
		warn("%s", w)
	}
	if err != nil {
		warn("%v (the build is not affected; it is not journalled)", err)
	}
}
