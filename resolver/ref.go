package resolver

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

var fullHash = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{40}$`) })

// resolveRef finds the commit a ref names in r. remote says r is a cached
// clone (branches live under refs/remotes/origin/); head is the remote's
// default branch. refs, when not nil, are the references of the cached
// clone as its last complete fetch published them: they are used instead
// of the clone's own, which a fetch running alongside may be updating.
// It returns the commit and the ref as the lock records it.
func resolveRef(r *repo, ref string, remote bool, head string, refs map[plumbing.ReferenceName]plumbing.Hash) (*object.Commit, string, error) {
	var cands []plumbing.ReferenceName
	recorded := ref
	switch {
	case fullHash().MatchString(ref):
		c, err := r.CommitObject(plumbing.NewHash(ref))
		if err != nil {
			return nil, "", fmt.Errorf("ref %s: no such commit in the registry", ref)
		}
		return c, ref, nil
	case ref == "" && remote:
		if head == "" {
			return nil, "", fmt.Errorf("the registry did not say which branch is its default; pass --ref")
		}
		recorded = head
		cands = []plumbing.ReferenceName{plumbing.NewRemoteReferenceName("origin", head)}
	case ref == "":
		h, err := r.Reference(plumbing.HEAD, false)
		if err != nil {
			return nil, "", fmt.Errorf("ref HEAD: %w", err)
		}
		if h.Type() == plumbing.SymbolicReference {
			recorded = h.Target().Short()
			cands = []plumbing.ReferenceName{h.Target()}
		} else {
			recorded = "HEAD"
			cands = []plumbing.ReferenceName{plumbing.HEAD}
		}
	case remote && strings.HasPrefix(ref, "refs/heads/"):
		cands = []plumbing.ReferenceName{plumbing.NewRemoteReferenceName("origin", strings.TrimPrefix(ref, "refs/heads/"))}
	case strings.HasPrefix(ref, "refs/"):
		cands = []plumbing.ReferenceName{plumbing.ReferenceName(ref)}
	case remote:
		cands = []plumbing.ReferenceName{plumbing.NewRemoteReferenceName("origin", ref), plumbing.NewTagReferenceName(ref)}
	default:
		cands = []plumbing.ReferenceName{plumbing.NewBranchReferenceName(ref), plumbing.NewTagReferenceName(ref), plumbing.ReferenceName("refs/remotes/" + ref)}
	}
	for _, name := range cands {
		var h plumbing.Hash
		if refs != nil {
			if h = refs[name]; h.IsZero() {
				continue
			}
		} else {
			rf, err := r.Reference(name, true)
			if err != nil {
				continue
			}
			h = rf.Hash()
		}
		c, err := peel(r, h)
		if err != nil {
			return nil, "", fmt.Errorf("ref %s: %w", recordedOr(recorded), err)
		}
		return c, recorded, nil
	}
	return nil, "", fmt.Errorf("ref %s: not found in the registry (it has %s)", recordedOr(recorded), listBranches(r, remote, refs))
}

func recordedOr(s string) string {
	if s == "" {
		return "HEAD"
	}
	return s
}

// peel follows annotated tags to the commit.
func peel(r *repo, h plumbing.Hash) (*object.Commit, error) {
	for i := 0; i < 10; i++ {
		if c, err := r.CommitObject(h); err == nil {
			return c, nil
		}
		t, err := r.TagObject(h)
		if err != nil {
			return nil, fmt.Errorf("object %s is not a commit or tag: %w", h, err)
		}
		h = t.Target
	}
	return nil, fmt.Errorf("object %s: too many nested tags", h)
}

func listBranches(r *repo, remote bool, refs map[plumbing.ReferenceName]plumbing.Hash) string {
	var names []string
	if refs != nil {
		for n := range refs {
			if n.IsRemote() {
				names = append(names, strings.TrimPrefix(n.String(), "refs/remotes/origin/"))
			}
		}
	} else if iter, err := r.References(); err == nil {
		iter.ForEach(func(ref *plumbing.Reference) error {
			n := ref.Name()
			switch {
			case remote && n.IsRemote():
				names = append(names, strings.TrimPrefix(n.String(), "refs/remotes/origin/"))
			case !remote && n.IsBranch():
				names = append(names, n.Short())
			}
			return nil
		})
	}
	if len(names) == 0 {
		return "no branches"
	}
	sort.Strings(names)
	if len(names) > 5 {
		names = append(names[:5], "...")
	}
	return "branches " + strings.Join(names, ", ")
}
