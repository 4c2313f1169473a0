package gitnet

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha1"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/poison-nix/poison/internal/hostile"
)

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// TestPackObjectLimit fetches packs holding an object above the limit
// (a blob, and a delta whose base is small but whose result is not) and
// checks that the fetch refuses them before unpacking, storing nothing,
// while a pack within the limit is stored.
func TestPackObjectLimit(t *testing.T) {
	const max = 1 << 20
	rnd := rand.New(rand.NewSource(1))
	base := make([]byte, 600<<10)
	rnd.Read(base)
	cases := []struct {
		name    string
		files   [][]byte // one commit each
		refused plumbing.ObjectType
	}{
		{"within the limit", [][]byte{base}, plumbing.InvalidObject},
		{"zero blob above the limit", [][]byte{make([]byte, 3*max)}, plumbing.BlobObject},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			work := filepath.Join(tmp, "work")
			os.MkdirAll(work, 0o755)
			git(t, work, "init", "-q", "-b", "main")
			for i, data := range c.files {
				if err := os.WriteFile(filepath.Join(work, "big"), data, 0o644); err != nil {
					t.Fatal(err)
				}
				git(t, work, "add", "-A")
				git(t, work, "commit", "-q", "-m", string(rune('a'+i)))
			}
			git(t, tmp, "clone", "-q", "--bare", work, "srv.git")
			git(t, filepath.Join(tmp, "srv.git"), "repack", "-adq", "--window=10")
			clone := filepath.Join(tmp, "clone")
			st := filesystem.NewStorage(osfs.New(clone), cache.NewObjectLRU(cache.MiByte))
			_, err := Fetch(context.Background(), st, "file://"+filepath.Join(tmp, "srv.git"), Config{MaxObject: max, TempDir: clone})
			var te *ObjectTooLargeError
			if c.refused == plumbing.InvalidObject {
				if err != nil {
					t.Fatalf("fetch: %v", err)
				}
				return
			}
			if !errors.As(err, &te) || te.Type != c.refused || te.Size <= max {
				t.Fatalf("fetch: %v, want an ObjectTooLargeError for a %s", err, c.refused)
			}
			packs, _ := filepath.Glob(filepath.Join(clone, "objects", "pack", "*"))
			left, _ := filepath.Glob(filepath.Join(clone, "poison-pack-*"))
			if len(packs)+len(left) > 0 {
				t.Errorf("a refused pack left files: %v %v", packs, left)
			}
		})
	}
}

// TestCheckPackDelta checks a hand-made pack (git never writes one: it
// deltas small objects against large ones) whose delta is 50 bytes and
// produces 3 MiB from a 64 KiB base: refused by what the delta produces.
func TestCheckPackDelta(t *testing.T) {
	const max = 1 << 20
	var pack bytes.Buffer
	pack.WriteString("PACK")
	pack.Write([]byte{0, 0, 0, 2, 0, 0, 0, 2})
	writeObj := func(typ byte, size int, prefix []byte, data []byte) {
		// type and size header
		b := byte(typ<<4) | byte(size&0x0f)
		size >>= 4
		for size > 0 {
			pack.WriteByte(b | 0x80)
			b = byte(size & 0x7f)
			size >>= 7
		}
		pack.WriteByte(b)
		pack.Write(prefix)
		zw := zlib.NewWriter(&pack)
		zw.Write(data)
		zw.Close()
	}
	base := make([]byte, 64<<10)
	baseOffset := pack.Len()
	writeObj(3, len(base), nil, base) // blob
	target := 48 * len(base)
	var delta []byte
	delta = appendVarint(delta, len(base))
	delta = appendVarint(delta, target)
	for i := 0; i < 48; i++ {
		delta = append(delta, 0x80) // copy 0x10000 bytes from offset 0
	}
	deltaOffset := pack.Len()
	writeObj(6, len(delta), ofsDeltaOffset(deltaOffset-baseOffset), delta)
	sum := sha1.Sum(pack.Bytes())
	pack.Write(sum[:])

	err := checkPack(bytes.NewReader(pack.Bytes()), max)
	var te *ObjectTooLargeError
	if !errors.As(err, &te) || te.Type != plumbing.OFSDeltaObject || te.Size != int64(target) || te.Offset != int64(deltaOffset) {
		t.Fatalf("checkPack: %v, want the delta at %d producing %d bytes refused", err, deltaOffset, target)
	}
	if err := checkPack(bytes.NewReader(pack.Bytes()), int64(target)); err != nil {
		t.Errorf("with a limit of %d: %v", target, err)
	}
}

func appendVarint(b []byte, n int) []byte {
	for n >= 0x80 {
		b = append(b, byte(n&0x7f)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}

// ofsDeltaOffset encodes a negative offset as packs do.
func ofsDeltaOffset(off int) []byte {
	b := []byte{byte(off & 0x7f)}
	for off >>= 7; off > 0; off >>= 7 {
		off--
		b = append([]byte{byte(0x80 | (off & 0x7f))}, b...)
	}
	return b
}

// TestCheckPackLie checks a hand-made pack whose blob header says 16
// bytes while its data inflates to 64 MiB of zeros: refused at the 17th
// byte, without inflating the rest.
func TestCheckPackLie(t *testing.T) {
	var pack bytes.Buffer
	pack.WriteString("PACK")
	pack.Write([]byte{0, 0, 0, 2, 0, 0, 0, 1})
	off := pack.Len()
	pack.Write([]byte{3<<4 | 0x80, 1}) // a blob of 16 bytes, it says
	zw := zlib.NewWriter(&pack)
	zw.Write(make([]byte, 64<<20))
	zw.Close()
	sum := sha1.Sum(pack.Bytes())
	pack.Write(sum[:])
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := checkPack(bytes.NewReader(pack.Bytes()), DefaultMaxObject)
	runtime.ReadMemStats(&after)
	var le *LieError
	if !errors.As(err, &le) || le.Offset != int64(off) || le.Size != 16 {
		t.Fatalf("checkPack: %v, want a LieError for the blob at %d", err, off)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
		t.Errorf("checkPack allocated %d bytes", n)
	}
}

// TestFetchLyingPack fetches, through git's own upload-pack (which serves
// packed data as it is), a blob whose header says 16 bytes over 64 MiB of
// zeros: refused without unpacking, leaving nothing in the clone.
func TestFetchLyingPack(t *testing.T) {
	tmp := t.TempDir()
	srv := filepath.Join(tmp, "srv.git")
	if err := hostile.Build(srv, "packlie", 64<<20); err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(tmp, "clone")
	st := filesystem.NewStorage(osfs.New(clone), cache.NewObjectLRU(cache.MiByte))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Fetch(context.Background(), st, "file://"+srv, Config{TempDir: clone})
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "inflates to more than the 16 bytes its header says") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("fetch: %v, want the lying object refused in one line", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 32<<20 {
		t.Errorf("the fetch allocated %d bytes", n)
	}
	packs, _ := filepath.Glob(filepath.Join(clone, "objects", "pack", "*"))
	left, _ := filepath.Glob(filepath.Join(clone, "poison-pack-*"))
	if len(packs)+len(left) > 0 {
		t.Errorf("a refused pack left files: %v %v", packs, left)
	}
}
