package storecopy

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/storepath"
)

// PathInfoer answers path info queries (a Daemon does).
type PathInfoer interface {
	QueryPathInfos(ctx context.Context, paths []string) ([]*daemon.PathInfo, error)
}

// Local is a Source that reads NARs straight from the files of a store on
// this machine (the store directory is world-readable) and asks Infos,
// the store's daemon, for path infos. It spares the daemon a process's
// worth of work per NAR; the destination checks every NAR against the
// hash the daemon gave, so a file changed behind Nix's back is refused.
type Local struct {
	Infos PathInfoer
	// StoreDir is the logical store directory, "/nix/store" when empty.
	StoreDir string
	// RealDir is where its files are ("DIR/nix/store" for a chroot
	// store), StoreDir when empty.
	RealDir string
}

// QueryPathInfos implements Source.
func (l Local) QueryPathInfos(ctx context.Context, paths []string) ([]*daemon.PathInfo, error) {
	return l.Infos.QueryPathInfos(ctx, paths)
}

// NarsFromPaths implements Source: it serialises each path as Nix does
// (nix-store --dump), reading files only as each reads the NAR.
func (l Local) NarsFromPaths(ctx context.Context, infos []*daemon.PathInfo, each func(int, io.Reader) error) error {
	for i, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := l.OpenNar(ctx, info)
		if err != nil {
			return err
		}
		err = each(i, r)
		r.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// OpenNar implements NarOpener: the NAR of info.Path, read from its files
// as it is read.
func (l Local) OpenNar(_ context.Context, info *daemon.PathInfo) (io.ReadCloser, error) {
	storeDir, realDir := storepath.Dirs(l.StoreDir, l.RealDir)
	base, ok := strings.CutPrefix(info.Path, storeDir+"/")
	if !ok || base == "" || strings.Contains(base, "/") || base == ".." || base == "." {
		return nil, fmt.Errorf("%s is not a path of the store %s", info.Path, storeDir)
	}
	r, err := NewNARReader(filepath.Join(realDir, base))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", info.Path, err)
	}
	return r, nil
}

// NARReader reads the NAR serialisation of a file tree. The tree's shape
// is read when it is made; file contents are read as the NAR is.
type NARReader struct {
	segs []narSegment
	cur  *rawFile
	left int64 // bytes of cur still to read
}

// narSegment is literal NAR bytes, or a file's contents (path, size)
// followed by its padding.
type narSegment struct {
	data []byte
	path string
	size int64
}

// NewNARReader walks the tree at path and returns a reader of its NAR,
// byte for byte what `nix-store --dump` writes: directory entries sorted
// by name, the executable bit of regular files, symlink targets. A file
// whose size changes before it is read is an error of Read.
func NewNARReader(path string) (*NARReader, error) {
	var b narBuilder
	b.str("nix-archive-1")
	if err := b.node(path); err != nil {
		return nil, err
	}
	b.cut()
	return &NARReader{segs: b.segs}, nil
}

// Read implements io.Reader.
func (r *NARReader) Read(p []byte) (int, error) {
	for len(r.segs) > 0 {
		s := &r.segs[0]
		if s.path == "" {
			if len(s.data) == 0 {
				r.segs = r.segs[1:]
				continue
			}
			n := copy(p, s.data)
			s.data = s.data[n:]
			return n, nil
		}
		if r.cur == nil {
			f, err := openRaw(s.path)
			if err != nil {
				return 0, err
			}
			r.cur, r.left = f, s.size
		}
		if r.left == 0 {
			var one [1]byte
			k, _ := r.cur.Read(one[:])
			r.cur.Close()
			r.cur = nil
			if k > 0 {
				return 0, fmt.Errorf("%s grew while it was read", s.path)
			}
			s.path = "" // done; its padding is the next segment
			continue
		}
		// Ask for one byte more than is left: a short read that ends the
		// file spares the read that would check it does not go on.
		want := min(int64(len(p)), r.left+1)
		n, err := r.cur.Read(p[:want])
		if int64(n) > r.left {
			return 0, fmt.Errorf("%s grew while it was read", s.path)
		}
		r.left -= int64(n)
		if err == io.EOF && r.left > 0 {
			return n, fmt.Errorf("%s shrank while it was read", s.path)
		}
		if err != nil && err != io.EOF {
			return n, err
		}
		if r.left == 0 && int64(n) < want {
			r.cur.Close() // a short read of a regular file: its end
			r.cur = nil
			s.path = ""
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, io.EOF
}

// Close closes the file being read, if any.
func (r *NARReader) Close() error {
	if r.cur != nil {
		return r.cur.Close()
	}
	return nil
}

// narBuilder collects the segments of a NAR.
type narBuilder struct {
	segs []narSegment
	buf  []byte
}

func (b *narBuilder) u64(n uint64) { b.buf = binary.LittleEndian.AppendUint64(b.buf, n) }

func (b *narBuilder) pad(n uint64) {
	if r := n % 8; r != 0 {
		b.buf = append(b.buf, make([]byte, 8-r)...)
	}
}

func (b *narBuilder) str(s string) {
	b.u64(uint64(len(s)))
	b.buf = append(b.buf, s...)
	b.pad(uint64(len(s)))
}

// cut ends the current literal segment.
func (b *narBuilder) cut() {
	if len(b.buf) > 0 {
		b.segs = append(b.segs, narSegment{data: b.buf})
		b.buf = nil
	}
}

func (b *narBuilder) node(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	b.str("(")
	b.str("type")
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		b.str("symlink")
		b.str("target")
		b.str(target)
	case fi.Mode().IsRegular():
		b.str("regular")
		if fi.Mode()&0o100 != 0 {
			b.str("executable")
			b.str("")
		}
		b.str("contents")
		b.u64(uint64(fi.Size()))
		if fi.Size() > 0 {
			b.cut()
			b.segs = append(b.segs, narSegment{path: p, size: fi.Size()})
		}
		b.pad(uint64(fi.Size()))
	case fi.IsDir():
		b.str("directory")
		entries, err := os.ReadDir(p) // sorted by name, bytewise, as Nix sorts
		if err != nil {
			return err
		}
		for _, e := range entries {
			b.str("entry")
			b.str("(")
			b.str("name")
			b.str(e.Name())
			b.str("node")
			if err := b.node(filepath.Join(p, e.Name())); err != nil {
				return err
			}
			b.str(")")
		}
	default:
		return fmt.Errorf("%s: a %s, which a store path cannot hold", p, fi.Mode().Type())
	}
	b.str(")")
	return nil
}

// rawFile reads a regular file with plain system calls: os.File would
// try to register every file with the network poller (and set it
// non-blocking and back), which costs more system calls than reading a
// small file does. O_NOFOLLOW: a file the walk saw as regular and that
// became a symlink since is an error, not followed.
type rawFile struct {
	fd   int
	name string
}

func openRaw(name string) (*rawFile, error) {
	for {
		fd, err := syscall.Open(name, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: name, Err: err}
		}
		return &rawFile{fd: fd, name: name}, nil
	}
}

func (f *rawFile) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := syscall.Read(f.fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, &os.PathError{Op: "read", Path: f.name, Err: err}
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func (f *rawFile) Close() error { return syscall.Close(f.fd) }
