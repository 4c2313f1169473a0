//go:build !unix

package registry

import (
	"os"
)

func readFileFast(name string, limit int64) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err == nil && int64(len(data)) > limit {
		return nil, errTooLarge{limit}
	}
	return data, err
}
