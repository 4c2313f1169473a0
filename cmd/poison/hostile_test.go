package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/poison-nix/poison/internal/hostile"
)

// hostileCases are the crafted registries of internal/hostile that poison
// must refuse, with a SIZE small enough for a unit test where the kind
// takes one, the environment all three readers get (a limit lowered so
// that a small bomb trips it), and what the one error line must say.
var hostileCases = []struct {
	kind string
	size int64
	env  map[string]string
	want string
}{
	{kind: "dot", want: `entry ".": "." as a name`},
	{kind: "dotdot", want: `entry "..": ".." as a name`},
	{kind: "dotgit", want: `entry ".git": ".git", or an alias`},
	{kind: "dotgitcase", want: `entry ".GiT": ".git", or an alias`},
	{kind: "dotgitntfs", want: `entry "git~1": ".git", or an alias`},
	{kind: "dotgithfs", want: `entry ".g\u200cit": ".git", or an alias`},
	{kind: "empty", want: `entry "": empty name`},
	{kind: "slash", want: `entry "x/y.toml": "/" in a name`},
	{kind: "duplicate", want: `entry "2026": listed twice`},
	{kind: "unsorted", want: `entry "a.toml": comes after "b.toml"`},
	{kind: "symlink", want: `entries/2026/11/link.toml: is a symlink`},
	{kind: "gitlink", want: `entries/2026/11/sub: is not a regular file`},
	{kind: "executable", want: `entries/2026/11/x.toml: is executable (mode 100755)`},
	{kind: "badmode", want: `entry "x.toml": mode 100664, which git does not write`},
	{kind: "deep", size: 100, want: `nested 65 directories deep, more than the limit of 64; if the registry is right, raise the limit with --max-tree-depth`},
	{kind: "treebomb", size: 2 << 20, env: map[string]string{"POISON_MAX_TREE_SIZE": "1M"}, want: `is 2097152 bytes (2.0 MiB), more than the limit of 1048576 bytes (1.0 MiB) for one tree; if the registry is right, raise the limit with --max-tree-size`},
	{kind: "zipbomb", size: 1 << 20, want: `is 1048576 bytes (1.0 MiB), more than the limit of 65536 bytes (64.0 KiB) for one file; split the incident into several entries; if the registry is right, raise the limit with --max-entry-size`},
	{kind: "looselie", size: 1 << 20, want: `inflates to more than the 16 bytes its header says`},
	{kind: "packlie", size: 1 << 20, want: `inflates to more than the 16 bytes its header says`},
	{kind: "deltalie", size: 100000, want: `is a delta that inserts beyond its data or its declared size of 16 bytes`},
}

// errorLine matches the error lines of poison: the command's prefix and
// the resolver's "; no previous lock" are left out of the captured
// message.
var errorLine = regexp.MustCompile(`(?m)^poison: error: (?:(?:resolve|lint [^:]*): (?:registry [^:]*: )?load registry: )?(.*?)(?:; no previous lock)?\s*$`)

// TestHostileSameLine runs resolve, lint --rev and the pre-receive hook
// (hooks/pre-receive, with real git) over each crafted registry, and
// checks that all three fail with exit 1 and the same one-line error
// naming the object.
func TestHostileSameLine(t *testing.T) {
	hooks := hooksDir(t)
	for _, tc := range hostileCases {
		t.Run(tc.kind, func(t *testing.T) {
			if _, ok := hostile.Kinds[tc.kind]; !ok {
				t.Fatalf("internal/hostile has no kind %q", tc.kind)
			}
			dir := t.TempDir()
			repo := filepath.Join(dir, "hostile.git")
			if err := hostile.Build(repo, tc.kind, tc.size); err != nil {
				t.Fatal(err)
			}
			env := map[string]string{"POISON_CACHE_DIR": filepath.Join(dir, "cache")}
			for k, v := range tc.env {
				env[k] = v
			}
			lines := map[string][]string{}
			check := func(who string, code int, stderr string) {
				t.Helper()
				if code != 1 {
					t.Errorf("%s: exit %d, want 1\n%s", who, code, stderr)
				}
				var msgs []string
				for _, m := range errorLine.FindAllStringSubmatch(stderr, -1) {
					msgs = append(msgs, m[1])
				}
				// resolve adds a count of the invalid entries after the
				// entry's own line; that is not a second description.
				if len(msgs) == 2 && who == "resolve" && regexp.MustCompile(`^resolve: 1 invalid entry in the registry`).MatchString(msgs[1]) {
					msgs = msgs[:1]
				}
				if len(msgs) != 1 || !strings.Contains(msgs[0], tc.want) {
					t.Errorf("%s: want one error line containing %q, got %q\n%s", who, tc.want, msgs, stderr)
					return
				}
				// lint (and the hook, which runs it) has nothing to add to
				// a registry's own error: no hint line.
				if who != "resolve" && strings.Contains(stderr, "poison: hint:") {
					t.Errorf("%s: a hint after the registry's error\n%s", who, stderr)
				}
				lines[who] = msgs
			}

			code, _, stderr := runPoisonEnv(t, dir, env, "resolve", "--registry", repo, "--lock", filepath.Join(dir, "poison.lock"))
			check("resolve", code, stderr)
			if _, err := os.Stat(filepath.Join(dir, "poison.lock")); err == nil {
				t.Errorf("resolve wrote a lock")
			}
			code, _, stderr = runPoisonEnv(t, dir, env, "lint", "--registry", repo, "--rev", "main")
			check("lint", code, stderr)

			// The hook, run as git receive-pack runs it: in the repository
			// holding the pushed objects (GIT_DIR), with the ref update on
			// stdin. (A real push of some of these never reaches it: git's
			// own unpacker refuses empty names and corrupt objects first.)
			commit, err := hostile.Git(repo, nil, "rev-parse", "main")
			if err != nil {
				t.Fatal(err)
			}
			hook := exec.Command("sh", filepath.Join(hooks, "pre-receive"))
			hook.Dir = repo
			hook.Stdin = strings.NewReader(strings.Repeat("0", 40) + " " + commit + " refs/heads/main\n")
			hook.Env = append(os.Environ(), "GIT_DIR="+repo, "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
			for k, v := range tc.env {
				hook.Env = append(hook.Env, k+"="+v)
			}
			out, err := hook.CombinedOutput()
			code = 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			check("pre-receive", code, string(out))
			if !strings.Contains(string(out), "poison: push refused") {
				t.Errorf("pre-receive: no refusal\n%s", out)
			}
			if left, _ := filepath.Glob(filepath.Join(repo, "poison-pre-receive.*")); len(left) != 0 {
				t.Errorf("pre-receive left scratch directories: %v", left)
			}

			if len(lines) == 3 && (lines["resolve"][0] != lines["lint"][0] || lines["lint"][0] != lines["pre-receive"][0]) {
				t.Errorf("the three differ:\nresolve:     %s\nlint:        %s\npre-receive: %s", lines["resolve"][0], lines["lint"][0], lines["pre-receive"][0])
			}
		})
	}
}
