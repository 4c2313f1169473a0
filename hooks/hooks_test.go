package hooks_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/poison-nix/poison/hooks"
)

// git runs real git in dir, isolated from the user's and system's config.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CEILING_DIRECTORIES="+filepath.Dir(dir),
		"GIT_AUTHOR_NAME=T", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=T", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func needGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
}

// newRegistry returns a git work tree with registry.toml and one commit.
func newRegistry(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "reg")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(dir, "registry.toml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "add", "registry.toml")
	git(t, dir, "commit", "-q", "-m", "init")
	return dir
}

func script(t *testing.T, name, poison string) []byte {
	t.Helper()
	s, err := hooks.Script(name, poison)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// installOne runs Install and checks it reports exactly one hook.
func installOne(t *testing.T, dir string, opts hooks.Options) hooks.Result {
	t.Helper()
	rs, err := hooks.Install(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("Install(%s): %v", dir, err)
	}
	if len(rs) != 1 {
		t.Fatalf("Install(%s) = %+v, want one hook", dir, rs)
	}
	return rs[0]
}

// checkHook checks that path holds want with mode 0755 and that no
// temporary file was left next to it.
func checkHook(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the script:\n%s", path, got)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("%s has mode %v, want 0755", path, fi.Mode().Perm())
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*.poison-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// The embedded scripts are the files in this directory, byte for byte.
func TestScriptIsTheFile(t *testing.T) {
	for _, name := range []string{hooks.PreCommit, hooks.PreReceive} {
		file, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := script(t, name, ""); !bytes.Equal(got, file) {
			t.Errorf("Script(%s) differs from the file %s", name, name)
		}
	}
}

func TestScriptPoison(t *testing.T) {
	for _, name := range []string{hooks.PreCommit, hooks.PreReceive} {
		s := script(t, name, "/opt/poison tools/bin/poison")
		if !bytes.Contains(s, []byte("\npoison=${POISON:-'/opt/poison tools/bin/poison'}\n")) {
			t.Errorf("Script(%s) does not default to the given poison:\n%s", name, s)
		}
		if strings.Count(string(s), "poison=") != 1 || bytes.Equal(s, script(t, name, "")) {
			t.Errorf("Script(%s): want exactly the one line changed", name)
		}
	}
	for _, tc := range []struct{ name, poison, want string }{
		{"pre-push", "", `hook "pre-push": poison has only pre-commit and pre-receive`},
		{hooks.PreCommit, "bin/poison", `poison binary "bin/poison": want an absolute path`},
		{hooks.PreCommit, "/it's/poison", `a path with a quote or a newline cannot be written into a shell script`},
		{hooks.PreCommit, "/a\n/poison", `a path with a quote or a newline cannot be written into a shell script`},
	} {
		if _, err := hooks.Script(tc.name, tc.poison); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Script(%q, %q) = %v, want %q", tc.name, tc.poison, err, tc.want)
		}
	}
}

// The line Options.Poison writes picks the binary as documented when sh
// runs it: $POISON first, then the written path, spaces included.
func TestScriptPoisonShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	s := script(t, hooks.PreCommit, "/opt/poison tools/bin/poison")
	var line string
	for l := range strings.Lines(string(s)) {
		if strings.HasPrefix(l, "poison=") {
			line = l
		}
	}
	for _, tc := range []struct{ env, want string }{
		{"", "/opt/poison tools/bin/poison"},
		{"POISON=/usr/bin/poison", "/usr/bin/poison"},
	} {
		cmd := exec.Command(sh, "-c", "set -eu\n"+line+`printf '%s' "$poison"`)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		if tc.env != "" {
			cmd.Env = append(cmd.Env, tc.env)
		}
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != tc.want {
			t.Errorf("with %q: poison is %q (%v), want %q", tc.env, out, err, tc.want)
		}
	}
}

func TestInstallWorkTree(t *testing.T) {
	needGit(t)
	reg := newRegistry(t)
	want := filepath.Join(reg, ".git", "hooks", "pre-commit")
	r := installOne(t, reg, hooks.Options{})
	if r != (hooks.Result{Name: hooks.PreCommit, Path: want, Action: hooks.Installed}) {
		t.Errorf("first install: %+v", r)
	}
	checkHook(t, want, script(t, hooks.PreCommit, ""))
	if _, err := os.Stat(filepath.Join(reg, ".git", "hooks", "pre-receive")); err == nil {
		t.Error("a work tree got a pre-receive hook")
	}

	// Again, and from a subdirectory: nothing to do.
	fi, _ := os.Stat(want)
	if err := os.MkdirAll(filepath.Join(reg, "entries", "2026"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{reg, filepath.Join(reg, "entries", "2026")} {
		if r := installOne(t, dir, hooks.Options{}); r.Action != hooks.Unchanged || r.Path != want {
			t.Errorf("install again from %s: %+v, want unchanged %s", dir, r, want)
		}
	}
	if fi2, _ := os.Stat(want); !os.SameFile(fi, fi2) {
		t.Error("an unchanged hook was rewritten")
	}

	// The same script without its executable bit is fixed (git would
	// skip it).
	if err := os.Chmod(want, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := installOne(t, reg, hooks.Options{}); r.Action != hooks.Installed {
		t.Errorf("install over a non-executable copy: %v, want installed", r.Action)
	}
	checkHook(t, want, script(t, hooks.PreCommit, ""))
}

func TestInstallConflict(t *testing.T) {
	needGit(t)
	reg := newRegistry(t)
	path := filepath.Join(reg, ".git", "hooks", "pre-commit")
	mine := []byte("#!/bin/sh\necho my own hook\n")
	if err := os.WriteFile(path, mine, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := hooks.Install(context.Background(), reg, hooks.Options{})
	var conflict *hooks.ConflictError
	if !errors.As(err, &conflict) || conflict.Path != path || conflict.Name != hooks.PreCommit {
		t.Fatalf("Install over a different hook: %v, want a *ConflictError for %s", err, path)
	}
	if want := path + ": a different pre-commit hook is already installed"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, mine) {
		t.Fatal("a refused install changed the existing hook")
	}
	// The same with a poison path written in: still a different hook.
	if _, err := hooks.Install(context.Background(), reg, hooks.Options{Poison: "/bin/sh"}); !errors.As(err, &conflict) {
		t.Fatalf("Install with Poison over a different hook: %v", err)
	}

	if r := installOne(t, reg, hooks.Options{Force: true}); r.Action != hooks.Replaced {
		t.Errorf("forced install: %v, want replaced", r.Action)
	}
	checkHook(t, path, script(t, hooks.PreCommit, ""))
	// Force over poison's own hook changes nothing.
	if r := installOne(t, reg, hooks.Options{Force: true}); r.Action != hooks.Unchanged {
		t.Errorf("forced install over the same hook: %v, want unchanged", r.Action)
	}
}

// A hook that is a symbolic link (hook managers do this) is compared by
// its content; --force replaces the link, never the file it points to.
func TestInstallSymlink(t *testing.T) {
	needGit(t)
	reg := newRegistry(t)
	path := filepath.Join(reg, ".git", "hooks", "pre-commit")
	target := filepath.Join(reg, "tracked-hook")
	if err := os.WriteFile(target, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if _, err := hooks.Install(context.Background(), reg, hooks.Options{}); err == nil {
		t.Fatal("Install replaced a linked hook without Force")
	}
	installOne(t, reg, hooks.Options{Force: true})
	checkHook(t, path, script(t, hooks.PreCommit, ""))
	if got, _ := os.ReadFile(target); string(got) != "#!/bin/sh\n" {
		t.Errorf("the link's target was overwritten: %q", got)
	}
}

func TestInstallBare(t *testing.T) {
	needGit(t)
	reg := newRegistry(t)
	srv := filepath.Join(t.TempDir(), "srv.git")
	git(t, filepath.Dir(srv), "clone", "-q", "--bare", reg, srv)
	if err := os.RemoveAll(filepath.Join(srv, "hooks")); err != nil { // as go-git leaves a bare repository
		t.Fatal(err)
	}
	want := filepath.Join(srv, "hooks", "pre-receive")
	r := installOne(t, srv, hooks.Options{})
	if r != (hooks.Result{Name: hooks.PreReceive, Path: want, Action: hooks.Installed}) {
		t.Errorf("install into a bare repository: %+v", r)
	}
	checkHook(t, want, script(t, hooks.PreReceive, ""))
	if r := installOne(t, srv, hooks.Options{}); r.Action != hooks.Unchanged {
		t.Errorf("second install: %v", r.Action)
	}
	// An empty bare repository (the usual start of a server) needs no
	// registry.toml.
	empty := filepath.Join(t.TempDir(), "empty.git")
	git(t, filepath.Dir(empty), "init", "-q", "--bare", empty)
	if r := installOne(t, empty, hooks.Options{}); r.Name != hooks.PreReceive {
		t.Errorf("empty bare repository got %s", r.Name)
	}
}

// Install puts the hook where git runs it from: core.hooksPath (relative
// to the work tree's top), and a linked worktree's common directory.
func TestInstallHooksDir(t *testing.T) {
	needGit(t)
	reg := newRegistry(t)
	git(t, reg, "config", "core.hooksPath", "githooks")
	if err := os.MkdirAll(filepath.Join(reg, "entries"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(reg, "githooks", "pre-commit")
	if r := installOne(t, filepath.Join(reg, "entries"), hooks.Options{}); r.Path != want {
		t.Errorf("with core.hooksPath: installed %s, want %s", r.Path, want)
	}
	checkHook(t, want, script(t, hooks.PreCommit, ""))

	reg2 := newRegistry(t)
	wt := filepath.Join(t.TempDir(), "wt")
	git(t, reg2, "worktree", "add", "-q", wt)
	want = filepath.Join(reg2, ".git", "hooks", "pre-commit")
	if r := installOne(t, wt, hooks.Options{}); r.Path != want {
		t.Errorf("from a linked worktree: installed %s, want %s", r.Path, want)
	}
}

// dir alone names the repository: a GIT_DIR in the environment (as in a
// hook, or a shell that exported it) does not redirect Install.
func TestInstallIgnoresGitDir(t *testing.T) {
	needGit(t)
	reg, other := newRegistry(t), newRegistry(t)
	t.Setenv("GIT_DIR", filepath.Join(other, ".git"))
	t.Setenv("GIT_WORK_TREE", other)
	if r := installOne(t, reg, hooks.Options{}); r.Path != filepath.Join(reg, ".git", "hooks", "pre-commit") {
		t.Errorf("installed %s", r.Path)
	}
	if _, err := os.Stat(filepath.Join(other, ".git", "hooks", "pre-commit")); err == nil {
		t.Error("GIT_DIR redirected the install")
	}
}

func TestInstallPoison(t *testing.T) {
	needGit(t)
	reg := newRegistry(t)
	bin := filepath.Join(t.TempDir(), "poison")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := installOne(t, reg, hooks.Options{Poison: bin})
	checkHook(t, r.Path, script(t, hooks.PreCommit, bin))

	notExec := filepath.Join(t.TempDir(), "poison")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{notExec, filepath.Dir(bin), filepath.Join(bin, "missing"), "poison"} {
		if _, err := hooks.Install(context.Background(), reg, hooks.Options{Poison: p, Force: true}); err == nil {
			t.Errorf("Install accepted Poison %q", p)
		}
	}
	checkHook(t, r.Path, script(t, hooks.PreCommit, bin))
}

func TestInstallErrors(t *testing.T) {
	needGit(t)
	plain := t.TempDir()
	t.Setenv("GIT_CEILING_DIRECTORIES", filepath.Dir(plain))
	if _, err := hooks.Install(context.Background(), plain, hooks.Options{}); !errors.Is(err, hooks.ErrNotRepository) {
		t.Errorf("Install in a plain directory: %v, want ErrNotRepository", err)
	}
	project := filepath.Join(t.TempDir(), "project")
	if err := os.Mkdir(project, 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, project, "init", "-q")
	_, err := hooks.Install(context.Background(), project, hooks.Options{})
	if !errors.Is(err, hooks.ErrNotRegistry) {
		t.Errorf("Install in a repository without registry.toml: %v, want ErrNotRegistry", err)
	}
	if _, serr := os.Stat(filepath.Join(project, ".git", "hooks", "pre-commit")); serr == nil {
		t.Error("a hook was installed into a repository that is not a registry")
	}
	if _, err := hooks.Install(context.Background(), filepath.Join(plain, "missing"), hooks.Options{}); err == nil {
		t.Error("Install in a missing directory succeeded")
	}
}

func ExampleInstall() {
	// A registry's work tree: a git repository with registry.toml.
	reg, _ := os.MkdirTemp("", "registry")
	defer os.RemoveAll(reg)
	if err := exec.Command("git", "init", "-q", reg).Run(); err != nil {
		fmt.Println(err)
		return
	}
	os.WriteFile(filepath.Join(reg, "registry.toml"), nil, 0o644)

	for range 2 {
		results, err := hooks.Install(context.Background(), reg, hooks.Options{})
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, r := range results {
			rel, _ := filepath.Rel(reg, r.Path)
			fmt.Println(r.Action, r.Name, rel)
		}
	}
	// Output:
	// installed pre-commit .git/hooks/pre-commit
	// unchanged pre-commit .git/hooks/pre-commit
}
