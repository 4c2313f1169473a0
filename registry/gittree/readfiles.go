package gittree

import (
	"errors"
	"runtime"
	"sort"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
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
	type item struct { // 16 bytes: a million files cost 16 MB
		i    int32
		pack int32
		off  int64
	}
	items := make([]item, len(paths))
	f.mu.Lock()
	var packs []*pack
	if f.objs != nil {
		packs = f.objs.packList()
	}
	for i, p := range paths {
		n, err := f.fileNode("read", p)
		if err != nil {
			f.mu.Unlock()
			return err
		}
		items[i] = item{i: int32(i), pack: -1}
		if k, off, ok := findPacked(packs, n.hash); ok {
			items[i].pack, items[i].off = int32(k), off
		}
	}
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
			var rd *reader
			if f.objs != nil {
				rd = newReader(f.objs, packs)
			}
			for k := lo; k < hi; k++ {
				if k%64 == 0 && stopped() {
					return
				}
				it := items[k]
				p := paths[it.i]
				data, ferr, err := f.readOne(rd, p, location{int(it.pack), it.off})
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

// readOne reads one blob for ReadFiles: a packed one (at.pack >= 0) with
// the worker's reader, without holding mu; others through object. ferr is
// a per-file error (a file over the limit).
func (f *FS) readOne(rd *reader, p string, at location) (data []byte, ferr, err error) {
	perFile := func(err error) ([]byte, error, error) {
		if errors.Is(err, ErrFileTooLarge) {
			return nil, err, nil
		}
		return nil, nil, err
	}
	if at.pack >= 0 && rd != nil {
		b, err := rd.readAt(at, "blob", f.lim.FileSize)
		f.mu.Lock()
		defer f.mu.Unlock()
		if err != nil {
			var h plumbing.Hash
			if n, lerr := f.fileNode("read", p); lerr == nil {
				h = n.hash
			}
			return perFile(f.objectError(p, "blob", h, f.lim.FileSize, fileWhat, err))
		}
		if err := f.count(p, "blob", plumbing.ZeroHash, int64(len(b))); err != nil {
			if n, lerr := f.fileNode("read", p); lerr == nil {
				err.(*Error).ID = n.hash.String()
			}
			return nil, nil, err
		}
		return b, nil, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.fileNode("read", p)
	if err != nil {
		return nil, nil, err
	}
	b, err := f.object(p, "blob", n.hash, f.lim.FileSize, fileWhat, false)
	if err != nil {
		return perFile(err)
	}
	return b, nil, nil
}
