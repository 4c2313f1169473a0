package registry_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/registry/internal/gen"
)

// histRepo is a real git repository in a temporary directory.
type histRepo struct {
	t    *testing.T
	dir  string
	repo *git.Repository
	wt   *git.Worktree
	n    int
}

func newHistRepo(t *testing.T) *histRepo {
	t.Helper()
	dir := t.TempDir()
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.Main}})
	if err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	return &histRepo{t: t, dir: dir, repo: repo, wt: wt}
}

func (h *histRepo) write(name, content string) {
	h.t.Helper()
	p := filepath.Join(h.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.wt.Add(name); err != nil {
		h.t.Fatal(err)
	}
}

func (h *histRepo) remove(name string) {
	h.t.Helper()
	if _, err := h.wt.Remove(name); err != nil {
		h.t.Fatal(err)
	}
}

func (h *histRepo) chmod(name string, mode os.FileMode) {
	h.t.Helper()
	if err := os.Chmod(filepath.Join(h.dir, name), mode); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.wt.Add(name); err != nil {
		h.t.Fatal(err)
	}
}

func (h *histRepo) commit(msg string, parents ...plumbing.Hash) plumbing.Hash {
	h.t.Helper()
	h.n++
	sig := &object.Signature{Name: "T", Email: "t@example.com", When: time.Date(2026, 11, 1, 0, 0, h.n, 0, time.UTC)}
	hash, err := h.wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig, Parents: parents, AllowEmptyCommits: true})
	if err != nil {
		h.t.Fatal(err)
	}
	return hash
}

func (h *histRepo) checkout(branch string, create bool, at plumbing.Hash) {
	h.t.Helper()
	opts := &git.CheckoutOptions{Branch: plumbing.NewBranchReferenceName(branch), Create: create, Force: true}
	if create {
		opts.Hash = at
	}
	if err := h.wt.Checkout(opts); err != nil {
		h.t.Fatal(err)
	}
}

func (h *histRepo) check(base, head string, ff bool) registry.Problems {
	h.t.Helper()
	repo, err := registry.OpenGitRepo(h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	ps, err := registry.CheckHistory(context.Background(), repo, base, head, registry.HistoryOptions{FastForward: ff})
	if err != nil {
		h.t.Fatal(err)
	}
	return ps
}

const (
	entA = "entries/2026/11/a.toml"
	entB = "entries/2026/11/b.toml"
)

// TestCheckHistory runs the append-only check over real git histories.
// Each case starts from a base commit holding entries a and b.
func TestCheckHistory(t *testing.T) {
	tests := []struct {
		name  string
		steps func(h *histRepo, base plumbing.Hash) (head string)
		want  []string // substrings of the problems, in order
		ff    bool     // HistoryOptions.FastForward
	}{
		{"nothing new", func(h *histRepo, base plumbing.Hash) string { return "HEAD" }, nil, false},
		{"add entries and other files", func(h *histRepo, base plumbing.Hash) string {
			h.write("entries/2026/12/c.toml", "c")
			h.commit("add c")
			h.write("README.md", "changed")
			h.write("registry.toml", "env = \"X\"\n")
			h.commit("docs")
			return "HEAD"
		}, nil, false},
		{"modify", func(h *histRepo, base plumbing.Hash) string {
			h.write("entries/2026/12/c.toml", "c")
			h.commit("add c")
			h.write(entA, "a changed")
			h.commit("fix typo in a")
			return "HEAD"
		}, []string{entA + ": modified by commit ", `("fix typo in a")`}, false},
		{"delete", func(h *histRepo, base plumbing.Hash) string {
			h.remove(entB)
			h.commit("drop b")
			return "HEAD"
		}, []string{entB + ": deleted by commit ", `("drop b")`}, false},
		{"rename", func(h *histRepo, base plumbing.Hash) string {
			h.remove(entA)
			h.write("entries/2026/11/a-renamed.toml", "a")
			h.commit("rename a")
			return "HEAD"
		}, []string{entA + ": renamed to entries/2026/11/a-renamed.toml by commit "}, false},
		{"delete and restore", func(h *histRepo, base plumbing.Hash) string {
			h.remove(entA)
			h.commit("drop a")
			h.write(entA, "a")
			h.commit("restore a")
			return "HEAD"
		}, []string{entA + ": deleted by commit ", `("drop a")`}, false},
		{"mode change", func(h *histRepo, base plumbing.Hash) string {
			h.chmod(entA, 0o755)
			h.commit("chmod a")
			return "HEAD"
		}, []string{entA + ": modified by commit "}, false},
		{"delete a directory", func(h *histRepo, base plumbing.Hash) string {
			h.remove(entA)
			h.remove(entB)
			h.commit("drop november")
			return "HEAD"
		}, []string{entA + ": deleted", entB + ": deleted"}, false},
		{"modified on a merged branch", func(h *histRepo, base plumbing.Hash) string {
			h.checkout("side", true, base)
			h.write(entB, "b edited")
			side := h.commit("edit b on side")
			h.checkout("main", false, plumbing.ZeroHash)
			h.write("entries/2026/12/c.toml", "c")
			h.commit("add c")
			h.write("entries/2026/12/c.toml", "c") // merge commit with both parents
			head, _ := h.repo.Head()
			h.commit("merge side", head.Hash(), side)
			return "HEAD"
		}, []string{entB + ": modified by commit ", `("edit b on side")`}, false},
		{"forced push drops an entry", func(h *histRepo, base plumbing.Hash) string {
			first, err := h.repo.CommitObject(base)
			if err != nil {
				t.Fatal(err)
			}
			// A new history from the base's parent that never had b.
			h.checkout("rewritten", true, first.ParentHashes[0])
			h.write(entA, "a")
			h.commit("a again")
			return "rewritten"
		}, []string{".: ", "is not an ancestor of", entB + ": deleted between --base and the pushed head"}, true},
		{"branch behind base is fine", func(h *histRepo, base plumbing.Hash) string {
			first, err := h.repo.CommitObject(base)
			if err != nil {
				t.Fatal(err)
			}
			// A topic branch forked before b was merged.
			h.checkout("topic", true, first.ParentHashes[0])
			h.write("entries/2026/12/c.toml", "c")
			h.commit("add c")
			return "topic"
		}, nil, false},
		{"fast-forward is fine", func(h *histRepo, base plumbing.Hash) string {
			h.write("entries/2026/12/c.toml", "c")
			h.commit("add c")
			return "HEAD"
		}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHistRepo(t)
			h.write("registry.toml", "")
			h.write("README.md", "x")
			h.commit("init")
			h.write(entA, "a")
			h.write(entB, "b")
			base := h.commit("add a and b")
			head := tc.steps(h, base)
			ps := h.check(base.String(), head, tc.ff)
			got := ps.Error()
			if len(tc.want) == 0 {
				if len(ps) != 0 {
					t.Fatalf("unexpected problems:\n%s", got)
				}
				return
			}
			rest := got
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("problems lack %q (in order):\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			for _, p := range ps {
				if p.Severity != registry.Error || !strings.Contains(p.Message, "append-only") {
					t.Errorf("problem %q: want an append-only error", p)
				}
			}
		})
	}
}

// TestCheckHistoryBadRevision names the revision that does not resolve.
func TestCheckHistoryBadRevision(t *testing.T) {
	h := newHistRepo(t)
	h.write("registry.toml", "")
	h.commit("init")
	repo, err := registry.OpenGitRepo(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = registry.CheckHistory(context.Background(), repo, "no-such-branch", "HEAD", registry.HistoryOptions{})
	if err == nil || !strings.Contains(err.Error(), `"no-such-branch"`) {
		t.Fatalf("err = %v", err)
	}
}

// TestTreeFS loads a registry from a commit, not the work tree, and sees
// symlinks committed there.
func TestTreeFS(t *testing.T) {
	h := newHistRepo(t)
	h.write("registry.toml", "")
	h.write(entA, entry(deriv(drvA, outA), ""))
	if err := os.Symlink("a.toml", filepath.Join(h.dir, entB)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.wt.Add(entB); err != nil {
		t.Fatal(err)
	}
	h.commit("a and a link")
	// The work tree changes after the commit; the tree view must not.
	if err := os.Remove(filepath.Join(h.dir, entA)); err != nil {
		t.Fatal(err)
	}
	repo, err := registry.OpenGitRepo(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	fsys, commit, err := registry.TreeFS(repo, "HEAD", registry.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(commit) != 40 {
		t.Errorf("commit = %q", commit)
	}
	r, err := registry.Load(fsys, registry.LoadOptions{Now: testNow})
	if r == nil || len(r.Entries) != 1 || r.Entries[0].File != entA {
		t.Fatalf("Load over the tree: %+v, %v", r, err)
	}
	if err == nil || !strings.Contains(err.Error(), entB+": is a symlink") {
		t.Fatalf("symlink not reported: %v", err)
	}
}

// TestCheckHistoryGenerated checks a longer history: 200 generated
// commits are clean; one deletion among later commits is found and named.
func TestCheckHistoryGenerated(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := gen.WriteHistory(ctx, dir, 7, 200); err != nil {
		t.Fatal(err)
	}
	repo, err := registry.OpenGitRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ps, err := registry.CheckHistory(ctx, repo, "HEAD~200", "HEAD", registry.HistoryOptions{FastForward: true}); err != nil || len(ps) != 0 {
		t.Fatalf("clean history: %v, %v", ps, err)
	}
	h := &histRepo{t: t, dir: dir, repo: repo, n: 1000}
	h.wt, err = repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	victim, _ := gen.Entry(7, 42)
	h.write("entries/new/a.toml", "a")
	h.commit("add a")
	h.remove(victim)
	h.commit("drop 42")
	h.write("entries/new/b.toml", "b")
	h.commit("add b")
	ps, err := registry.CheckHistory(ctx, repo, "HEAD~203", "HEAD", registry.HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Path != victim || !strings.Contains(ps[0].Message, `("drop 42")`) {
		t.Fatalf("problems = %v", ps)
	}
}
