package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/poison-nix/poison/registry/lock"
)

// InitOptions configures Init.
type InitOptions struct {
	Env      string // lock.DefaultEnv when empty
	StoreDir string // lock.DefaultStoreDir when empty
	// Committer of the first commit, "Name <email>"; the git
	// configuration's user, or "poison <poison@localhost>", when empty.
	Committer string
	// Branch is the initial branch, "main" when empty.
	Branch string
	// CI lists the CI systems to write a pull-request workflow for
	// (CIGitHub, CIGitLab); nil writes none.
	CI  []string
	Now time.Time
}

// Init creates a registry in dir (which must not exist or be empty):
// registry.toml, entries/, a CODEOWNERS template and a README for
// maintainers, committed as the first commit of a new git repository.
func Init(ctx context.Context, dir string, opts InitOptions) error {
	cfg := Config{Env: opts.Env, StoreDir: opts.StoreDir}.withDefaults()
	if err := ValidateEnv(cfg.Env); err != nil {
		return fmt.Errorf("init: env: %w", err)
	}
	if err := ValidateStoreDir(cfg.StoreDir); err != nil {
		return fmt.Errorf("init: store-dir: %w", err)
	}
	if opts.Branch == "" {
		opts.Branch = "main"
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	sig, err := signature(opts.Committer, opts.Now)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("init: %w", err)
	case len(ents) > 0:
		return fmt.Errorf("init: %s is not empty; choose a new directory", dir)
	}
	files := map[string]string{
		ConfigFile:               fmt.Sprintf("# poison registry settings (see README.md)\nenv = %s\nstore-dir = %s\n", tomlString(cfg.Env), tomlString(cfg.StoreDir)),
		EntriesDir + "/.gitkeep": "",
		"CODEOWNERS":             codeownersTemplate,
		"README.md":              readmeTemplate,
	}
	ci, err := ciFiles(opts.CI)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	for name, content := range ci {
		files[name] = content
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(filepath.FromSlash(name))), 0o755); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, EntriesDir), 0o755); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	for name, content := range files {
		if err := lock.WriteAtomic(filepath.Join(dir, filepath.FromSlash(name)), []byte(content), 0o644); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName(opts.Branch)},
	})
	if err != nil {
		return fmt.Errorf("init: git repository: %w", err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	for name := range files {
		if _, err := wt.Add(name); err != nil {
			return fmt.Errorf("init: git add %s: %w", name, err)
		}
	}
	if _, err := wt.Commit("Create poison registry", &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		return fmt.Errorf("init: git commit: %w", err)
	}
	return ctx.Err()
}

// CommitEntry commits the entry file (relative to the work tree dir) on a
// new branch poison/SLUG created at HEAD, and checks that branch out. The
// commit holds exactly that file added to HEAD's tree, whatever else is
// staged; other staged or unstaged changes are kept as they are. It
// returns the branch name and the commit hash.
func CommitEntry(ctx context.Context, dir, file, slug, committer, message string, now time.Time) (string, string, error) {
	fail := func(err error) (string, string, error) { return "", "", fmt.Errorf("commit %s: %w", file, err) }
	repo, err := git.PlainOpen(dir)
	if err != nil {
		return fail(fmt.Errorf("open git repository %s: %w", dir, err))
	}
	sig, err := signatureFromRepo(repo, committer, now)
	if err != nil {
		return fail(err)
	}
	branch := plumbing.NewBranchReferenceName("poison/" + slug)
	if err := branch.Validate(); err != nil {
		return fail(err)
	}
	if _, err := repo.Reference(branch, false); err == nil {
		return fail(fmt.Errorf("branch %s exists; pass --slug to choose another name", branch.Short()))
	}
	head, err := repo.Head()
	if err != nil {
		return fail(fmt.Errorf("HEAD: %w", err))
	}
	parent, err := repo.CommitObject(head.Hash())
	if err != nil {
		return fail(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(file)))
	if err != nil {
		return fail(err)
	}
	blob, err := storeBlob(repo.Storer, data)
	if err != nil {
		return fail(err)
	}
	tree, err := insertFile(repo.Storer, parent.TreeHash, strings.Split(file, "/"), blob)
	if err != nil {
		return fail(err)
	}
	commit := &object.Commit{Author: *sig, Committer: *sig, Message: message, TreeHash: tree, ParentHashes: []plumbing.Hash{parent.Hash}}
	hash, err := storeObject(repo.Storer, commit)
	if err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if err := repo.Storer.SetReference(plumbing.NewHashReference(branch, hash)); err != nil {
		return fail(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return fail(err)
	}
	// Keep: move HEAD only, leaving the index and work tree alone; then
	// stage the entry so the index agrees with the new commit.
	if err := wt.Checkout(&git.CheckoutOptions{Branch: branch, Keep: true}); err != nil {
		return fail(fmt.Errorf("check out %s: %w", branch.Short(), err))
	}
	if _, err := wt.Add(file); err != nil {
		return fail(fmt.Errorf("git add: %w", err))
	}
	return branch.Short(), hash.String(), nil
}

// insertFile returns the hash of tree with a new regular file at path;
// an existing file there is an error.
func insertFile(s storer.EncodedObjectStorer, tree plumbing.Hash, path []string, blob plumbing.Hash) (plumbing.Hash, error) {
	var entries []object.TreeEntry
	if !tree.IsZero() {
		t, err := object.GetTree(s, tree)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries = append(entries, t.Entries...)
	}
	name := path[0]
	i := slices.IndexFunc(entries, func(e object.TreeEntry) bool { return e.Name == name })
	var e object.TreeEntry
	if len(path) == 1 {
		if i >= 0 {
			return plumbing.ZeroHash, fmt.Errorf("%s already exists in HEAD", name)
		}
		e = object.TreeEntry{Name: name, Mode: filemode.Regular, Hash: blob}
	} else {
		sub := plumbing.ZeroHash
		if i >= 0 {
			if entries[i].Mode != filemode.Dir {
				return plumbing.ZeroHash, fmt.Errorf("%s is not a directory in HEAD", name)
			}
			sub = entries[i].Hash
		}
		h, err := insertFile(s, sub, path[1:], blob)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		e = object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h}
	}
	if i >= 0 {
		entries[i] = e
	} else {
		entries = append(entries, e)
	}
	// Git orders tree entries as if directory names ended in '/'.
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.Slice(entries, func(a, b int) bool { return key(entries[a]) < key(entries[b]) })
	return storeObject(s, &object.Tree{Entries: entries})
}

func storeObject(s storer.EncodedObjectStorer, o interface {
	Encode(plumbing.EncodedObject) error
}) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	if err := o.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}

func storeBlob(s storer.EncodedObjectStorer, data []byte) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(data); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}

// signatureFromRepo uses who ("Name <email>") or the repository's and the
// user's git configuration.
func signatureFromRepo(repo *git.Repository, who string, now time.Time) (*object.Signature, error) {
	if who == "" {
		if c, err := repo.ConfigScoped(config.GlobalScope); err == nil && c.User.Name != "" && c.User.Email != "" {
			who = c.User.Name + " <" + c.User.Email + ">"
		}
	}
	return signature(who, now)
}

// signature parses "Name <email>"; empty means the global git user or a
// placeholder.
func signature(who string, now time.Time) (*object.Signature, error) {
	if who == "" {
		if c, err := config.LoadConfig(config.GlobalScope); err == nil && c.User.Name != "" && c.User.Email != "" {
			who = c.User.Name + " <" + c.User.Email + ">"
		} else {
			who = "poison <poison@localhost>"
		}
	}
	a, err := mail.ParseAddress(who)
	if err != nil || a.Name == "" {
		return nil, fmt.Errorf("author %q: write \"Name <email>\"", truncate(who))
	}
	return &object.Signature{Name: a.Name, Email: a.Address, When: now}, nil
}

// DefaultAuthor returns the user's git identity as "Name <email>", or "".
func DefaultAuthor() string {
	if c, err := config.LoadConfig(config.GlobalScope); err == nil && c.User.Name != "" && c.User.Email != "" {
		return c.User.Name + " <" + c.User.Email + ">"
	}
	return ""
}

const codeownersTemplate = `# Who must review which entries. Replace the team names with yours.
*                 @your-org/poison-maintainers
/registry.toml    @your-org/poison-maintainers
/entries/         @your-org/poison-reviewers
`

const readmeTemplate = `# Poison registry

This repository lists Nix build results known to be bad. Each file under
entries/ is one incident; poison gives every derivation it names a serial,
so builds that use this registry rebuild it and everything downstream.

## Adding an entry

    poison add --registry . --reason "what went wrong" --commit /nix/store/...-foo.drv

then open a pull request from the new branch poison/SLUG. Entries are
append-only: once merged, never edit or delete one (that would lower a
serial and bring the bad output back); file a new entry instead.

## Checking

    poison lint --registry .                 # every entry and registry.toml
    poison lint --registry . --base main     # also: nothing merged was changed

Run "poison hooks install" here (pre-commit) and in the server's bare
repository (pre-receive) to run these checks on every commit and push.

## Format

registry.toml: env (the attribute injected, default POISON_SERIAL) and
store-dir (default /nix/store).

An entry: reason, author, date (required); group, ticket, names
(optional); one [[derivation]] table per derivation with path (the .drv)
and outputs (its output paths, filled by poison add).
`
