//go:build !unix

package registry

import (
	"os"
)

func readFileFast(name string) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err == nil && len(data) > MaxEntrySize {
		return nil, errTooLarge{MaxEntrySize}
	}
	return data, err
}
