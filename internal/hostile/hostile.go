// Package hostile builds crafted registry repositories with real git
// plumbing (git hash-object --literally, git commit-tree, git fast-import),
// for tests and for scripts/hostile.sh: trees that git itself would never
// write (entries named ".", "..", ".git", duplicated or unsorted entries,
// symlinks and gitlinks under entries/), a pack holding a blob of gigabytes
// of zeros, very deep trees and registries of a million entries.
//
// Every repository is bare, with its one commit on refs/heads/main and HEAD
// pointing there, so it can be resolved as a local repository, linted with
// `poison lint --registry DIR --rev main` or served by git daemon.
package hostile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

// Git runs git in dir with a fixed identity and dates and no user or
// system configuration, feeding it stdin (may be nil), and returns its
// trimmed standard output.
func Git(dir string, stdin io.Reader, args ...string) (string, error) {
	out, err := GitBytes(dir, stdin, args...)
	return strings.TrimSpace(string(out)), err
}

// GitBytes is Git returning standard output as it is.
func GitBytes(dir string, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=Hostile", "GIT_AUTHOR_EMAIL=hostile@example.com",
		"GIT_COMMITTER_NAME=Hostile", "GIT_COMMITTER_EMAIL=hostile@example.com",
		"GIT_AUTHOR_DATE=2026-11-20T12:00:00Z", "GIT_COMMITTER_DATE=2026-11-20T12:00:00Z",
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// Repo is a bare repository under construction.
type Repo struct {
	Dir string // the bare git directory
}

// Init creates a bare repository in dir (which must not exist or be empty)
// with HEAD on refs/heads/main.
func Init(dir string) (*Repo, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if _, err := Git(dir, nil, "init", "-q", "--bare", "-b", "main", "."); err != nil {
		return nil, err
	}
	return &Repo{Dir: dir}, nil
}

// Blob writes data as a blob and returns its id.
func (r *Repo) Blob(data []byte) (string, error) {
	return Git(r.Dir, bytes.NewReader(data), "hash-object", "-w", "--stdin")
}

// BlobFrom writes the content of rd as a blob (streamed, for large blobs)
// and returns its id.
func (r *Repo) BlobFrom(rd io.Reader) (string, error) {
	return Git(r.Dir, rd, "hash-object", "-w", "--stdin")
}

// TreeEntry is one raw entry of a tree object.
type TreeEntry struct {
	Mode string // octal as git writes it: 100644, 100755, 120000, 160000, 40000
	Name string // any bytes but NUL
	ID   string // 40 hex digits
}

// File, Dir, Exec, Symlink and Gitlink are the usual tree entry modes.
const (
	File    = "100644"
	Exec    = "100755"
	Symlink = "120000"
	Gitlink = "160000"
	Dir     = "40000"
)

// RawTree writes a tree object of exactly these entries, in this order,
// with git hash-object --literally (no validation, no sorting), and returns
// its id.
func (r *Repo) RawTree(entries []TreeEntry) (string, error) {
	var b bytes.Buffer
	for _, e := range entries {
		id, err := hex.DecodeString(e.ID)
		if err != nil || len(id) != 20 {
			return "", fmt.Errorf("tree entry %q: bad id %q", e.Name, e.ID)
		}
		b.WriteString(e.Mode)
		b.WriteByte(' ')
		b.WriteString(e.Name)
		b.WriteByte(0)
		b.Write(id)
	}
	return Git(r.Dir, &b, "hash-object", "-t", "tree", "--literally", "-w", "--stdin")
}

// Tree writes a tree of entries in git's order (directories sort as if
// their name ended in "/").
func (r *Repo) Tree(entries []TreeEntry) (string, error) {
	sorted := append([]TreeEntry(nil), entries...)
	SortEntries(sorted)
	return r.RawTree(sorted)
}

// SortEntries sorts tree entries in git's order.
func SortEntries(es []TreeEntry) {
	key := func(e TreeEntry) string {
		if e.Mode == Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.SliceStable(es, func(i, j int) bool { return key(es[i]) < key(es[j]) })
}

// Commit commits tree on refs/heads/main (with the current tip as parent,
// if any) and returns the commit id.
func (r *Repo) Commit(tree, msg string) (string, error) {
	args := []string{"commit-tree", tree, "-m", msg}
	if tip, err := Git(r.Dir, nil, "rev-parse", "-q", "--verify", "refs/heads/main"); err == nil && tip != "" {
		args = append(args, "-p", tip)
	}
	c, err := Git(r.Dir, nil, args...)
	if err != nil {
		return "", err
	}
	if _, err := Git(r.Dir, nil, "update-ref", "refs/heads/main", c); err != nil {
		return "", err
	}
	return c, nil
}

// Config is the registry.toml of the built registries.
const Config = "env = \"POISON_SERIAL\"\nstore-dir = \"/nix/store\"\n"

const nixbase32 = "0123456789abcdfghijklmnpqrsvwxyz"

// StoreHash returns a deterministic 32-character nixbase32 hash part.
func StoreHash(seed string) string {
	h := sha256.Sum256([]byte(seed))
	b := make([]byte, 32)
	for i := range b {
		b[i] = nixbase32[h[i]%32]
	}
	return string(b)
}

// Drv is the .drv path of the generated derivation called name.
func Drv(name string) string { return "/nix/store/" + StoreHash("drv"+name) + "-" + name + ".drv" }

// Out is the output path of the generated derivation called name.
func Out(name string) string { return "/nix/store/" + StoreHash("out"+name) + "-" + name }

// Entry returns a small valid entry poisoning the derivation called name
// (one .drv, one output).
func Entry(name string) []byte {
	return []byte(fmt.Sprintf("reason = \"generated incident %s\"\nauthor = \"Test <test@example.com>\"\ndate = 2026-11-20\n\n[[derivation]]\npath = %q\noutputs = [%q]\n",
		name, Drv(name), Out(name)))
}

// base holds the ids of the parts every crafted registry shares: a valid
// registry.toml and entries/2026/11/{a,b}.toml.
type base struct {
	config, a, b string // blobs
	month        string // tree of a.toml and b.toml
}

func (r *Repo) base() (base, error) {
	var bs base
	var err error
	if bs.config, err = r.Blob([]byte(Config)); err != nil {
		return bs, err
	}
	if bs.a, err = r.Blob(Entry("a-1.0")); err != nil {
		return bs, err
	}
	if bs.b, err = r.Blob(Entry("b-1.0")); err != nil {
		return bs, err
	}
	bs.month, err = r.Tree([]TreeEntry{{File, "a.toml", bs.a}, {File, "b.toml", bs.b}})
	return bs, err
}

// commitEntries commits a root of registry.toml and the given entries/
// tree.
func (r *Repo) commitEntries(bs base, entries string) (string, error) {
	root, err := r.Tree([]TreeEntry{{File, "registry.toml", bs.config}, {Dir, "entries", entries}})
	if err != nil {
		return "", err
	}
	return r.Commit(root, "crafted registry")
}

// commitYear commits entries/2026 as a raw tree of year.
func (r *Repo) commitYear(bs base, year []TreeEntry) (string, error) {
	y, err := r.RawTree(year)
	if err != nil {
		return "", err
	}
	e, err := r.Tree([]TreeEntry{{Dir, "2026", y}})
	if err != nil {
		return "", err
	}
	return r.commitEntries(bs, e)
}

// Kinds lists the crafted registries Build makes, with what each holds.
var Kinds = map[string]string{
	"valid":      "a valid registry of two entries (the baseline)",
	"zipbomb":    "entries/2026/11/bomb.toml: a blob of SIZE zero bytes (default 2 GiB) in a pack of a few MB",
	"dot":        `entries/2026 holds a tree named "." (pointing at entries/2026/11)`,
	"dotdot":     `entries holds a tree named ".." pointing at the root tree (a cycle)`,
	"dotgit":     `entries/.git: a tree named ".git"`,
	"dotgitcase": `entries/.GiT: ".git" in another case`,
	"dotgitntfs": `entries/git~1: the NTFS short name of ".git"`,
	"dotgithfs":  `entries/.g\u200cit: ".git" with an HFS+-ignored character`,
	"empty":      "entries/2026/11 holds an entry with an empty name",
	"slash":      `entries/2026/11 holds an entry named "x/y.toml"`,
	"duplicate":  `entries holds "2026" twice (the same subtree): every serial below would double`,
	"unsorted":   "entries/2026/11 lists b.toml before a.toml",
	"symlink":    "entries/2026/11/link.toml is a symbolic link (mode 120000)",
	"gitlink":    "entries/2026/11/sub is a submodule (mode 160000)",
	"executable": "entries/2026/11/x.toml is executable (mode 100755)",
	"badmode":    "entries/2026/11/x.toml has mode 100664",
	"deep":       "entries nested SIZE directories deep (default 100000)",
	"treebomb":   "entries/2026/11 is a loose tree object of SIZE bytes (default 1 GiB) of zeros",
	"many":       "SIZE valid small entries (default 1000000), written with git fast-import",
	"looselie":   "entries/2026/11/lie.toml is a loose blob whose header says 16 bytes and which holds SIZE (default 1 GiB) zeros",
	"packlie":    "entries/2026/11/lie.toml is a packed blob whose header says 16 bytes and which holds SIZE (default 1 GiB) zeros",
	"deltalie":   "entries/2026/11/lie.toml is a packed delta that declares 16 bytes and inserts SIZE (default 100000) zeros",
}

// Build creates the crafted registry KIND (see Kinds) as a bare repository
// in dir. size parameterises zipbomb, deep, treebomb and many (0 for the
// default).
func Build(dir, kind string, size int64) error {
	if _, ok := Kinds[kind]; !ok {
		return fmt.Errorf("unknown kind %q", kind)
	}
	if kind == "many" {
		if size <= 0 {
			size = 1000000
		}
		return Many(dir, int(size))
	}
	r, err := Init(dir)
	if err != nil {
		return err
	}
	bs, err := r.base()
	if err != nil {
		return err
	}
	month := TreeEntry{Dir, "11", bs.month}
	withMonthFile := func(extra TreeEntry) error {
		es := []TreeEntry{{File, "a.toml", bs.a}, {File, "b.toml", bs.b}, extra}
		SortEntries(es)
		_, err := r.commitYear(bs, []TreeEntry{{Dir, "11", mustTree(r, es)}})
		return err
	}
	switch kind {
	case "valid":
		_, err = r.commitYear(bs, []TreeEntry{month})
	case "zipbomb":
		if size <= 0 {
			size = 2 << 30
		}
		id, err2 := r.BlobFrom(io.LimitReader(zeroReader{}, size))
		if err2 != nil {
			return err2
		}
		if err = withMonthFile(TreeEntry{File, "bomb.toml", id}); err == nil {
			_, err = Git(r.Dir, nil, "repack", "-a", "-d", "-q")
		}
	case "dot":
		_, err = r.commitYear(bs, []TreeEntry{{Dir, ".", bs.month}, month})
	case "dotdot":
		// The root is only known once entries/ is: point ".." at a root
		// tree of the same shape (registry.toml and an entries/ of the
		// valid months), which is as good a cycle for a naive walker.
		y, _ := r.Tree([]TreeEntry{month})
		e, _ := r.Tree([]TreeEntry{{Dir, "2026", y}})
		root, err2 := r.Tree([]TreeEntry{{File, "registry.toml", bs.config}, {Dir, "entries", e}})
		if err2 != nil {
			return err2
		}
		ents, err2 := r.RawTree([]TreeEntry{{Dir, "..", root}, {Dir, "2026", y}})
		if err2 != nil {
			return err2
		}
		_, err = r.commitEntries(bs, ents)
	case "dotgit", "dotgitcase", "dotgitntfs", "dotgithfs":
		name := map[string]string{"dotgit": ".git", "dotgitcase": ".GiT", "dotgitntfs": "git~1", "dotgithfs": ".g\u200cit"}[kind]
		y, _ := r.Tree([]TreeEntry{month})
		hooks, _ := r.Tree([]TreeEntry{{File, "config", bs.a}})
		ents, err2 := r.Tree([]TreeEntry{{Dir, name, hooks}, {Dir, "2026", y}})
		if err2 != nil {
			return err2
		}
		_, err = r.commitEntries(bs, ents)
	case "empty":
		err = withMonthFile(TreeEntry{File, "", bs.a})
	case "slash":
		err = withMonthFile(TreeEntry{File, "x/y.toml", bs.a})
	case "duplicate":
		y, _ := r.Tree([]TreeEntry{month})
		ents, err2 := r.RawTree([]TreeEntry{{Dir, "2026", y}, {Dir, "2026", y}})
		if err2 != nil {
			return err2
		}
		_, err = r.commitEntries(bs, ents)
	case "unsorted":
		_, err = r.commitYear(bs, []TreeEntry{{Dir, "11", mustRawTree(r, []TreeEntry{{File, "b.toml", bs.b}, {File, "a.toml", bs.a}})}})
	case "symlink":
		target, _ := r.Blob([]byte("a.toml"))
		err = withMonthFile(TreeEntry{Symlink, "link.toml", target})
	case "gitlink":
		err = withMonthFile(TreeEntry{Gitlink, "sub", strings.Repeat("ab", 20)})
	case "executable":
		err = withMonthFile(TreeEntry{Exec, "x.toml", bs.a})
	case "badmode":
		err = withMonthFile(TreeEntry{"100664", "x.toml", bs.a})
	case "deep":
		if size <= 0 {
			size = 100000
		}
		t := bs.month
		for i := int64(0); i < size; i++ {
			if t, err = r.RawTree([]TreeEntry{{Dir, "d", t}}); err != nil {
				return err
			}
		}
		_, err = r.commitEntries(bs, t)
	case "looselie", "packlie", "deltalie":
		if size <= 0 {
			size = 1 << 30
			if kind == "deltalie" {
				size = 100000
			}
		}
		small := make([]byte, 16)
		id := hashOf("blob", small)
		switch kind {
		case "looselie":
			err = r.LooseObject(id, "blob", 16, io.LimitReader(zeroReader{}, size))
		case "packlie":
			_, err = r.WritePack([]PackObject{{ID: id, Type: 3, Size: 16, Data: io.LimitReader(zeroReader{}, size)}})
		case "deltalie":
			d := DeltaInserts(16, 16, size)
			baseID := hashOf("blob", []byte("base"))
			_, err = r.WritePack([]PackObject{
				{ID: baseID, Type: 3, Size: 16, Data: bytes.NewReader(small)},
				{ID: id, Type: 6, Size: int64(len(d)), Data: bytes.NewReader(d)},
			})
		}
		if err == nil {
			err = withMonthFile(TreeEntry{File, "lie.toml", id})
		}
	case "treebomb":
		if size <= 0 {
			size = 1 << 30
		}
		t, err2 := Git(r.Dir, io.LimitReader(zeroReader{}, size), "hash-object", "-t", "tree", "--literally", "-w", "--stdin")
		if err2 != nil {
			return err2
		}
		// A loose object: git repack refuses to pack a malformed tree.
		_, err = r.commitYear(bs, []TreeEntry{{Dir, "11", t}})
	}
	return err
}

func mustTree(r *Repo, es []TreeEntry) string {
	id, err := r.Tree(es)
	if err != nil {
		panic(err)
	}
	return id
}

func mustRawTree(r *Repo, es []TreeEntry) string {
	id, err := r.RawTree(es)
	if err != nil {
		panic(err)
	}
	return id
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// ManyPath is where Many puts entry i.
func ManyPath(i int) string {
	return fmt.Sprintf("entries/2026/%02d/incident-%07d.toml", i%12+1, i)
}

// ManyName is the derivation name of Many's entry i.
func ManyName(i int) string { return fmt.Sprintf("pkg%d-1.%d", i, i%13) }

// Many creates a bare registry repository in dir of n small valid entries
// (ManyPath, Entry(ManyName(i))) in one commit: the blobs are written into
// one pack by git fast-import, the trees by git mktree.
func Many(dir string, n int) error {
	r, err := Init(dir)
	if err != nil {
		return err
	}
	marks := dir + "/many-marks"
	defer os.Remove(marks)
	cmd := exec.Command("git", "fast-import", "--quiet", "--done", "--export-marks="+marks)
	cmd.Dir = r.Dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	w := bufio.NewWriterSize(in, 1<<20)
	for i := 0; i < n; i++ {
		b := Entry(ManyName(i))
		w.WriteString("blob\nmark :" + strconv.Itoa(i+1) + "\ndata " + strconv.Itoa(len(b)) + "\n")
		w.Write(b)
		w.WriteByte('\n')
	}
	w.WriteString("done\n")
	werr := w.Flush()
	in.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git fast-import: %v: %s", err, strings.TrimSpace(errb.String()))
	}
	if werr != nil {
		return werr
	}
	data, err := os.ReadFile(marks)
	if err != nil {
		return err
	}
	ids := make([]string, n)
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		mark, id, ok := strings.Cut(line, " ")
		if !ok || len(mark) < 2 {
			continue
		}
		k, err := strconv.Atoi(mark[1:])
		if err != nil || k < 1 || k > n {
			return fmt.Errorf("git fast-import: bad mark line %q", line)
		}
		ids[k-1] = id
	}
	var months [12]bytes.Buffer
	for i := 0; i < n; i++ {
		p := ManyPath(i)
		fmt.Fprintf(&months[i%12], "100644 blob %s\t%s\n", ids[i], p[strings.LastIndexByte(p, '/')+1:])
	}
	var year bytes.Buffer
	for m := range months {
		if months[m].Len() == 0 {
			continue
		}
		t, err := Git(r.Dir, &months[m], "mktree")
		if err != nil {
			return err
		}
		fmt.Fprintf(&year, "040000 tree %s\t%02d\n", t, m+1)
	}
	y, err := Git(r.Dir, &year, "mktree")
	if err != nil {
		return err
	}
	cfg, err := r.Blob([]byte(Config))
	if err != nil {
		return err
	}
	e, err := r.Tree([]TreeEntry{{Dir, "2026", y}})
	if err != nil {
		return err
	}
	root, err := r.Tree([]TreeEntry{{File, "registry.toml", cfg}, {Dir, "entries", e}})
	if err != nil {
		return err
	}
	if _, err := r.Commit(root, "many entries"); err != nil {
		return err
	}
	_, err = Git(r.Dir, nil, "repack", "-a", "-d", "-q")
	return err
}
