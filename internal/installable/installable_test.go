package installable_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/installable"
	"github.com/poison-nix/poison/internal/nixtest"
)

const defaultNix = `{ tag ? "x", extra ? "" }: derivation {
  name = "d-${tag}${extra}";
  nonce = "@NONCE@";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo ${tag} > $out" ];
}
`

const otherNix = `{ a = import ./default.nix { tag = "a"; }; b = import ./default.nix { tag = "b"; }; }
`

const libNix = `{ tag = "lib"; }
`

const searchNix = `import ./default.nix (import <mylib/lib.nix>)
`

const flakeNix = `{
  outputs = { self }: let
    mk = name: derivation { inherit name; nonce = "@NONCE@"; system = "@SYSTEM@"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; };
  in {
    packages.@SYSTEM@.default = mk "fl-default";
    packages.@SYSTEM@.other = mk "fl-other";
  };
}
`

// TestResolve resolves every kind of installable against the real Nix:
// the names of the derivations each resolves to show that the right
// file, attribute, argument or flake output was evaluated.
func TestResolve(t *testing.T) {
	nixtest.Need(t)
	for _, kv := range nixtest.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	nonce := time.Now().Format("150405.000000000")
	system := nixtest.Output(t, "nix-instantiate", "--eval", "--json", "-E", "builtins.currentSystem")
	system = strings.Trim(system, `"`)
	write := func(rel, text string) {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		text = strings.ReplaceAll(strings.ReplaceAll(text, "@NONCE@", nonce), "@SYSTEM@", system)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("default.nix", defaultNix)
	write("other.nix", otherNix)
	write("lib/lib.nix", libNix)
	write("search.nix", searchNix)
	write("fl/flake.nix", flakeNix)
	write("fl/default.nix", defaultNix)

	ctx := context.Background()
	conn, err := daemon.Dial(ctx, "auto", daemon.Options{SocketPath: os.Getenv("NIX_DAEMON_SOCKET_PATH")})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	drvX := nixtest.Output(t, "nix-instantiate", filepath.Join(dir, "default.nix"))
	out := nixtest.Output(t, "nix-store", "--realise", drvX)
	if err := os.Symlink(out, filepath.Join(dir, "result")); err != nil {
		t.Fatal(err)
	}
	os.Symlink("/etc/passwd", filepath.Join(dir, "not-store"))

	base := installable.Options{Dir: dir, StoreDir: "/nix/store"}
	with := func(f func(o *installable.Options)) installable.Options {
		o := base
		f(&o)
		return o
	}
	for _, c := range []struct {
		name  string
		o     installable.Options
		args  []string
		names []string // derivation names, in order
		outs  string   // outputs of the first root, comma-separated
		err   string
		hint  string
	}{
		{name: "no argument: ./default.nix", o: base, names: []string{"d-x"}},
		{name: "--argstr", o: with(func(o *installable.Options) { o.Args = []installable.Arg{{Name: "tag", Value: "y", String: true}} }), names: []string{"d-y"}},
		{name: "--arg", o: with(func(o *installable.Options) {
			o.Args = []installable.Arg{{Name: "tag", Value: `"z"`}, {Name: "extra", Value: `"-e"`, String: false}}
		}), args: []string{"default.nix"}, names: []string{"d-z-e"}},
		{name: "-A on a file", o: with(func(o *installable.Options) { o.Attrs = []string{"b", "a"} }), args: []string{"other.nix"}, names: []string{"d-b", "d-a"}},
		{name: "-I", o: with(func(o *installable.Options) { o.Include = []string{"mylib=" + filepath.Join(dir, "lib")} }), args: []string{"./search.nix"}, names: []string{"d-lib"}},
		{name: "--file with attribute paths", o: with(func(o *installable.Options) { o.File = filepath.Join(dir, "other.nix") }), args: []string{"a"}, names: []string{"d-a"}},
		{name: "--expr with attribute paths", o: with(func(o *installable.Options) { o.Expr = `{ e = import ./default.nix { tag = "e"; }; }` }), args: []string{"e"}, names: []string{"d-e"}},
		{name: ".drv path", o: base, args: []string{drvX}, names: []string{"d-x"}},
		{name: ".drv path with outputs", o: base, args: []string{drvX + "^out"}, names: []string{"d-x"}, outs: "out"},
		{name: "result symlink", o: base, args: []string{"./result"}, names: []string{"d-x"}},
		{name: "output path", o: base, args: []string{out}, names: []string{"d-x"}},
		{name: "flake directory", o: base, args: []string{"./fl"}, names: []string{"fl-default"}},
		{name: "flake attribute", o: base, args: []string{"./fl#other"}, names: []string{"fl-other"}},
		{name: "flake directory with -A is its default.nix", o: with(func(o *installable.Options) { o.Attrs = []string{""} }), args: []string{"./fl"}, names: []string{"d-x"}},
		{name: "a typo", o: base, args: []string{"defualt.nix"}, err: "build: installable defualt.nix does not evaluate: ", hint: "check it with: nix-instantiate defualt.nix"},
		{name: "an output path the store does not have", o: base, args: []string{"/nix/store/00000000000000000000000000000000-nothing"},
			err: "is not valid in the store", hint: "build or substitute it first"},
		{name: "a bad store path", o: base, args: []string{"/nix/store/eeee-x.drv"}, err: "32-character hash", hint: "nix-instantiate prints"},
		{name: "a link outside the store", o: base, args: []string{"./not-store"}, err: "does not evaluate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			roots, err := installable.Resolve(ctx, conn, c.o, c.args)
			if c.err != "" {
				var ie *installable.Error
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				if c.hint != "" && (!errors.As(err, &ie) || !strings.Contains(ie.Hint(), c.hint)) {
					t.Errorf("hint of %v: want %q", err, c.hint)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range roots {
				b := filepath.Base(r.DrvPath)
				names = append(names, strings.TrimSuffix(b[33:], ".drv"))
			}
			if strings.Join(names, " ") != strings.Join(c.names, " ") {
				t.Errorf("derivations %v, want %v", names, c.names)
			}
			if c.outs != "" && strings.Join(roots[0].Outputs, ",") != c.outs {
				t.Errorf("outputs %v, want %s", roots[0].Outputs, c.outs)
			}
		})
	}
}
