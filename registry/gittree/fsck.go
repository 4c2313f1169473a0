package gittree

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
)

// node is one entry of a decoded tree.
type node struct {
	name string
	mode filemode.FileMode
	hash plumbing.Hash
	dir  *dir // the decoded tree of a directory; nil until loaded
}

// dir is a decoded, validated tree: its entries sorted by plain name (the
// order fs.ReadDir promises), at a depth below the root.
type dir struct {
	children []node
	depth    int
}

func (n *node) isDir() bool  { return n.mode == filemode.Dir }
func (n *node) isFile() bool { return n.mode == filemode.Regular || n.mode == filemode.Executable }

func (d *dir) child(name string) *node {
	i := sort.Search(len(d.children), func(i int) bool { return d.children[i].name >= name })
	if i < len(d.children) && d.children[i].name == name {
		return &d.children[i]
	}
	return nil
}

// parseTree decodes and validates the raw content of a tree object as git
// fsck does: every entry well formed, with a mode git writes, a name that
// is not empty, ".", ".." or ".git" (in any case, nor its NTFS and HFS+
// aliases) and has no "/", no name twice, and the entries in git's order.
// tooMany is called once per entry and may stop the decoding with an
// error. The entries come back sorted by plain name.
func parseTree(raw []byte, bad func(format string, a ...any) error, tooMany func() error) ([]node, error) {
	var out []node
	prev := ""
	prevDir := false
	for len(raw) > 0 {
		sp := bytes.IndexByte(raw, ' ')
		if sp <= 0 || sp > 6 {
			return nil, bad("entry %d is malformed (no mode); the tree was not written by git", len(out)+1)
		}
		modeText := string(raw[:sp])
		raw = raw[sp+1:]
		nul := bytes.IndexByte(raw, 0)
		if nul < 0 || len(raw) < nul+1+20 {
			return nil, bad("entry %d is truncated; the tree was not written by git", len(out)+1)
		}
		name := string(raw[:nul])
		var h plumbing.Hash
		copy(h[:], raw[nul+1:nul+21])
		raw = raw[nul+21:]
		if err := tooMany(); err != nil {
			return nil, err
		}
		var mode filemode.FileMode
		switch modeText {
		case "100644":
			mode = filemode.Regular
		case "100755":
			mode = filemode.Executable
		case "120000":
			mode = filemode.Symlink
		case "160000":
			mode = filemode.Submodule
		case "40000":
			mode = filemode.Dir
		default:
			return nil, bad("entry %s: mode %s, which git does not write (100644, 100755, 120000, 160000 or 40000)", quoteName(name), QuotePath(modeText))
		}
		if err := checkName(name); err != "" {
			return nil, bad("entry %s: %s", quoteName(name), err)
		}
		isDir := mode == filemode.Dir
		if len(out) > 0 {
			if prev == name {
				return nil, bad("entry %s: listed twice; a tree holds each name once (git fsck: duplicateEntries)", quoteName(name))
			}
			if gitLess(name, isDir, prev, prevDir) {
				return nil, bad("entry %s: comes after %s; git sorts tree entries (git fsck: treeNotSorted)", quoteName(name), quoteName(prev))
			}
		}
		prev, prevDir = name, isDir
		out = append(out, node{name: name, mode: mode, hash: h})
	}
	// git order puts "a.b" before the directory "a"; fs wants plain order.
	// The same name twice with different modes (a file "a" and a directory
	// "a") is not adjacent in git order: find it here.
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	for i := 1; i < len(out); i++ {
		if out[i].name == out[i-1].name {
			return nil, bad("entry %s: listed twice; a tree holds each name once (git fsck: duplicateEntries)", quoteName(out[i].name))
		}
	}
	return out, nil
}

// quoteName quotes a tree entry name for messages.
func quoteName(name string) string { return strconv.Quote(name) }

// gitLess reports whether entry a sorts before entry b in git's tree
// order, where a directory's name compares as if it ended in "/".
func gitLess(a string, aDir bool, b string, bDir bool) bool {
	if aDir {
		a += "/"
	}
	if bDir {
		b += "/"
	}
	return a < b
}

// checkName returns why git fsck refuses a tree entry name, or "".
func checkName(name string) string {
	switch {
	case name == "":
		return "empty name (git fsck: emptyName)"
	case name == ".":
		return `"." as a name (git fsck: hasDot)`
	case name == "..":
		return `".." as a name (git fsck: hasDotdot)`
	case strings.IndexByte(name, '/') >= 0:
		return `"/" in a name (git fsck: fullPathname)`
	case isDotGit(name):
		return `".git", or an alias of it on a case-insensitive, NTFS or HFS+ file system (git fsck: hasDotgit)`
	}
	return ""
}

// isDotGit reports whether name would be ".git" on some file system: any
// case, trailing dots and spaces and the "git~1" short name (NTFS), and
// code points HFS+ ignores.
func isDotGit(name string) bool {
	if len(name) > 64 {
		return false
	}
	n := strings.Map(func(r rune) rune {
		switch {
		case r >= 0x200c && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x206a && r <= 0x206f, r == 0xfeff:
			return -1 // ignored by HFS+
		}
		return r
	}, name)
	if i := strings.IndexByte(n, ':'); i >= 0 { // NTFS alternate data stream
		n = n[:i]
	}
	n = strings.TrimRight(n, ". ")
	return strings.EqualFold(n, ".git") || strings.EqualFold(n, "git~1")
}

// badf builds the error constructor of one tree.
func badf(p string, id plumbing.Hash) func(format string, a ...any) error {
	return func(format string, a ...any) error {
		return &Error{Path: p, Kind: "tree", ID: id.String(), Msg: fmt.Sprintf(format, a...), Err: ErrInvalidTree}
	}
}
