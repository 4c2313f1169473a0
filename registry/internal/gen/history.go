package gen

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Signature is the author of generated commits.
func Signature(i int) *object.Signature {
	return &object.Signature{Name: "Gen Erator", Email: "gen@example.com", When: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)}
}

// WriteHistory creates a git repository in dir whose first commit holds
// registry.toml and each following commit adds one entry: n+1 commits.
func WriteHistory(ctx context.Context, dir string, seed uint64, n int) error {
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		return err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "registry.toml"), []byte(Config), 0o644); err != nil {
		return err
	}
	if _, err := wt.Add("registry.toml"); err != nil {
		return err
	}
	if _, err := wt.Commit("init", &git.CommitOptions{Author: Signature(0)}); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		file, data := Entry(seed, i)
		p := filepath.Join(dir, filepath.FromSlash(file))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
		if _, err := wt.Add(file); err != nil {
			return err
		}
		if _, err := wt.Commit(fmt.Sprintf("add entry %d", i), &git.CommitOptions{Author: Signature(i + 1)}); err != nil {
			return err
		}
	}
	return nil
}
