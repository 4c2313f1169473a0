package registry

import (
	"fmt"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/poison-nix/poison/registry/gittree"
)

// OpenGitRepo opens the git repository at dir (a work tree or a bare
// repository).
func OpenGitRepo(dir string) (*git.Repository, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
	if err != nil {
		return nil, fmt.Errorf("open git repository %s: %w", dir, err)
	}
	return repo, nil
}

// resolveCommit resolves a revision to a commit.
func resolveCommit(repo *git.Repository, rev string) (*object.Commit, error) {
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", rev, err)
	}
	c, err := repo.CommitObject(*h)
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", rev, err)
	}
	return c, nil
}

// TreeFS returns the file system of the tree of commit rev, for Load: a
// *gittree.FS, which validates every tree as git fsck does and bounds
// every read by lim (zero fields take their defaults), and the full
// commit id.
// Packs of an on-disk repository are read directly (gittree.Options);
// Close the FS after use.
func TreeFS(repo *git.Repository, rev string, lim Limits) (*gittree.FS, string, error) {
	o := gittree.Options{Limits: lim}
	if st, ok := repo.Storer.(*filesystem.Storage); ok {
		o.GitDir = st.Filesystem().Root()
	}
	return gittree.Open(repo, rev, o)
}
