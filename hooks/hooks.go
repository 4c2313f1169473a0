// Package hooks holds poison's git hooks for registry repositories and
// installs them (docs/architecture.md).
//
// Two hooks exist, both POSIX shell scripts that call the poison binary:
//
//   - pre-commit, for a registry's work trees: lints exactly what is staged
//     and refuses a commit that deletes or modifies an entry HEAD has.
//   - pre-receive, for the bare repository a team pushes to: lints every
//     pushed branch and refuses history on the protected branch that
//     deleted, renamed or modified an entry, forced pushes included.
//
// The scripts are the files pre-commit and pre-receive next to this one,
// embedded into the binary, so a `go install`ed poison can install them.
// [Install] writes the one a repository needs into its hooks directory.
//
// A hook finds poison as $POISON, else as `poison` in $PATH. Where git runs
// with another $PATH (a GUI client, a server's hook environment),
// [Options.Poison] writes an absolute path into the hook as the default in
// place of `poison`; $POISON still overrides it.
package hooks

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The hooks poison provides, by their git names.
const (
	PreCommit  = "pre-commit"
	PreReceive = "pre-receive"
)

var (
	//go:embed pre-commit
	preCommit []byte
	//go:embed pre-receive
	preReceive []byte
)

// poisonLine is the line of each script that picks the poison binary;
// [Options.Poison] replaces its default.
const poisonLine = "poison=${POISON:-poison}\n"

// Script returns the content of hook name (PreCommit or PreReceive) as
// Install writes it with opts.Poison = poison ("" for poison from $PATH).
func Script(name, poison string) ([]byte, error) {
	var s []byte
	switch name {
	case PreCommit:
		s = preCommit
	case PreReceive:
		s = preReceive
	default:
		return nil, fmt.Errorf("hook %q: poison has only %s and %s", name, PreCommit, PreReceive)
	}
	if poison == "" {
		return bytes.Clone(s), nil
	}
	if !filepath.IsAbs(poison) {
		return nil, fmt.Errorf("poison binary %q: want an absolute path", poison)
	}
	if strings.ContainsAny(poison, "'\n") {
		return nil, fmt.Errorf("poison binary %q: a path with a quote or a newline cannot be written into a shell script", poison)
	}
	if bytes.Count(s, []byte(poisonLine)) != 1 {
		return nil, fmt.Errorf("hook %s: no single line %q to set the poison binary in", name, strings.TrimSpace(poisonLine))
	}
	line := "poison=${POISON:-'" + poison + "'}\n"
	return bytes.Replace(s, []byte(poisonLine), []byte(line), 1), nil
}

// Options configure Install.
type Options struct {
	// Force replaces an existing hook that differs from poison's. Without
	// it Install returns a *ConflictError and writes nothing.
	Force bool
	// Poison, if set, is the absolute path of the poison binary the hook
	// runs unless $POISON is set. Empty: poison from the hook's $PATH.
	Poison string
}

// Result says what Install did with one hook.
type Result struct {
	Name   string // PreCommit or PreReceive
	Path   string // absolute path of the hook file
	Action Action
}

// Action is what Install did with a hook file.
type Action int

const (
	Installed Action = iota // written: no hook was there, or poison's without execute permission
	Unchanged               // the same hook was already there: nothing written
	Replaced                // a different hook was there: replaced (Options.Force)
	Updated                 // poison's hook with another poison binary was there: rewritten
)

func (a Action) String() string {
	switch a {
	case Installed:
		return "installed"
	case Unchanged:
		return "unchanged"
	case Replaced:
		return "replaced"
	case Updated:
		return "updated"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// ErrNotRepository: the directory given to Install is not in a git
// repository.
var ErrNotRepository = errors.New("not a git repository")

// ErrNotRegistry: a work tree without registry.toml at its top, where a
// pre-commit hook running poison lint would refuse every commit.
var ErrNotRegistry = errors.New("not a poison registry (no registry.toml at the top of its work tree)")

// ConflictError reports a hook file that exists and differs from the one
// Install would write; Options.Force replaces it.
type ConflictError struct {
	Name string // PreCommit or PreReceive
	Path string // the existing hook file
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s: a different %s hook is already installed", e.Path, e.Name)
}

// Install writes poison's hooks into the git repository that holds dir:
// pre-commit into a repository with a work tree, pre-receive into a bare
// one. The hooks directory is the one git runs hooks from (`git rev-parse
// --git-path hooks`): .git/hooks, the common directory's hooks for a linked
// worktree, or core.hooksPath where that is set; it is created if missing.
//
// Each hook is written with mode 0755 through a temporary file renamed into
// place, so git never runs a half-written hook. An identical executable hook
// is left alone (Install is idempotent); a different one is an error
// (*ConflictError) unless opts.Force. A work tree must be a registry: it
// needs registry.toml at its top (ErrNotRegistry otherwise).
//
// Install needs git in $PATH. It ignores GIT_DIR and the other variables
// that point git elsewhere: dir alone names the repository.
func Install(ctx context.Context, dir string, opts Options) ([]Result, error) {
	loc, err := locate(ctx, dir)
	if err != nil {
		return nil, err
	}
	name := PreCommit
	if loc.bare {
		name = PreReceive
	} else if _, err := os.Stat(filepath.Join(loc.top, "registry.toml")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", loc.top, ErrNotRegistry)
		}
		return nil, err
	}
	script, err := Script(name, opts.Poison)
	if err != nil {
		return nil, err
	}
	if opts.Poison != "" {
		fi, err := os.Stat(opts.Poison)
		if err != nil {
			return nil, fmt.Errorf("poison binary: %w", err)
		}
		if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("poison binary %s: not an executable file", opts.Poison)
		}
	}
	r, err := write(loc.hooks, name, script, opts.Force)
	if err != nil {
		return nil, err
	}
	return []Result{r}, nil
}

type location struct {
	bare  bool
	hooks string // absolute
	top   string // the work tree's top; "" when bare
}

// gitLocationVars point git at another repository than the one around its
// working directory (see git rev-parse --local-env-vars).
var gitLocationVars = []string{
	"GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_INDEX_FILE",
	"GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
	"GIT_NAMESPACE", "GIT_PREFIX", "GIT_QUARANTINE_PATH",
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		keep := true
		for _, v := range gitLocationVars {
			if strings.HasPrefix(kv, v+"=") {
				keep = false
			}
		}
		if keep {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "LC_ALL=C") // messages Install recognises
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return "", fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimPrefix(msg, "fatal: "))
		}
		return "", fmt.Errorf("git %s: %w", args[0], err)
	}
	return string(out), nil
}

func locate(ctx context.Context, dir string) (location, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return location{}, err
	}
	if fi, err := os.Stat(dir); err != nil {
		return location{}, err
	} else if !fi.IsDir() {
		return location{}, fmt.Errorf("%s: not a directory", dir)
	}
	out, err := git(ctx, dir, "rev-parse", "--is-bare-repository", "--git-path", "hooks")
	if err != nil {
		if strings.Contains(err.Error(), "not a git repository") {
			return location{}, fmt.Errorf("%s: %w", dir, ErrNotRepository)
		}
		return location{}, err
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 2 || (lines[0] != "true" && lines[0] != "false") || lines[1] == "" {
		return location{}, fmt.Errorf("git rev-parse in %s: unexpected output %q", dir, out)
	}
	loc := location{bare: lines[0] == "true", hooks: lines[1]}
	if !filepath.IsAbs(loc.hooks) { // relative to dir, as git prints it
		loc.hooks = filepath.Join(dir, loc.hooks)
	}
	if !loc.bare {
		top, err := git(ctx, dir, "rev-parse", "--show-toplevel")
		if err != nil {
			return location{}, fmt.Errorf("%s: %w", dir, err)
		}
		loc.top = strings.TrimRight(top, "\n")
	}
	return loc, nil
}

// poisonLineStart begins the line Script rewrites.
const poisonLineStart = "poison=${POISON:-"

// isPoisonHook reports whether old is poison's hook name with any poison
// binary line: the same script once that line is the default.
func isPoisonHook(name string, old []byte) bool {
	def, err := Script(name, "")
	if err != nil {
		return false
	}
	lines := bytes.SplitAfter(old, []byte("\n"))
	n := 0
	for i, l := range lines {
		if bytes.HasPrefix(l, []byte(poisonLineStart)) {
			lines[i] = []byte(poisonLine)
			n++
		}
	}
	return n == 1 && bytes.Equal(bytes.Join(lines, nil), def)
}

// write puts script at dir/name unless an identical executable file is
// there already.
func write(dir, name string, script []byte, force bool) (Result, error) {
	r := Result{Name: name, Path: filepath.Join(dir, name), Action: Installed}
	old, err := os.ReadFile(r.Path)
	switch {
	case err == nil:
		fi, serr := os.Stat(r.Path)
		if serr != nil {
			return r, serr
		}
		if bytes.Equal(old, script) {
			if fi.Mode()&0o111 == 0o111 {
				r.Action = Unchanged
				return r, nil
			}
			// The right script, but git would not run it: rewrite it
			// with its mode.
		} else if isPoisonHook(name, old) {
			// poison's hook naming another binary (or $PATH's): not a
			// foreign hook, so rewriting it needs no --force.
			r.Action = Updated
		} else if !force {
			return r, &ConflictError{Name: name, Path: r.Path}
		} else {
			r.Action = Replaced
		}
	case errors.Is(err, fs.ErrNotExist):
		// A dangling symbolic link is replaced like a missing file: git
		// could not run it either.
	default:
		return r, fmt.Errorf("read existing hook: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, fmt.Errorf("write %s hook: %w", name, err)
	}
	f, err := os.CreateTemp(dir, "."+name+".poison-*")
	if err != nil {
		return r, fmt.Errorf("write %s hook: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename, a no-op
	_, err = f.Write(script)
	if err == nil {
		err = f.Chmod(0o755)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, r.Path)
	}
	if err != nil {
		return r, fmt.Errorf("write %s hook: %w", name, err)
	}
	return r, nil
}
