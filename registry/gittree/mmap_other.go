//go:build !unix

package gittree

import "os"

// mapFile reads a file into memory.
func mapFile(name string) ([]byte, func(), error) {
	data, err := os.ReadFile(name)
	return data, func() {}, err
}

// dropPages does nothing where files are read into memory.
func dropPages([]byte) {}
