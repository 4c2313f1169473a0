package gittree

import (
	"io/fs"
	"slices"
	"strings"
)

// SameEntry reports whether name is the same object with the same mode in
// both trees (false when it is missing from either).
func SameEntry(old, new *FS, name string) (bool, error) {
	a, err := old.entryOf(name)
	if err != nil {
		return false, err
	}
	b, err := new.entryOf(name)
	if err != nil {
		return false, err
	}
	return a != nil && b != nil && a.hash == b.hash && a.mode == b.mode, nil
}

// entryOf is lookup without fs.ErrNotExist: nil when name is missing.
func (f *FS) entryOf(name string) (*node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.lookup("stat", name)
	if err != nil {
		if pe, ok := err.(*fs.PathError); ok && pe.Err == fs.ErrNotExist {
			return nil, nil
		}
		return nil, err
	}
	return n, nil
}

// Added lists the paths of the non-directories below root that new has and
// old has not, in name order. ok is false when anything below dir was
// deleted, modified or changed in mode, or when root is not a directory in
// both. Only subtrees whose ids differ are read (and validated), so the
// cost follows the size of the change. The walk is iterative.
func Added(old, new *FS, root string) (added []string, ok bool, err error) {
	a, err := old.entryOf(root)
	if err != nil {
		return nil, false, err
	}
	b, err := new.entryOf(root)
	if err != nil {
		return nil, false, err
	}
	if a == nil || b == nil || !a.isDir() || !b.isDir() {
		return nil, false, nil
	}
	type pair struct {
		p     string
		a, b  *node // a nil: everything below b is new
		depth int
	}
	depth := strings.Count(root, "/") + 1
	stack := []pair{{root, a, b, depth}}
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if top.a != nil && top.a.hash == top.b.hash {
			continue
		}
		new.mu.Lock()
		nd, err := new.load(top.b, top.p, top.depth)
		new.mu.Unlock()
		if err != nil {
			return nil, false, err
		}
		var od *dir
		if top.a != nil {
			old.mu.Lock()
			od, err = old.load(top.a, top.p, top.depth)
			old.mu.Unlock()
			if err != nil {
				return nil, false, err
			}
			for i := range od.children {
				if nd.child(od.children[i].name) == nil {
					return nil, false, nil // deleted
				}
			}
		}
		// Push in reverse so that paths come out in name order.
		for i := len(nd.children) - 1; i >= 0; i-- {
			y := &nd.children[i]
			p := top.p + "/" + y.name
			var x *node
			if od != nil {
				x = od.child(y.name)
			}
			switch {
			case y.isDir() && (x == nil || x.isDir()):
				stack = append(stack, pair{p, x, y, top.depth + 1})
			case x == nil:
				added = append(added, p)
			case x.hash == y.hash && x.mode == y.mode:
			default:
				return nil, false, nil // modified
			}
		}
	}
	sortPaths(added)
	return added, true, nil
}

func sortPaths(ps []string) {
	slices.Sort(ps)
}
