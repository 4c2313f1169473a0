package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitEnv runs real git in a sandboxed environment.
type gitEnv struct {
	t    *testing.T
	home string
}

func (g *gitEnv) run(dir string, wantOK bool, args ...string) string {
	g.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+g.home, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=T", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=T", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if (err == nil) != wantOK {
		g.t.Fatalf("git %s: err=%v, want ok=%v\n%s", strings.Join(args, " "), err, wantOK, out)
	}
	return string(out)
}

const hookEntry = `reason = "hook test"
author = "T <t@example.com>"
date = 2026-11-20

[[derivation]]
path = "/nix/store/6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv"
outputs = ["/nix/store/bgzy1gmnwailjvdn2v79cvkn4xmr45v8-b"]
`

// TestHooks pushes to a real bare repository guarded by hooks/pre-receive
// and commits through hooks/pre-commit; poison is the test binary, which
// testscript put in $PATH.
func TestHooks(t *testing.T) {
	hooks := hooksDir(t)
	dir := t.TempDir()
	g := &gitEnv{t: t, home: dir}
	if code, _, stderr := runPoison(t, dir, "init", "reg"); code != 0 {
		t.Fatal(stderr)
	}
	g.run(dir, true, "clone", "-q", "--bare", "reg", "srv.git")
	copyFile(t, filepath.Join(hooks, "pre-receive"), filepath.Join(dir, "srv.git/hooks/pre-receive"))
	g.run(dir, true, "clone", "-q", "srv.git", "work")
	work := filepath.Join(dir, "work")
	copyFile(t, filepath.Join(hooks, "pre-commit"), filepath.Join(work, ".git/hooks/pre-commit"))
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const entry = "entries/2026/11/2026-11-20-hook-test.toml"

	// pre-commit
	write(entry, strings.Replace(hookEntry, "reason = \"hook test\"", "reason = 7", 1))
	g.run(work, true, "add", entry)
	if out := g.run(work, false, "commit", "-q", "-m", "bad entry"); !strings.Contains(out, entry+":1:1: reason: is an integer") {
		t.Errorf("pre-commit did not name the bad key:\n%s", out)
	}
	write(entry, hookEntry)
	g.run(work, true, "add", entry)
	g.run(work, true, "commit", "-q", "-m", "add entry")
	g.run(work, true, "rm", "-q", entry)
	if out := g.run(work, false, "commit", "-q", "-m", "drop entry"); !strings.Contains(out, entry+": deleted in the staged changes; entries are append-only") {
		t.Errorf("pre-commit allowed a deletion:\n%s", out)
	}
	g.run(work, true, "reset", "-q", "--hard", "HEAD")

	// pre-receive: a good push passes.
	g.run(work, true, "push", "-q", "origin", "main")

	// Editing a merged entry is refused (commit with --no-verify skips the
	// local hook; the server still checks).
	write(entry, strings.Replace(hookEntry, "hook test", "hook test, edited", 1))
	g.run(work, true, "commit", "-q", "--no-verify", "-am", "edit entry")
	if out := g.run(work, false, "push", "-q", "origin", "main"); !strings.Contains(out, entry+": modified by commit ") || !strings.Contains(out, "push refused") {
		t.Errorf("pre-receive allowed an edit:\n%s", out)
	}

	// A malformed new entry is refused with its location.
	g.run(work, true, "reset", "-q", "--hard", "origin/main")
	write("entries/2026/11/bad.toml", "reason = \"x\"\nauthor = \"T <t@example.com>\"\ndate = 2026-11-20\nnames = [\"a/b\"]\n")
	g.run(work, true, "add", ".")
	g.run(work, true, "commit", "-q", "--no-verify", "-m", "bad entry")
	if out := g.run(work, false, "push", "-q", "origin", "main"); !strings.Contains(out, "entries/2026/11/bad.toml:4:10: names[0]:") {
		t.Errorf("pre-receive allowed a malformed entry:\n%s", out)
	}

	// A forced push that drops the entry is refused.
	g.run(work, true, "reset", "-q", "--hard", "origin/main~1")
	write("README.md", "rewritten history\n")
	g.run(work, true, "commit", "-q", "--no-verify", "-am", "rewrite")
	if out := g.run(work, false, "push", "-q", "-f", "origin", "main"); !strings.Contains(out, "the history of a protected branch was rewritten") || !strings.Contains(out, entry+": deleted between --base and the pushed head") {
		t.Errorf("pre-receive allowed a forced push dropping an entry:\n%s", out)
	}

	// Topic branches are linted but may be rewritten; the protected branch
	// cannot be deleted.
	g.run(work, true, "push", "-q", "-f", "origin", "HEAD:refs/heads/poison/topic")
	if out := g.run(work, false, "push", "-q", "origin", ":main"); !strings.Contains(out, "deleting the protected branch is refused") {
		t.Errorf("pre-receive allowed deleting main:\n%s", out)
	}
	if got := strings.TrimSpace(g.run(dir, true, "--git-dir=srv.git", "log", "--format=%s", "-1", "main")); got != "add entry" {
		t.Errorf("server main is at %q, want the last good push", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "srv.git", "poison-pre-receive.*")); len(left) != 0 {
		t.Errorf("pre-receive left scratch directories: %v", left)
	}
	g.run(dir, true, "--git-dir=srv.git", "fsck", "--no-progress")
}

// hooksDir returns the absolute path of the repository's hooks/ for a
// test that runs them: git must be installed (else the test is skipped)
// and poison, the test binary testscript puts in $PATH, must be found.
func hooksDir(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	if _, err := exec.LookPath("poison"); err != nil {
		t.Fatalf("poison is not in $PATH: %v", err)
	}
	hooks, err := filepath.Abs("../../hooks")
	if err != nil {
		t.Fatal(err)
	}
	return hooks
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestHooksInstallPoison commits through a hook installed by poison hooks
// install --poison where git's $PATH has no poison (a GUI client, a server
// account): the hook runs the binary written into it.
func TestHooksInstallPoison(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	bin, err := exec.LookPath("poison")
	if err != nil {
		t.Fatalf("poison is not in $PATH: %v", err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	g := &gitEnv{t: t, home: dir}
	if code, _, stderr := runPoison(t, dir, "init", "reg"); code != 0 {
		t.Fatal(stderr)
	}
	work := filepath.Join(dir, "reg")
	if code, stdout, stderr := runPoison(t, dir, "hooks", "install", "--registry", "reg", "--poison", bin); code != 0 || stdout != "installed reg/.git/hooks/pre-commit\n" {
		t.Fatalf("hooks install --poison: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Setenv("PATH", "/usr/bin:/bin")
	t.Setenv("POISON", "")
	if p, err := exec.LookPath("poison"); err == nil {
		t.Skipf("poison is installed as %s: the test needs a $PATH without it", p)
	}
	const entry = "entries/2026/11/2026-11-20-hook-test.toml"
	write := func(content string) {
		t.Helper()
		p := filepath.Join(work, entry)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(strings.Replace(hookEntry, "reason = \"hook test\"", "reason = 7", 1))
	g.run(work, true, "add", entry)
	if out := g.run(work, false, "commit", "-q", "-m", "bad entry"); !strings.Contains(out, entry+":1:1: reason: is an integer") {
		t.Errorf("the installed hook did not lint the bad entry:\n%s", out)
	}
	write(hookEntry)
	g.run(work, true, "add", entry)
	g.run(work, true, "commit", "-q", "-m", "add entry")

	// The plain hook, with the same $PATH, does not find poison: the
	// commits above ran the binary written into the hook.
	if code, stdout, stderr := runPoison(t, dir, "hooks", "install", "--registry", "reg", "--path-lookup"); code != 0 || stdout != "updated reg/.git/hooks/pre-commit\n" {
		t.Fatalf("hooks install --force: exit %d\n%s%s", code, stdout, stderr)
	}
	if out := g.run(work, false, "commit", "-q", "--allow-empty", "-m", "no poison"); !strings.Contains(out, "poison: not found") && !strings.Contains(out, "poison: command not found") {
		t.Errorf("the plain hook failed for another reason than a missing poison:\n%s", out)
	}
}
