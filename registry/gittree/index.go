package gittree

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing"
)

// IndexError is a pack that cannot be indexed: an object over the size
// limit, one whose data does not match its header, a delta whose base is
// nowhere, a pack that is truncated or whose checksum is wrong.
type IndexError struct {
	Offset int64 // of the object in the pack; 0 for the pack as a whole
	Msg    string
	Err    error // ErrLimit, ErrCorrupt, or nil
	// Kind and Size, for ErrLimit: the object's type ("blob", ..., or
	// "ofs-delta"/"ref-delta" for delta instructions) and its size (for a
	// delta, of what it makes, when Kind is the type of that).
	Kind string
	Size int64
}

func (e *IndexError) Error() string {
	if e.Offset == 0 {
		return "pack: " + e.Msg
	}
	return fmt.Sprintf("pack object at offset %d: %s", e.Offset, e.Msg)
}

func (e *IndexError) Unwrap() error { return e.Err }

// indexEntry is one object of a pack being indexed: 48 bytes, so that a
// pack of a million objects is indexed in about 50 MB.
type indexEntry struct {
	id   plumbing.Hash
	off  int64
	crc  uint32
	typ  int8
	done bool // id known
}

// IndexPack writes the version 2 index of the pack file packPath (a pack
// as a server sends it, thin or not) into gitDir's objects/pack as
// pack-SUM.idx next to the pack, moved there as pack-SUM.pack, and returns
// SUM. Every object is inflated at most to the size its header states and
// at most maxObject bytes (deltas: their result), and ids are computed
// from the content. Delta bases outside the pack are looked up in the
// packs of gitDir (a thin pack). The memory it needs is about 50 bytes
// per object, plus the delta base cache.
//
// The pack is moved into place before its index is written: readers find
// packs by their index, so they never see one half there.
func IndexPack(gitDir, packPath string, maxObject int64) (string, error) {
	data, unmap, err := mapFile(packPath)
	if err != nil {
		return "", err
	}
	defer unmap()
	p := &pack{name: filepath.Base(packPath), data: data, size: int64(len(data))}
	if len(data) < 32 || !bytes.Equal(data[:4], []byte("PACK")) {
		return "", &IndexError{Msg: "not a pack file", Err: ErrCorrupt}
	}
	if v := binary.BigEndian.Uint32(data[4:]); v != 2 && v != 3 {
		return "", &IndexError{Msg: fmt.Sprintf("version %d, not 2 or 3", v), Err: ErrCorrupt}
	}
	sum := sha1.Sum(data[:len(data)-20])
	if !bytes.Equal(sum[:], data[len(data)-20:]) {
		return "", &IndexError{Msg: "its checksum does not match its content (truncated or corrupt)", Err: ErrCorrupt}
	}
	n := int64(binary.BigEndian.Uint32(data[8:]))
	if n > (p.size-32)/9 { // an object takes at least 9 bytes (1 of header, 8 of zlib)
		return "", &IndexError{Msg: fmt.Sprintf("claims %d objects in %d bytes", n, p.size), Err: ErrCorrupt}
	}
	// Grown as objects are found, not as the header claims.
	ents := make([]indexEntry, 0, min(n, p.size/64+1))
	var br bytes.Reader
	var zr io.ReadCloser
	h := sha1.New()
	off := int64(12)
	for i := int64(0); i < n; i++ {
		if i%dropEvery == dropEvery-1 {
			dropPages(data)
		}
		if off >= p.size-20 {
			return "", &IndexError{Msg: fmt.Sprintf("ends after %d of its %d objects", i, n), Err: ErrCorrupt}
		}
		hd, err := p.header(off)
		if err != nil {
			return "", &IndexError{Offset: off, Msg: err.Error(), Err: ErrCorrupt}
		}
		ents = append(ents, indexEntry{off: off, typ: int8(hd.typ)})
		e := &ents[len(ents)-1]
		delta := hd.typ == objOFSDelta || hd.typ == objREFDelta
		limit := maxObject
		if delta {
			limit = 2*maxObject + 1024 // see reader.packed
		}
		if hd.size > limit {
			kind := typeNames[min(hd.typ, objTag)]
			switch hd.typ {
			case objOFSDelta:
				kind = "ofs-delta"
			case objREFDelta:
				kind = "ref-delta"
			}
			return "", &IndexError{Offset: off, Msg: fmt.Sprintf("is %s, more than the limit of %s", size(hd.size), size(limit)), Err: ErrLimit, Kind: kind, Size: hd.size}
		}
		br.Reset(data[hd.dataOff : p.size-20])
		if zr == nil {
			zr, err = zlib.NewReader(&br)
		} else {
			err = zr.(zlib.Resetter).Reset(&br, nil)
		}
		if err != nil {
			zr = nil
			return "", &IndexError{Offset: off, Msg: "inflate: " + err.Error(), Err: ErrCorrupt}
		}
		var w io.Writer = io.Discard
		if !delta {
			h.Reset()
			h.Write(strconv.AppendInt(append([]byte(typeNames[hd.typ]), ' '), hd.size, 10))
			h.Write([]byte{0})
			w = h
		}
		if err := copyExactly(w, zr, hd.size); err != nil {
			return "", &IndexError{Offset: off, Msg: err.Error(), Err: ErrCorrupt}
		}
		if !delta {
			h.Sum(e.id[:0])
			e.done = true
		}
		next := p.size - 20 - int64(br.Len())
		e.crc = crc32.ChecksumIEEE(data[off:next])
		off = next
	}
	if off != p.size-20 {
		return "", &IndexError{Msg: fmt.Sprintf("%d bytes after its last object", p.size-20-off), Err: ErrCorrupt}
	}
	// Resolve deltas: a pass per level of bases found through ids (a base
	// referred to by id within the pack is known once its own chain is).
	external := OpenObjects(gitDir)
	defer external.Close()
	for pending := true; pending; {
		pending = false
		p.idx = buildIdx(ents, sum[:], true)
		if err := p.parseIdx(); err != nil {
			return "", err
		}
		rd := newReader(external, append([]*pack{p}, external.packList()...))
		progress := false
		for i := range ents {
			e := &ents[i]
			if e.done {
				continue
			}
			if i%dropEvery == dropEvery-1 {
				dropPages(data)
			}
			typ, content, err := rd.packed(location{0, e.off}, maxObject)
			var big *tooLarge
			var bad *corrupt
			switch {
			case errors.As(err, &big):
				return "", &IndexError{Offset: e.off, Msg: fmt.Sprintf("is a delta of %s, more than the limit of %s", size(big.size), size(maxObject)), Err: ErrLimit,
					Kind: map[int8]string{objOFSDelta: "ofs-delta", objREFDelta: "ref-delta"}[e.typ], Size: big.size}
			case errors.As(err, &bad):
				return "", &IndexError{Offset: e.off, Msg: bad.Error(), Err: ErrCorrupt}
			case err != nil:
				pending = true // a base not known yet (or missing)
				continue
			}
			h.Reset()
			h.Write(strconv.AppendInt(append([]byte(typeNames[typ]), ' '), int64(len(content)), 10))
			h.Write([]byte{0})
			h.Write(content)
			h.Sum(e.id[:0])
			e.done, progress = true, true
		}
		if pending && !progress {
			for i := range ents {
				if !ents[i].done {
					_, _, err := rd.packed(location{0, ents[i].off}, maxObject)
					return "", &IndexError{Offset: ents[i].off, Msg: fmt.Sprintf("cannot be resolved: %v", err), Err: ErrCorrupt}
				}
			}
		}
	}
	idx := buildIdx(ents, sum[:], false)
	name := "pack-" + plumbing.Hash(sum).String()
	dir := filepath.Join(gitDir, "objects", "pack")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	final := filepath.Join(dir, name)
	if err := os.Rename(packPath, final+".pack"); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "tmp-idx-*")
	if err != nil {
		return "", err
	}
	_, werr := tmp.Write(idx)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), final+".idx")
	}
	if werr != nil {
		os.Remove(tmp.Name())
		os.Remove(final + ".pack")
		return "", werr
	}
	return name, nil
}

// copyExactly copies exactly n bytes from r to w and checks that r ends
// there (never reading more than n+1 bytes).
func copyExactly(w io.Writer, r io.Reader, n int64) error {
	if m, err := io.CopyN(w, r, n); err != nil {
		if m < n && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			return lie(n, false)
		}
		return fmt.Errorf("inflate: %w", err)
	}
	var one [1]byte
	switch k, err := io.ReadFull(r, one[:]); {
	case k > 0:
		return lie(n, true)
	case err != io.EOF:
		return fmt.Errorf("inflate: %w", err)
	}
	return nil
}

// buildIdx encodes a version 2 pack index of the entries whose id is
// known (all of them unless partial), with the pack's checksum.
func buildIdx(ents []indexEntry, packSum []byte, partial bool) []byte {
	order := make([]int32, 0, len(ents))
	for i := range ents {
		if ents[i].done || !partial {
			order = append(order, int32(i))
		}
	}
	slices.SortFunc(order, func(a, b int32) int { return bytes.Compare(ents[a].id[:], ents[b].id[:]) })
	var large int
	for _, i := range order {
		if ents[i].off >= 1<<31 {
			large++
		}
	}
	n := len(order)
	b := make([]byte, 0, 8+1024+28*n+8*large+40)
	b = append(b, 0xff, 't', 'O', 'c', 0, 0, 0, 2)
	var fan [256]uint32
	for _, i := range order {
		fan[ents[i].id[0]]++
	}
	total := uint32(0)
	for _, c := range fan {
		total += c
		b = binary.BigEndian.AppendUint32(b, total)
	}
	for _, i := range order {
		b = append(b, ents[i].id[:]...)
	}
	for _, i := range order {
		b = binary.BigEndian.AppendUint32(b, ents[i].crc)
	}
	k := uint32(0)
	for _, i := range order {
		if off := ents[i].off; off >= 1<<31 {
			b = binary.BigEndian.AppendUint32(b, 1<<31|k)
			k++
		} else {
			b = binary.BigEndian.AppendUint32(b, uint32(off))
		}
	}
	for _, i := range order {
		if off := ents[i].off; off >= 1<<31 {
			b = binary.BigEndian.AppendUint64(b, uint64(off))
		}
	}
	b = append(b, packSum...)
	s := sha1.Sum(b)
	return append(b, s[:]...)
}
