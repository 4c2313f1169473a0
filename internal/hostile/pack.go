package hostile

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// PackObject is one object of a crafted pack (WritePack).
type PackObject struct {
	// ID is the id the pack index lists the object under (40 hex digits):
	// any id, it is not checked against the content.
	ID string
	// Type is the pack type: 1 commit, 2 tree, 3 blob, 4 tag, or 6 for an
	// offset delta whose base is the object before it.
	Type int
	// Size is the size its header states, true or not.
	Size int64
	// Data is the content (for a delta, the delta instructions),
	// compressed as it is read.
	Data io.Reader
}

// WritePack writes objs as one pack and its version 2 index into the
// repository, exactly as given: headers that lie about sizes stay lies
// (git index-pack would refuse them). It returns the pack's file name.
func (r *Repo) WritePack(objs []PackObject) (string, error) {
	dir := filepath.Join(r.Dir, "objects", "pack")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "tmp-pack-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	sum := sha1.New()
	w := bufio.NewWriter(io.MultiWriter(tmp, sum))
	var hdr [12]byte
	copy(hdr[:], "PACK")
	binary.BigEndian.PutUint32(hdr[4:], 2)
	binary.BigEndian.PutUint32(hdr[8:], uint32(len(objs)))
	w.Write(hdr[:])
	type entry struct {
		id  []byte
		crc uint32
		off int64
	}
	ents := make([]entry, len(objs))
	off := int64(12)
	for i, o := range objs {
		id, err := hex.DecodeString(o.ID)
		if err != nil || len(id) != 20 {
			return "", fmt.Errorf("pack object %d: bad id %q", i, o.ID)
		}
		crc := crc32.NewIEEE()
		cw := &countWriter{w: io.MultiWriter(w, crc)}
		// type and size
		c := byte(o.Type<<4) | byte(o.Size&15)
		rest := o.Size >> 4
		var b []byte
		for rest > 0 {
			b = append(b, c|0x80)
			c = byte(rest & 0x7f)
			rest >>= 7
		}
		b = append(b, c)
		if o.Type == 6 {
			if i == 0 {
				return "", fmt.Errorf("pack object 0: a delta needs a base before it")
			}
			b = append(b, ofsDelta(off-ents[i-1].off)...)
		}
		cw.Write(b)
		zw, _ := zlib.NewWriterLevel(cw, zlib.BestSpeed)
		if _, err := io.Copy(zw, o.Data); err != nil {
			return "", err
		}
		if err := zw.Close(); err != nil {
			return "", err
		}
		ents[i] = entry{id: id, crc: crc.Sum32(), off: off}
		off += cw.n
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	packSum := sum.Sum(nil)
	if _, err := tmp.Write(packSum); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	sort.Slice(ents, func(i, j int) bool { return bytes.Compare(ents[i].id, ents[j].id) < 0 })
	var idx bytes.Buffer
	isum := sha1.New()
	iw := io.MultiWriter(&idx, isum)
	iw.Write([]byte{0xff, 't', 'O', 'c', 0, 0, 0, 2})
	var fan [256]uint32
	for _, e := range ents {
		for b := int(e.id[0]); b < 256; b++ {
			fan[b]++
		}
	}
	put32 := func(w io.Writer, v uint32) {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], v)
		w.Write(b[:])
	}
	for _, v := range fan {
		put32(iw, v)
	}
	for _, e := range ents {
		iw.Write(e.id)
	}
	for _, e := range ents {
		put32(iw, e.crc)
	}
	for _, e := range ents {
		if e.off >= 1<<31 {
			return "", fmt.Errorf("crafted pack larger than 2 GiB")
		}
		put32(iw, uint32(e.off))
	}
	iw.Write(packSum)
	idx.Write(isum.Sum(nil))
	name := "pack-" + hex.EncodeToString(packSum)
	if err := os.WriteFile(filepath.Join(dir, name+".idx"), idx.Bytes(), 0o444); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name+".pack")); err != nil {
		return "", err
	}
	return name + ".pack", nil
}

// ofsDelta encodes the distance back to a delta's base as git does.
func ofsDelta(rel int64) []byte {
	b := []byte{byte(rel & 0x7f)}
	for rel >>= 7; rel > 0; rel >>= 7 {
		rel--
		b = append([]byte{byte(rel&0x7f) | 0x80}, b...)
	}
	return b
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// LooseObject writes a loose object of type typ whose header states size
// but which holds the content of data (compressed as it is read), under
// id: a lie git itself would refuse to read past.
func (r *Repo) LooseObject(id, typ string, size int64, data io.Reader) error {
	if len(id) != 40 {
		return fmt.Errorf("bad id %q", id)
	}
	dir := filepath.Join(r.Dir, "objects", id[:2])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, id[2:]))
	if err != nil {
		return err
	}
	zw, _ := zlib.NewWriterLevel(f, zlib.BestSpeed)
	fmt.Fprintf(zw, "%s %d\x00", typ, size)
	_, err = io.Copy(zw, data)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// DeltaInserts returns delta instructions declaring a base of base bytes
// and a result of result bytes, followed by inserts of n zero bytes in
// all: a delta that produces more than it declares when n > result.
func DeltaInserts(base, result, n int64) []byte {
	var b []byte
	for _, v := range []int64{base, result} {
		for v >= 0x80 {
			b = append(b, byte(v)|0x80)
			v >>= 7
		}
		b = append(b, byte(v))
	}
	for n > 0 {
		k := min(n, 0x7f)
		b = append(b, byte(k))
		b = append(b, make([]byte, k)...)
		n -= k
	}
	return b
}

// hashOf returns the git id of an object of type typ and content data.
func hashOf(typ string, data []byte) string {
	var h hash.Hash = sha1.New()
	fmt.Fprintf(h, "%s %d\x00", typ, len(data))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}
