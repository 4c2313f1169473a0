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
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
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
	// exe is the absolute path of the running poison binary as the user
	// invoked it ("" when unknown): what hooks install writes into hooks.
	exe string
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
		exe:    executable(dir),
	}
}

// executable is the path the user ran poison by, made absolute but not
// resolved (a Nix profile's bin/poison stays valid across upgrades, the
// store path it points to does not); else the resolved binary.
func executable(dir string) string {
	arg0 := os.Args[0]
	if strings.ContainsRune(arg0, '/') {
		if !filepath.IsAbs(arg0) {
			arg0 = filepath.Join(dir, arg0)
		}
		return arg0
	}
	if p, err := exec.LookPath(arg0); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	p, _ := os.Executable()
	return p
}

// runFunc runs a command with its positional arguments (flags parsed).
type runFunc func(ctx context.Context, e *env, args []string) error

// command is one subcommand. setup defines its flags on fs and returns the
// function that runs it; the CLI parses the flags (anywhere among the
// arguments, as Nix's tools accept them), prints --help, and turns flag
// errors into usage errors with a did-you-mean. help, completion and the
// man page read the same flag sets.
type command struct {
	name    string
	summary string
	usage   string // after "poison NAME "
	setup   func(fs *flag.FlagSet) runFunc
	// words are the fixed words the first argument may be (a format, a
	// subcommand), for completion.
	words []string
	// flagError, when set, handles a flag error instead of the usage
	// error (journal-hook must never fail a build).
	flagError func(e *env, err error) error
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
		copyCommand(),
		impactCommand(),
		checkCommand(),
		hooksCommand(),
		provenanceCommand(),
		quarantineCommand(),
		journalHookCommand(),
		versionCommand(),
		completionCommand(),
		manCommand(),
	}
}

// flagSet returns c's flags, defined, without parsing anything.
func (c *command) flagSet() (*flag.FlagSet, runFunc) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs, c.setup(fs)
}

// run is the whole CLI: it returns the process exit code.
func run(args []string, e *env) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() {
		// After the first Ctrl-C, a second one kills at once.
		<-ctx.Done()
		stop()
	}()
	if len(args) == 0 {
		printHelp(e.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "--help", "-help":
		if len(args) > 1 {
			c, err := findCommand(args[1])
			if err != nil {
				return report(e, err)
			}
			return report(e, c.exec(ctx, e, []string{"--help"}))
		}
		printHelp(e.stdout)
		return exitOK
	case "--version", "-version", "-V":
		name = "version"
	}
	c, err := findCommand(name)
	if err != nil {
		return report(e, err)
	}
	err = c.exec(ctx, e, args[1:])
	if err != nil && ctx.Err() != nil {
		// Ctrl-C: the command stopped (builds end when their daemon
		// connections close); say so as Nix does.
		err = &exitErr{code: exitInterrupted, err: errors.New("interrupted by the user")}
	}
	return report(e, err)
}

// findCommand returns the command called name, or a usage error with the
// nearest names.
func findCommand(name string) (*command, error) {
	var names []string
	for _, c := range commands() {
		if c.name == name {
			return &c, nil
		}
		names = append(names, c.name)
	}
	hint := "run 'poison help' for the list of commands"
	if s := suggest(name, append(names, "help")); len(s) > 0 {
		hint = "did you mean 'poison " + strings.Join(s, "' or 'poison ") + "'? (" + hint + ")"
	}
	return nil, &exitErr{code: exitUsage, err: fmt.Errorf("unknown command %q", name), hint: hint}
}

// exec parses args with c's flags and runs c.
func (c *command) exec(ctx context.Context, e *env, args []string) error {
	fs, runc := c.flagSet()
	pos, err := parseArgs(e, c, fs, args)
	if err != nil && c.flagError != nil && !errors.Is(err, errHelp) {
		return c.flagError(e, err)
	}
	if err != nil {
		return err
	}
	return runc(ctx, e, pos)
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, "poison: invalidate bad Nix build results through a reviewed registry\n\nUsage: poison COMMAND [FLAGS] [ARGS]\n\nCommands:\n")
	width := len("help")
	for _, c := range commands() {
		width = max(width, len(c.name))
	}
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-*s %s\n", width, c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-*s %s\n", width, "help", "show this text, or 'poison help COMMAND'")
	fmt.Fprint(w, "\n"+
		"Flags may come before or after the arguments; '--' ends them.\n"+
		"Run 'poison help COMMAND' or 'poison COMMAND --help' for a command's flags.\n"+
		"poison --version prints the version.\n")
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
	var h interface{ Hint() string }
	if errors.As(err, &h) {
		hint = h.Hint()
	}
	var x *exitErr
	if errors.As(err, &x) {
		code = x.code
		if x.hint != "" {
			hint = x.hint
		}
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

// parseArgs parses the flags of c anywhere among args, as Nix's tools do,
// and returns the other arguments in order. "--" ends the flags. --help
// prints the command's usage on stdout and returns errHelp; a flag error
// is a usage error whose hint names the nearest flags.
func parseArgs(e *env, c *command, fs *flag.FlagSet, args []string) ([]string, error) {
	args, err := joinTwoValues(c, fs, args)
	if err != nil {
		return nil, err
	}
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			printUsage(e.stdout, c, fs)
			return nil, errHelp
		}
		if err != nil {
			return nil, flagError(c, fs, err)
		}
		rest := fs.Args()
		// fs.Parse stops at the first argument or after "--".
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// twoValued is implemented by flag values that take two arguments
// (--arg NAME EXPR): joinTwoValues hands them "NAME\x00EXPR".
type twoValued interface{ TwoValues() bool }

// joinTwoValues rewrites "--arg NAME EXPR" into one argument for the flag
// package, up to "--".
func joinTwoValues(c *command, fs *flag.FlagSet, args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...), nil
		}
		name := strings.TrimLeft(a, "-")
		if len(a)-len(name) > 0 && len(a)-len(name) <= 2 && !strings.Contains(name, "=") {
			if f := fs.Lookup(name); f != nil {
				if tv, ok := f.Value.(twoValued); ok && tv.TwoValues() {
					if i+2 >= len(args) {
						return nil, &exitErr{code: exitUsage, err: fmt.Errorf("%s: flag %s needs two arguments", c.name, dashes(name)),
							hint: fmt.Sprintf("run 'poison %s --help' for its flags", c.name)}
					}
					out = append(out, "--"+name+"="+args[i+1]+"\x00"+args[i+2])
					i += 2
					continue
				}
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// flagError turns a flag package error into a usage error.
func flagError(c *command, fs *flag.FlagSet, err error) error {
	hint := fmt.Sprintf("run 'poison %s --help' for its flags", c.name)
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		msg = fmt.Sprintf("%s: unknown flag %s", c.name, dashes(name))
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		if s := suggest(name, names); len(s) > 0 {
			for i := range s {
				s[i] = dashes(s[i])
			}
			hint = "did you mean " + strings.Join(s, " or ") + "? (" + hint + ")"
		}
		return &exitErr{code: exitUsage, err: errors.New(msg), hint: hint}
	}
	// "invalid value "x" for flag -j: ..." and "flag needs an argument: -o"
	msg = flagNameRe().ReplaceAllStringFunc(msg, func(m string) string {
		i := strings.IndexByte(m, '-')
		return m[:i] + dashes(strings.TrimRight(m[i+1:], ":")) + m[len(strings.TrimRight(m, ":")):]
	})
	return &exitErr{code: exitUsage, err: fmt.Errorf("%s: %s", c.name, msg), hint: hint}
}

var flagNameRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(for flag|argument:) -[^ :]+:?`) })

// dashes writes a flag name as users type it: -j, --lock.
func dashes(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// suggest returns the candidates nearest to s (edit distance at most 2,
// or a prefix of at least 3 characters), best first.
func suggest(s string, candidates []string) []string {
	type scored struct {
		name string
		d    int
	}
	var out []scored
	for _, c := range candidates {
		d := editDistance(s, c)
		if len(s) >= 3 && strings.HasPrefix(c, s) {
			d = min(d, 1)
		}
		if d <= 2 && d < len(c) {
			out = append(out, scored{c, d})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].d < out[j].d })
	var names []string
	for _, o := range out {
		if !slices.Contains(names, o.name) {
			names = append(names, o.name)
		}
		if len(names) == 3 {
			break
		}
	}
	return names
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// flagDoc is one flag of a command with its aliases (-j, --max-jobs),
// for help, completion and the man page.
type flagDoc struct {
	names []string // as typed: "-j", "--max-jobs"
	arg   string   // placeholder of its value, "" for a boolean
	usage string
}

// placeholder is implemented by flag values that name their argument.
type placeholder interface{ Placeholder() string }

// flagDocs lists the flags of fs, aliases (flags sharing one value)
// together, in the order of their first name.
func flagDocs(fs *flag.FlagSet) []flagDoc {
	var docs []flagDoc
	index := map[any]int{}
	fs.VisitAll(func(f *flag.Flag) {
		var key any = f
		if reflect.TypeOf(f.Value).Comparable() {
			key = f.Value // aliases share their value
		}
		if i, ok := index[key]; ok {
			docs[i].names = append(docs[i].names, dashes(f.Name))
			return
		}
		arg, usage := flag.UnquoteUsage(f)
		if p, ok := f.Value.(placeholder); ok {
			arg = p.Placeholder()
		} else if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			arg = ""
		} else if arg != "" && arg == strings.ToLower(arg) {
			arg = strings.ToUpper(arg)
		}
		if arg == "VALUE" || arg == "STRING" {
			arg = "ARG"
		}
		if def := f.DefValue; def != "" && def != "false" && def != "0" && def != "[]" && !strings.Contains(usage, "default") {
			usage += fmt.Sprintf(" (default %s)", def)
		}
		index[key] = len(docs)
		docs = append(docs, flagDoc{names: []string{dashes(f.Name)}, arg: arg, usage: usage})
	})
	for i := range docs {
		// Short names first: -j, --max-jobs.
		sort.SliceStable(docs[i].names, func(a, b int) bool { return len(docs[i].names[a]) < len(docs[i].names[b]) })
	}
	sort.SliceStable(docs, func(a, b int) bool {
		return strings.TrimLeft(docs[a].names[len(docs[a].names)-1], "-") < strings.TrimLeft(docs[b].names[len(docs[b].names)-1], "-")
	})
	return docs
}

// printUsage prints c's help: usage line, summary and every flag.
func printUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "Usage: poison %s %s\n\n%s\n", c.name, c.usage, c.summary)
	docs := flagDocs(fs)
	if len(docs) > 0 {
		fmt.Fprint(bw, "\nFlags (before or after the arguments):\n")
	}
	for _, d := range docs {
		head := strings.Join(d.names, ", ")
		if d.arg != "" {
			head += " " + d.arg
		}
		fmt.Fprintf(bw, "  %s\n      %s\n", head, d.usage)
	}
	bw.Flush()
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// version is the module version of this binary, "(devel)" when built
// from a work tree.
func version() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return v
}

func versionCommand() command {
	return command{name: "version", summary: "print the version of poison (also: poison --version)", usage: "",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) > 0 {
					return usageErrorf("version takes no arguments, got %q", args[0])
				}
				fmt.Fprintf(e.stdout, "poison %s\n", version())
				return nil
			}
		}}
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
