package main

// The exit statuses of poison, in one table. docs/exit-codes.md and the
// man page are generated from exitCodes; a command that needs a new status
// adds a row here.
const (
	exitOK    = 0 // success
	exitError = 1 // an error, a lint finding, impact over --max
	exitUsage = 2 // a usage error: unknown command or flag, bad arguments

	// poison check sums these bits, as nix store verify does.
	checkStale        = 1 // an output of a poisoned derivation (or built against one) is present
	checkUndetermined = 2 // a path's provenance could not be determined
	checkFailed       = 4 // a query failed

	// exitInterrupted is the status after Ctrl-C (SIGINT): 1 with
	// "interrupted by the user", as nix-build 2.8 does.
	exitInterrupted = 1
)

// exitCode documents one exit status.
type exitCode struct {
	code     string // "1", "100-111"
	commands string // "all", "check"
	meaning  string
}

// exitCodes is the table the docs show.
var exitCodes = []exitCode{
	{"0", "all", "success"},
	{"1", "all", "an error (one 'poison: error:' line, then a 'poison: hint:'), a lint finding, impact above --max"},
	{"2", "all", "a usage error: unknown command or flag, missing or extra arguments, a bad flag value"},
	{"100-111", "build", "Nix's build failure mask, passed through: 0x60 ORed with 4 (a build failed), 1 (timed out), 2 (fixed-output hash mismatch), 8 (not deterministic)"},
	{"1, 2, 4 (summed)", "check", "1 stale outputs present, 2 a path of unknown origin, 4 a query failed (as nix store verify sums them)"},
	{"1", "all", "interrupted (Ctrl-C): builds are stopped, poison says \"interrupted by the user\" (as nix-build); a second Ctrl-C kills at once"},
}
