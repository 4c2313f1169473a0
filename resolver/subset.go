package resolver

import (
	"io"
	"io/fs"
	"path"
)

// subsetFS shows only some files of a tree (and the directories leading to
// them), so Load reads just the entries added since an earlier commit.
type subsetFS struct {
	base  *treeFS
	files map[string]bool
	dirs  map[string]bool
}

func newSubsetFS(base *treeFS, files []string) *subsetFS {
	s := &subsetFS{base: base, files: map[string]bool{}, dirs: map[string]bool{".": true}}
	for _, f := range files {
		s.files[f] = true
		for d := path.Dir(f); d != "."; d = path.Dir(d) {
			s.dirs[d] = true
		}
	}
	return s
}

func (s *subsetFS) visible(name string) bool { return s.files[name] || s.dirs[name] }

func (s *subsetFS) Open(name string) (fs.File, error) {
	if !s.visible(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if s.dirs[name] {
		ents, err := s.ReadDir(name)
		if err != nil {
			return nil, err
		}
		f, err := s.base.Open(name)
		if err != nil {
			return nil, err
		}
		d := f.(*treeDir)
		return &subsetDir{treeDir: d, ents: ents}, nil
	}
	return s.base.Open(name)
}

func (s *subsetFS) ReadFile(name string) ([]byte, error) {
	if !s.files[name] {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return s.base.ReadFile(name)
}

func (s *subsetFS) Stat(name string) (fs.FileInfo, error) {
	if !s.visible(name) {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return s.base.Stat(name)
}

func (s *subsetFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if !s.dirs[name] {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	all, err := s.base.ReadDir(name)
	if err != nil {
		return nil, err
	}
	var out []fs.DirEntry
	for _, e := range all {
		if s.visible(path.Join(name, e.Name())) {
			out = append(out, e)
		}
	}
	return out, nil
}

type subsetDir struct {
	*treeDir
	ents []fs.DirEntry
	off  int
}

func (d *subsetDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.ents[d.off:]
	if n <= 0 {
		d.off = len(d.ents)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.off += n
	return rest[:n], nil
}
