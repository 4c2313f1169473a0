package gittree

import (
	"errors"
	"runtime"
	"sort"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
)

// ReadFiles reads the regular files at paths and calls fn(i, data, err)
// for each paths[i], from up to workers goroutines at once (GOMAXPROCS
// when 0; fn must be safe for concurrent use), in the order the objects
// lie in the pack files rather than the order of paths: reading a large
// tree is several times faster so. err is nil or a per-file *Error (a file
// over Limits.FileSize: errors.Is(err, ErrFileTooLarge)), for fn to report
// or return. data is valid only during the call. fn's error, or any other
// failure, stops ReadFiles, which returns it.
//
// Blobs are never held beyond the call of fn, so the memory ReadFiles
// needs does not grow with the number of files.
func (f *FS) ReadFiles(paths []string, workers int, fn func(i int, data []byte, err error) error) error {
	type item struct {
		i    int32
		pack int32
		off  int64
		h    plumbing.Hash
	}
	items := make([]item, len(paths))
	f.mu.Lock()
	f.openPacks()
	for i, p := range paths {
		n, err := f.fileNode("read", p)
		if err != nil {
			f.mu.Unlock()
			return err
		}
		items[i] = item{i: int32(i), pack: -1, h: n.hash}
		if k, off, ok := findPacked(f.packs, n.hash); ok {
			items[i].pack, items[i].off = int32(k), off
		}
	}
	packs := f.packs
	f.mu.Unlock()
	sort.Slice(items, func(a, b int) bool {
		if items[a].pack != items[b].pack {
			return items[a].pack < items[b].pack
		}
		return items[a].off < items[b].off
	})
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if len(items) < 256 {
		workers = 1
	}
	var (
		wg      sync.WaitGroup
		stopMu  sync.Mutex
		stopErr error
	)
	stopped := func() bool {
		stopMu.Lock()
		defer stopMu.Unlock()
		return stopErr != nil
	}
	stop := func(err error) {
		stopMu.Lock()
		if stopErr == nil {
			stopErr = err
		}
		stopMu.Unlock()
	}
	chunk := (len(items) + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, len(items))
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			readers := make([]*packfile.Packfile, len(packs))
			z := newSizer(packs)
			for k := lo; k < hi; k++ {
				if k%64 == 0 && stopped() {
					return
				}
				it := items[k]
				p := paths[it.i]
				data, ferr, err := f.readOne(packs, readers, z, p, it.h, int(it.pack), it.off)
				if err != nil {
					stop(err)
					return
				}
				if err := fn(int(it.i), data, ferr); err != nil {
					stop(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return stopErr
}

// readOne reads one blob for ReadFiles: from its pack without holding mu
// when it is packed, through object otherwise. ferr is a per-file error.
func (f *FS) readOne(packs []*pack, readers []*packfile.Packfile, z *sizer, p string, h plumbing.Hash, k int, off int64) (data []byte, ferr, err error) {
	perFile := func(err error) ([]byte, error, error) {
		var te *Error
		if errors.As(err, &te) && errors.Is(err, ErrFileTooLarge) {
			return nil, err, nil
		}
		return nil, nil, err
	}
	if k >= 0 {
		sz, err := z.check(k, off, f.lim.FileSize)
		var big *tooLarge
		if errors.As(err, &big) {
			e := &Error{Path: p, Kind: "blob", ID: h.String(), Err: ErrFileTooLarge}
			if big.base {
				e.Msg = "is stored as a delta of an object of " + size(big.size) + ", more than the limit of " + size(f.lim.FileSize) + " for " + fileWhat
			} else {
				e.Msg = "is " + size(big.size) + ", more than the limit of " + size(f.lim.FileSize) + " for " + fileWhat
			}
			return nil, e, nil
		}
		if err == nil {
			f.mu.Lock()
			err = f.count(p, "blob", h, sz)
			f.mu.Unlock()
			if err != nil {
				return nil, nil, err
			}
			if readers[k] == nil {
				readers[k] = packs[k].reader()
			}
			if b, err := readPacked(readers[k], h, off, sz); err == nil {
				return b, nil, nil
			}
			f.mu.Lock()
			f.bytes -= sz
			f.mu.Unlock()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := f.object(p, "blob", h, f.lim.FileSize, fileWhat)
	if err != nil {
		return perFile(err)
	}
	return b, nil, nil
}
