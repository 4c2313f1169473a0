package registry

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// TestCommitRangeMatchesGit compares commitRange with git rev-list on a
// history with branches, merges and a committer clock that goes backwards.
func TestCommitRangeMatchesGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	wt, _ := repo.Worktree()
	n := 0
	commit := func(parents ...plumbing.Hash) plumbing.Hash {
		n++
		name := fmt.Sprintf("f%d", n)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			t.Fatal(err)
		}
		when := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Minute)
		if n%7 == 0 {
			when = when.Add(-3 * time.Hour) // skew
		}
		sig := &object.Signature{Name: "T", Email: "t@e", When: when}
		h, err := wt.Commit(name, &git.CommitOptions{Author: sig, Committer: sig, Parents: parents})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	var main []plumbing.Hash
	main = append(main, commit())
	for i := 0; i < 30; i++ {
		main = append(main, commit(main[len(main)-1]))
	}
	side := []plumbing.Hash{commit(main[10])}
	for i := 0; i < 8; i++ {
		side = append(side, commit(side[len(side)-1]))
	}
	merge := commit(main[len(main)-1], side[len(side)-1])
	tip := commit(merge)
	pairs := [][2]plumbing.Hash{
		{main[0], tip}, {main[10], tip}, {main[25], tip}, {side[3], tip}, {merge, tip},
		{tip, tip}, {side[8], main[30]}, {main[30], side[8]},
	}
	for _, p := range pairs {
		base, _ := repo.CommitObject(p[0])
		head, _ := repo.CommitObject(p[1])
		got, reached, err := commitRange(context.Background(), repo, head, base)
		if err != nil {
			t.Fatal(err)
		}
		var gotS []string
		for _, c := range got {
			gotS = append(gotS, c.Hash.String())
		}
		sort.Strings(gotS)
		out, err := exec.Command("git", "-C", dir, "rev-list", p[1].String(), "^"+p[0].String()).Output()
		if err != nil {
			t.Fatal(err)
		}
		want := strings.Fields(string(out))
		isAnc := exec.Command("git", "-C", dir, "merge-base", "--is-ancestor", p[0].String(), p[1].String()).Run() == nil
		if reached != isAnc {
			t.Errorf("range %s..%s: ancestor = %v, git says %v", p[0].String()[:8], p[1].String()[:8], reached, isAnc)
		}
		sort.Strings(want)
		if strings.Join(gotS, " ") != strings.Join(want, " ") {
			t.Errorf("range %s..%s: got %d commits, git rev-list %d", p[0].String()[:8], p[1].String()[:8], len(gotS), len(want))
		}
	}
}
