package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"time"
)

// Exit codes (DESIGN §9). Build failures pass Nix's mask (100..) through.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// env is everything a command may touch of the outside world. Tests build
// their own; nothing reads os.* directly below run.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	now    func() time.Time
	dir    string // working directory
}

func newEnv() *env {
	dir, _ := os.Getwd()
	return &env{
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
		now:    time.Now,
		dir:    dir,
	}
}

// command is one subcommand. run receives the arguments after the command
// name and returns an error; exitErr and usageErr select the exit code.
type command struct {
	name    string
	summary string
	usage   string // after "poison NAME "
	run     func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		initCommand(),
		addCommand(),
		lintCommand(),
		resolveCommand(),
		exportCommand(),
		showCommand(),
		rewriteCommand(),
		buildCommand(),
		impactCommand(),
		checkCommand(),
		hooksCommand(),
		journalHookCommand(),
		versionCommand(),
	}
}

// run is the whole CLI: it returns the process exit code.
func run(args []string, e *env) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if len(args) == 0 {
		printHelp(e.stderr)
		return exitUsage
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" || name == "-help" {
		if len(args) > 1 {
			for _, c := range commands() {
				if c.name == args[1] {
					return report(e, c.run(ctx, e, []string{"--help"}))
				}
			}
		}
		printHelp(e.stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == name {
			return report(e, c.run(ctx, e, args[1:]))
		}
	}
	fmt.Fprintf(e.stderr, "poison: error: unknown command %q\npoison: hint: run 'poison help' for the list of commands\n", name)
	return exitUsage
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, "poison: invalidate bad Nix build results through a reviewed registry\n\nUsage: poison COMMAND [FLAGS] [ARGS]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "  help      show this text, or 'poison help COMMAND'\n\nRun 'poison COMMAND --help' for a command's flags.\n")
}

// exitErr carries an explicit exit code and an optional hint.
type exitErr struct {
	code int
	err  error  // may be nil: the problems were already printed
	hint string // printed as "poison: hint: ..."
}

func (e *exitErr) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitErr) Unwrap() error { return e.err }

// usageErrorf reports a usage error (exit 2).
func usageErrorf(format string, a ...any) error {
	return &exitErr{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// withHint attaches a hint line to err.
func withHint(err error, hint string) error {
	var x *exitErr
	if errors.As(err, &x) {
		return &exitErr{code: x.code, err: x.err, hint: hint}
	}
	return &exitErr{code: exitError, err: err, hint: hint}
}

// silentExit returns an exit code whose problems were already printed.
func silentExit(code int) error { return &exitErr{code: code} }

var errHelp = flag.ErrHelp

// report prints err as "poison: error: ..." lines and maps it to an exit code.
func report(e *env, err error) int {
	if err == nil || errors.Is(err, errHelp) {
		return exitOK
	}
	code, hint := exitError, ""
	var x *exitErr
	if errors.As(err, &x) {
		code, hint = x.code, x.hint
		if x.err == nil {
			return code
		}
		err = x.err
	}
	for _, line := range strings.Split(strings.TrimRight(err.Error(), "\n"), "\n") {
		fmt.Fprintf(e.stderr, "poison: error: %s\n", line)
	}
	if hint != "" {
		fmt.Fprintf(e.stderr, "poison: hint: %s\n", hint)
	}
	return code
}

// newFlags returns a flag set that prints its usage to e.stderr (or stdout
// for --help) in the house format and never exits the process.
func newFlags(e *env, c *command) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args and turns flag errors into usage errors; --help
// prints the command's usage on stdout and returns errHelp.
func parseFlags(e *env, c *command, fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(e.stdout, "Usage: poison %s %s\n\n%s\n\nFlags:\n", c.name, c.usage, c.summary)
		fs.SetOutput(e.stdout)
		fs.PrintDefaults()
		return errHelp
	}
	if err != nil {
		return &exitErr{code: exitUsage, err: err, hint: fmt.Sprintf("run 'poison %s --help' for usage", c.name)}
	}
	return nil
}

// parseInterleaved is parseFlags for commands that, like Nix's tools,
// accept flags after their arguments; it returns the arguments in order.
func parseInterleaved(e *env, c *command, fs *flag.FlagSet, args []string) ([]string, error) {
	var out []string
	for {
		if err := parseFlags(e, c, fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return out, nil
		}
		out = append(out, rest[0])
		args = rest[1:]
	}
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func versionCommand() command {
	c := command{name: "version", summary: "print the version of poison", usage: ""}
	c.run = func(ctx context.Context, e *env, args []string) error {
		fs := newFlags(e, &c)
		if err := parseFlags(e, &c, fs, args); err != nil {
			return err
		}
		v := "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			v = bi.Main.Version
		}
		fmt.Fprintf(e.stdout, "poison %s\n", v)
		return nil
	}
	return c
}

// writeReport prints a command's report on w: v as one indented JSON
// document when asJSON, else text writes it.
func writeReport(w io.Writer, asJSON bool, v any, text func(io.Writer)) error {
	bw := bufio.NewWriter(w)
	if asJSON {
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return err
		}
	} else {
		text(bw)
	}
	return bw.Flush()
}
