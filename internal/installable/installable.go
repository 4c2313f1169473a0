// Package installable turns what a user passes to `poison build` into the
// .drv paths to rewrite, as nix-build and nix build read their arguments:
//
//   - a .drv store path, with an optional !OUT or ^OUT selecting outputs;
//   - an output path, or a symlink into the store such as ./result: its
//     deriver, asked from the store;
//   - a flake reference (".#hello", "github:o/r#x", "path:DIR#x"), and a
//     directory holding a flake.nix (".") when no -A or --arg is given:
//     evaluated with `nix path-info --derivation`;
//   - a Nix file or a directory (its default.nix), with -A ATTR, --arg,
//     --argstr and -I: evaluated with nix-instantiate;
//   - with --file FILE or --expr EXPR, the arguments are attribute paths
//     of that file or expression, as in `nix build --file`;
//   - no argument at all: ./default.nix (nix-build), else the flake in the
//     working directory.
package installable

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/storepath"
)

// Store is what resolution asks the store: the deriver of an output path
// and whether that derivation is still there.
type Store interface {
	QueryPathInfo(ctx context.Context, path string) (*daemon.PathInfo, error)
	IsValidPath(ctx context.Context, path string) (bool, error)
}

// Arg is one --arg NAME EXPR or --argstr NAME VALUE.
type Arg struct {
	Name, Value string
	// String is true for --argstr.
	String bool
}

// Options say how Nix files, expressions and flakes are evaluated.
type Options struct {
	// Dir is the working directory relative arguments are resolved in.
	Dir string
	// StoreDir is the logical store directory.
	StoreDir string
	// Attrs are the -A attribute paths.
	Attrs []string
	// Args are --arg and --argstr, in order.
	Args []Arg
	// Include are the -I search path entries.
	Include []string
	// File is --file: the arguments are attribute paths of it.
	File string
	// Expr is --expr: the arguments are attribute paths of it.
	Expr string
	// Store is a store URI for nix-instantiate (chroot stores), "" for
	// the default.
	Store string
}

// Root is one derivation to build.
type Root struct {
	// Arg is the argument it came from ("-A top graph.nix" gives
	// "graph.nix", attribute "top").
	Arg string
	// Attr is the attribute path it was evaluated from, if any.
	Attr string
	// DrvPath is the .drv path.
	DrvPath string
	// Outputs are the outputs asked for; nil means all.
	Outputs []string
}

// Error is a resolution error with the hint to print after it.
type Error struct {
	Err  error
	hint string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Hint says what to do about the error.
func (e *Error) Hint() string { return e.hint }

func errorf(hint, format string, a ...any) error {
	return &Error{Err: fmt.Errorf(format, a...), hint: hint}
}

// Resolve returns the derivations that args name, in order.
func Resolve(ctx context.Context, st Store, o Options, args []string) ([]Root, error) {
	if o.File != "" || o.Expr != "" {
		if o.File != "" && o.Expr != "" {
			return nil, errorf("pass one of them", "--file and --expr exclude each other")
		}
		attrs := append(append([]string{}, o.Attrs...), args...)
		return instantiate(ctx, o, o.File, attrs)
	}
	if len(args) == 0 {
		switch {
		case exists(filepath.Join(o.Dir, "default.nix")) || len(o.Attrs) > 0 || len(o.Args) > 0:
			args = []string{"./default.nix"}
		case exists(filepath.Join(o.Dir, "flake.nix")):
			args = []string{"."}
		default:
			return nil, errorf("pass a .drv path, an output path, a Nix file (with -A ATTR) or a flake reference",
				"build: nothing to build: no default.nix or flake.nix in %s", o.Dir)
		}
	}
	var roots, files []Root
	if len(o.Attrs) > 0 && !slices.ContainsFunc(args, func(a string) bool { return isFile(o, a) }) {
		// -A without a Nix file: nix-build's ./default.nix.
		args = append(args, "./default.nix")
	}
	for _, arg := range args {
		p, outs := storePath(o, arg)
		switch {
		case strings.HasPrefix(p, o.StoreDir+"/") && strings.HasSuffix(p, ".drv"):
			if _, err := storepath.Base(o.StoreDir, p); err != nil {
				return nil, errorf("pass a .drv path as nix-instantiate prints it", "build: installable %s: %v", arg, err)
			}
			roots = append(roots, Root{Arg: arg, DrvPath: p, Outputs: outs})
		case strings.HasPrefix(p, o.StoreDir+"/"):
			r, err := deriver(ctx, st, o, arg, p)
			if err != nil {
				return nil, err
			}
			roots = append(roots, r)
		case isFlake(o, arg):
			rs, err := flake(ctx, o, arg)
			if err != nil {
				return nil, err
			}
			roots = append(roots, rs...)
		default:
			files = append(files, Root{Arg: arg})
		}
	}
	for _, f := range files {
		rs, err := instantiate(ctx, o, f.Arg, o.Attrs)
		if err != nil {
			return nil, err
		}
		roots = append(roots, rs...)
	}
	return roots, nil
}

// HasDefault reports whether dir has what Resolve builds without
// arguments: a default.nix or a flake.nix.
func HasDefault(dir string) bool {
	return exists(filepath.Join(dir, "default.nix")) || exists(filepath.Join(dir, "flake.nix"))
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// storePath accepts what Nix tools print (DRV!out, DRV^out,dev) and
// symlinks into the store (result links, GC roots), and returns the store
// path and the outputs asked for.
func storePath(o Options, arg string) (string, []string) {
	var outs []string
	for _, sep := range []string{"^", "!"} {
		if i := strings.LastIndex(arg, sep); i > 0 && strings.HasSuffix(arg[:i], ".drv") {
			if spec := arg[i+1:]; spec != "*" && spec != "" {
				outs = strings.Split(spec, ",")
			}
			arg = arg[:i]
		}
	}
	if strings.HasPrefix(arg, o.StoreDir+"/") {
		return arg, outs
	}
	p := arg
	if !filepath.IsAbs(p) {
		p = filepath.Join(o.Dir, p)
	}
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if r, err := filepath.EvalSymlinks(p); err == nil && strings.HasPrefix(r, o.StoreDir+"/") {
			return r, outs
		}
	}
	return arg, outs
}

// deriver finds the derivation that built output path p.
func deriver(ctx context.Context, st Store, o Options, arg, p string) (Root, error) {
	base, err := storepath.Root(o.StoreDir, p)
	if err != nil {
		return Root{}, errorf("pass a store path, a .drv path or a result link", "build: installable %s: %v", arg, err)
	}
	info, err := st.QueryPathInfo(ctx, base)
	if errors.Is(err, daemon.ErrNotValid) {
		return Root{}, errorf("build or substitute it first, or pass its .drv path", "build: installable %s: %s is not valid in the store", arg, base)
	}
	if err != nil {
		return Root{}, fmt.Errorf("build: installable %s: %w", arg, err)
	}
	if info.Deriver == "" {
		return Root{}, errorf("pass its .drv path instead", "build: installable %s: the store does not know which derivation built it", arg)
	}
	if ok, err := st.IsValidPath(ctx, info.Deriver); err != nil || !ok {
		return Root{}, errorf("instantiate it again (nix-instantiate) and pass the .drv path", "build: installable %s: its derivation %s is not in the store", arg, info.Deriver)
	}
	return Root{Arg: arg, DrvPath: info.Deriver}, nil
}

// isFile reports whether arg is evaluated with nix-instantiate.
func isFile(o Options, arg string) bool {
	p, _ := storePath(o, arg)
	return !strings.HasPrefix(p, o.StoreDir+"/") && !isFlake(o, arg)
}

// isFlake reports whether arg is a flake reference ("path:DIR#attr",
// "github:o/r#x", ".#x"), or a directory with a flake.nix while no -A,
// --arg or --argstr asks for its default.nix.
func isFlake(o Options, arg string) bool {
	if strings.Contains(arg, "#") {
		return true
	}
	if scheme, _, ok := strings.Cut(arg, ":"); ok && scheme != "" && !strings.ContainsAny(scheme, "/.") {
		return true
	}
	if len(o.Attrs) > 0 || len(o.Args) > 0 {
		return false
	}
	dir := arg
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(o.Dir, dir)
	}
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir() && exists(filepath.Join(dir, "flake.nix"))
}

// flake evaluates a flake output with the installed Nix (flakes are
// experimental in Nix 2.8) and returns its derivations.
func flake(ctx context.Context, o Options, ref string) ([]Root, error) {
	if len(o.Include) > 0 {
		return nil, errorf("drop -I, or build a Nix file", "build: -I does not apply to the flake %s", ref)
	}
	out, err := evaluate(ctx, o, ref, "nix", "--extra-experimental-features", "nix-command flakes", "path-info", "--derivation", ref)
	if err != nil {
		return nil, err
	}
	var roots []Root
	for _, l := range strings.Fields(string(out)) {
		if strings.HasSuffix(l, ".drv") {
			roots = append(roots, Root{Arg: ref, DrvPath: l})
		}
	}
	if len(roots) == 0 {
		return nil, errorf("check the flake output: nix eval "+ref, "build: installable %s evaluates to no derivation", ref)
	}
	return roots, nil
}

// instantiate runs nix-instantiate on a Nix file (or o.Expr when file is
// "") and returns the derivations it printed, one per attribute.
func instantiate(ctx context.Context, o Options, file string, attrs []string) ([]Root, error) {
	var args []string
	for _, i := range o.Include {
		args = append(args, "-I", i)
	}
	for _, a := range o.Args {
		if a.String {
			args = append(args, "--argstr", a.Name, a.Value)
		} else {
			args = append(args, "--arg", a.Name, a.Value)
		}
	}
	if o.Store != "" {
		args = append(args, "--store", o.Store)
	}
	what := file
	if file == "" {
		args = append(args, "-E", o.Expr)
		what = "--expr"
	} else {
		args = append(args, file)
	}
	for _, a := range attrs {
		args = append(args, "-A", a)
	}
	out, err := evaluate(ctx, o, what, "nix-instantiate", args...)
	if err != nil {
		return nil, err
	}
	var roots []Root
	lines := strings.Fields(string(out))
	for i, l := range lines {
		p, outs := storePath(o, l)
		r := Root{Arg: what, DrvPath: p, Outputs: outs}
		if len(lines) == len(attrs) {
			r.Attr = attrs[i]
		}
		roots = append(roots, r)
	}
	if len(roots) == 0 {
		return nil, errorf("check that it evaluates to a derivation or a list or set of them", "build: installable %s evaluates to no derivation", what)
	}
	return roots, nil
}

// evaluate runs a Nix tool and returns its stdout; a failure becomes one
// line with Nix's own error and a hint with the command to retry.
func evaluate(ctx context.Context, o Options, installable, tool string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Dir = o.Dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		msg := lastErrorLine(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, errorf("check it with: "+tool+" "+strings.Join(args, " "), "build: installable %s does not evaluate: %s", installable, msg)
	}
	return out, nil
}

// lastErrorLine picks the most telling line of a Nix error output.
func lastErrorLine(s string) string {
	s = daemon.StripANSI(s)
	var last string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "error:") {
			last = strings.TrimSpace(strings.TrimPrefix(l, "error:"))
			if last != "" {
				return last
			}
			continue
		}
		if last == "" && l != "" && !strings.HasPrefix(l, "warning:") && !strings.HasPrefix(l, "…") && !strings.HasPrefix(l, "at ") {
			last = l
		}
	}
	return last
}
