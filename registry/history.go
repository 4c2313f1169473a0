package registry

import (
	"container/heap"
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// CheckHistory enforces that entries are append-only (docs/formats.md) between
// two revisions of repo: every commit reachable from head but not from
// base is compared with each of its parents, and a file under entries/
// that was deleted, renamed, modified or changed in mode is a problem
// naming the commit.
//
// A branch behind base is fine (entries merged into base after it forked
// are not lost by it). With opts.FastForward, as for pushes to a protected
// branch, base must be an ancestor of head; if not, that is a problem, and
// so is every entry of base that head lacks or changed.
//
// Only entries/ subtrees whose hashes differ are read, so the cost is
// proportional to the number of commits and the entries they touch, not to
// the size of the registry.
func CheckHistory(ctx context.Context, repo *git.Repository, base, head string, opts HistoryOptions) (Problems, error) {
	baseC, err := resolveCommit(repo, base)
	if err != nil {
		return nil, fmt.Errorf("check history: %w", err)
	}
	headC, err := resolveCommit(repo, head)
	if err != nil {
		return nil, fmt.Errorf("check history: %w", err)
	}
	h := historyChecker{repo: repo, flagged: map[string]bool{}}

	inRange, baseReached, err := commitRange(ctx, repo, headC, baseC)
	if err != nil {
		return nil, fmt.Errorf("check history: %w", err)
	}
	// Oldest first, so the commit that first broke a file is named.
	sort.SliceStable(inRange, func(i, j int) bool { return inRange[i].Committer.When.Before(inRange[j].Committer.When) })
	for _, c := range inRange {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		newT, err := entriesTree(repo, c)
		if err != nil {
			return nil, fmt.Errorf("check history: commit %s: %w", c.Hash, err)
		}
		for _, ph := range c.ParentHashes {
			p, err := repo.CommitObject(ph)
			if err != nil {
				return nil, fmt.Errorf("check history: parent %s of %s: %w", ph, c.Hash, err)
			}
			oldT, err := entriesTree(repo, p)
			if err != nil {
				return nil, fmt.Errorf("check history: commit %s: %w", p.Hash, err)
			}
			if err := h.compare(c, oldT, newT); err != nil {
				return nil, fmt.Errorf("check history: commit %s: %w", c.Hash, err)
			}
		}
	}
	if !opts.FastForward || baseReached {
		return h.problems, nil
	}
	// A forced push: base's entries must all be in head unchanged.
	h.problems = append(h.problems, Problem{Path: ".", Severity: Error, Message: fmt.Sprintf(
		"%s is not an ancestor of %s: the history of a protected branch was rewritten; entries are append-only: push on top of %s instead",
		baseC.Hash.String()[:12], headC.Hash.String()[:12], baseC.Hash.String()[:12])})
	oldT, err := entriesTree(repo, baseC)
	if err != nil {
		return nil, fmt.Errorf("check history: %w", err)
	}
	newT, err := entriesTree(repo, headC)
	if err != nil {
		return nil, fmt.Errorf("check history: %w", err)
	}
	if err := h.compare(nil, oldT, newT); err != nil {
		return nil, fmt.Errorf("check history: %w", err)
	}
	return h.problems, nil
}

// HistoryOptions configures CheckHistory.
type HistoryOptions struct {
	// FastForward requires base to be an ancestor of head: a protected
	// branch only moves forward.
	FastForward bool
}

// commitRange returns the commits reachable from head but not from base
// (git rev-list head ^base). Like git, it walks both sides newest first
// and stops once everything left to visit is reachable from base, so the
// cost follows the size of the range, not of the whole history; a few
// extra steps absorb clock skew between commits.
//
// reached reports whether base is an ancestor of head (or head itself).
func commitRange(ctx context.Context, repo *git.Repository, head, base *object.Commit) (commits []*object.Commit, reached bool, err error) {
	const (
		interesting = 1
		excluded    = 2
		slop        = 8
	)
	flags := map[plumbing.Hash]uint8{}
	var queue commitQueue
	push := func(c *object.Commit, f uint8) {
		old, seen := flags[c.Hash]
		if old|f == old && seen {
			return
		}
		flags[c.Hash] = old | f
		heap.Push(&queue, c)
	}
	push(base, excluded)
	push(head, interesting)
	var out []*object.Commit
	emitted := map[plumbing.Hash]bool{}
	extra := slop
	for queue.Len() > 0 {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		if queue.allExcluded(flags, excluded) {
			if extra == 0 {
				break
			}
			extra--
		} else {
			extra = slop
		}
		c := heap.Pop(&queue).(*object.Commit)
		f := flags[c.Hash]
		if f&excluded == 0 && !emitted[c.Hash] {
			emitted[c.Hash] = true
			out = append(out, c)
		}
		for _, ph := range c.ParentHashes {
			p, err := repo.CommitObject(ph)
			if err != nil {
				return nil, false, fmt.Errorf("parent %s of %s: %w", ph, c.Hash, err)
			}
			push(p, f)
		}
	}
	// A commit reached first from head may later turn out to be reachable
	// from base (clock skew): drop it.
	kept := out[:0]
	for _, c := range out {
		if flags[c.Hash]&excluded == 0 {
			kept = append(kept, c)
		}
	}
	return kept, flags[base.Hash]&interesting != 0, nil
}

// commitQueue is a max-heap of commits by committer time.
type commitQueue []*object.Commit

func (q commitQueue) Len() int { return len(q) }
func (q commitQueue) Less(i, j int) bool {
	return q[i].Committer.When.After(q[j].Committer.When)
}
func (q commitQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *commitQueue) Push(x any)   { *q = append(*q, x.(*object.Commit)) }
func (q *commitQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	*q = old[:len(old)-1]
	return c
}

func (q commitQueue) allExcluded(flags map[plumbing.Hash]uint8, excluded uint8) bool {
	for _, c := range q {
		if flags[c.Hash]&excluded == 0 {
			return false
		}
	}
	return true
}

// entriesTree returns the hash of the entries/ tree of c, or ZeroHash.
func entriesTree(repo *git.Repository, c *object.Commit) (plumbing.Hash, error) {
	t, err := repo.TreeObject(c.TreeHash)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	for _, e := range t.Entries {
		if e.Name == EntriesDir {
			if e.Mode != filemode.Dir {
				return plumbing.ZeroHash, nil
			}
			return e.Hash, nil
		}
	}
	return plumbing.ZeroHash, nil
}

type historyChecker struct {
	repo     *git.Repository
	problems Problems
	flagged  map[string]bool // files already reported
}

type fileChange struct {
	path string
	mode filemode.FileMode
	hash plumbing.Hash
}

// compare reports entries of the old tree that the new tree lacks or
// changed; c is the commit that made the change (nil: base vs head).
func (h *historyChecker) compare(c *object.Commit, oldT, newT plumbing.Hash) error {
	if oldT == newT || oldT.IsZero() {
		return nil
	}
	var deleted, changed []fileChange
	added := map[plumbing.Hash]string{}
	if err := h.diff(EntriesDir, oldT, newT, &deleted, &changed, added); err != nil {
		return err
	}
	what := "between --base and the pushed head"
	if c != nil {
		what = fmt.Sprintf("by commit %s (%q)", c.Hash.String()[:12], firstLine(c.Message))
	}
	report := func(f fileChange, msg string) {
		if h.flagged[f.path] {
			return
		}
		h.flagged[f.path] = true
		h.problems = append(h.problems, Problem{Path: f.path, Severity: Error, Message: msg})
	}
	for _, f := range deleted {
		if to, ok := added[f.hash]; ok {
			report(f, fmt.Sprintf("renamed to %s %s; entries are append-only: keep the file where it was merged", to, what))
		} else {
			report(f, fmt.Sprintf("deleted %s; entries are append-only (a deleted entry lowers serials and brings bad outputs back): restore it", what))
		}
	}
	for _, f := range changed {
		report(f, fmt.Sprintf("modified %s; entries are append-only: restore the merged content and file a new entry for new information", what))
	}
	return nil
}

// diff walks two trees in step, descending only into differing subtrees.
func (h *historyChecker) diff(dir string, oldT, newT plumbing.Hash, deleted, changed *[]fileChange, added map[plumbing.Hash]string) error {
	if oldT == newT {
		return nil
	}
	var oldEntries, newEntries []object.TreeEntry
	if !oldT.IsZero() {
		t, err := h.repo.TreeObject(oldT)
		if err != nil {
			return err
		}
		oldEntries = t.Entries
	}
	if !newT.IsZero() {
		t, err := h.repo.TreeObject(newT)
		if err != nil {
			return err
		}
		newEntries = t.Entries
	}
	newByName := make(map[string]object.TreeEntry, len(newEntries))
	for _, e := range newEntries {
		newByName[e.Name] = e
	}
	oldByName := make(map[string]object.TreeEntry, len(oldEntries))
	for _, o := range oldEntries {
		oldByName[o.Name] = o
		p := path.Join(dir, o.Name)
		n, ok := newByName[o.Name]
		switch {
		case !ok && o.Mode == filemode.Dir:
			if err := h.diff(p, o.Hash, plumbing.ZeroHash, deleted, changed, added); err != nil {
				return err
			}
		case !ok:
			*deleted = append(*deleted, fileChange{p, o.Mode, o.Hash})
		case o.Hash == n.Hash && o.Mode == n.Mode:
		case o.Mode == filemode.Dir && n.Mode == filemode.Dir:
			if err := h.diff(p, o.Hash, n.Hash, deleted, changed, added); err != nil {
				return err
			}
		case o.Mode == filemode.Dir:
			if err := h.diff(p, o.Hash, plumbing.ZeroHash, deleted, changed, added); err != nil {
				return err
			}
		default:
			*changed = append(*changed, fileChange{p, o.Mode, o.Hash})
		}
	}
	// Additions matter only to recognise renames.
	for _, n := range newEntries {
		if _, ok := oldByName[n.Name]; ok {
			continue
		}
		p := path.Join(dir, n.Name)
		if n.Mode == filemode.Dir {
			if err := h.collect(p, n.Hash, added); err != nil {
				return err
			}
		} else {
			added[n.Hash] = p
		}
	}
	return nil
}

// collect records every file of a new subtree by blob hash.
func (h *historyChecker) collect(dir string, tree plumbing.Hash, added map[plumbing.Hash]string) error {
	t, err := h.repo.TreeObject(tree)
	if err != nil {
		return err
	}
	for _, e := range t.Entries {
		p := path.Join(dir, e.Name)
		if e.Mode == filemode.Dir {
			if err := h.collect(p, e.Hash, added); err != nil {
				return err
			}
		} else {
			added[e.Hash] = p
		}
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return truncate(s)
}
