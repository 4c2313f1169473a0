package gittree_test

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/poison-nix/poison/registry/gittree"
)

// fuzzStore serves the trees of a fuzz input under made-up ids: tree i
// is the object whose id is i followed by nineteen zero bytes, so that
// the fuzzer can point entries at trees (itself, an ancestor: cycles) and
// at objects that do not exist.
type fuzzStore struct {
	*memory.ObjectStorage
	objs map[plumbing.Hash]plumbing.EncodedObject
}

func (s fuzzStore) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	if o, ok := s.objs[h]; ok && (t == plumbing.AnyObject || t == o.Type()) {
		return o, nil
	}
	return nil, plumbing.ErrObjectNotFound
}

func (s fuzzStore) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	if o, ok := s.objs[h]; ok {
		return o.Size(), nil
	}
	return 0, plumbing.ErrObjectNotFound
}

func fuzzID(i int) plumbing.Hash {
	var h plumbing.Hash
	h[0] = byte(i)
	return h
}

// fuzzSep separates the trees of a fuzz input; the first is the root.
var fuzzSep = []byte("\xff\xfe\xfd")

// rawTree encodes tree entries; an id of one byte i names tree i.
func rawTree(entries ...[3]string) []byte {
	var b bytes.Buffer
	for _, e := range entries {
		b.WriteString(e[0] + " " + e[1] + "\x00")
		id := make([]byte, 20)
		copy(id, e[2])
		b.Write(id)
	}
	return b.Bytes()
}

func fuzzInput(trees ...[]byte) []byte { return bytes.Join(trees, fuzzSep) }

// FuzzWalk walks a file system of fuzzed trees. Whatever the trees hold,
// the walk ends (no recursion input can drive, limits on entries and
// depth), every error is one line of valid UTF-8, and every directory
// listed holds only names git fsck accepts, sorted and unique.
func FuzzWalk(f *testing.F) {
	blob := "\x07" // a missing object: reading it fails, listing it does not
	f.Add(fuzzInput(rawTree([3]string{"100644", "a.toml", blob}, [3]string{"40000", "d", "\x01"}), rawTree([3]string{"100644", "b.toml", blob})))
	f.Add(fuzzInput(rawTree([3]string{"40000", ".", "\x00"})))
	f.Add(fuzzInput(rawTree([3]string{"40000", "..", "\x00"})))
	f.Add(fuzzInput(rawTree([3]string{"40000", ".git", "\x01"}), rawTree()))
	f.Add(fuzzInput(rawTree([3]string{"40000", ".GIT", "\x01"}), rawTree()))
	f.Add(fuzzInput(rawTree([3]string{"40000", "d", "\x01"}, [3]string{"40000", "d", "\x01"}), rawTree([3]string{"100644", "x", blob})))
	f.Add(fuzzInput(rawTree([3]string{"100644", "b", blob}, [3]string{"100644", "a", blob})))
	f.Add(fuzzInput(rawTree([3]string{"100644", "a", blob}, [3]string{"40000", "a", "\x01"}), rawTree()))
	f.Add(fuzzInput(rawTree([3]string{"100664", "a", blob}, [3]string{"160000", "s", blob}, [3]string{"120000", "l", blob})))
	f.Add(fuzzInput(rawTree([3]string{"40000", "d", "\x01"}), rawTree([3]string{"40000", "d", "\x01"}))) // a cycle: deep
	f.Add(fuzzInput(rawTree([3]string{"100644", "new\nline.toml", blob}, [3]string{"40000", "x\xffy", "\x01"}), rawTree([3]string{"40000", "..", "\x00"})))
	f.Add(fuzzInput(rawTree([3]string{"100644", "", blob})))
	f.Add(fuzzInput([]byte("100644 trunc")))
	f.Fuzz(func(t *testing.T, data []byte) {
		parts := bytes.Split(data, fuzzSep)
		if len(parts) > 64 {
			parts = parts[:64]
		}
		st := fuzzStore{ObjectStorage: &memory.NewStorage().ObjectStorage, objs: map[plumbing.Hash]plumbing.EncodedObject{}}
		for i, p := range parts {
			o := &plumbing.MemoryObject{}
			o.SetType(plumbing.TreeObject)
			o.Write(p)
			st.objs[fuzzID(i)] = o
		}
		fsys := gittree.New(st, fuzzID(0), gittree.Limits{Entries: 5000, Depth: 16, TreeSize: 1 << 20, FileSize: 1 << 10})
		oneLine := func(err error) {
			t.Helper()
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r") || !utf8.ValidString(msg) {
				t.Fatalf("error is not one line of UTF-8: %q", msg)
			}
		}
		// An iterative walk: the stack is bounded by the depth limit.
		stack := []string{"."}
		for steps := 0; len(stack) > 0; steps++ {
			if steps > 10000 {
				t.Fatal("walk does not end")
			}
			dir := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			ents, err := fsys.ReadDir(dir)
			if err != nil {
				oneLine(err)
				continue
			}
			prev := ""
			for i, e := range ents {
				n := e.Name()
				if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00") || strings.EqualFold(n, ".git") {
					t.Fatalf("ReadDir(%q) lists %q", dir, n)
				}
				if i > 0 && n <= prev {
					t.Fatalf("ReadDir(%q): %q after %q", dir, n, prev)
				}
				prev = n
				p := n
				if dir != "." {
					p = dir + "/" + n
				}
				if e.IsDir() {
					stack = append(stack, p)
				} else if e.Type().IsRegular() {
					if _, err := fsys.ReadFile(p); err != nil {
						oneLine(err)
					}
				}
				if _, err := fsys.Stat(p); err != nil {
					oneLine(err)
				}
			}
		}
	})
}
