//go:build unix

package gittree

import (
	"os"
	"syscall"
)

// mapFile maps a file into memory read-only: pages are read on demand and
// belong to the page cache, not the heap.
func mapFile(name string) ([]byte, func(), error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if st.Size() == 0 {
		return nil, func() {}, nil
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() { syscall.Munmap(data) }, nil
}

// dropPages removes the pages of a mapping from the process (they stay in
// the page cache and come back on the next access), so that they stop
// counting in its resident memory.
func dropPages(data []byte) {
	if len(data) > 0 {
		syscall.Madvise(data, syscall.MADV_DONTNEED)
	}
}
