// Package drvread reads what a post-build-hook needs of a .drv file, with
// the project's ATerm parser and nothing else: the hook binary stays small
// and starts fast.
package drvread

import (
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/poison-nix/poison/builder/internal/aterm"
)

// maxDrvInfoSize bounds the .drv files Outputs reads.
const maxDrvInfoSize = 64 << 20

// Outputs reads the .drv file at path and returns its output
// paths, sorted (floating and deferred outputs have none yet), and its
// platform. It is what Nix's post-build-hook needs when Nix does not pass
// the outputs (Nix 2.8 leaves OUT_PATHS empty).
func Outputs(path string) (outputs []string, system string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDrvInfoSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxDrvInfoSize {
		return nil, "", fmt.Errorf("%s: larger than %d bytes", path, maxDrvInfoSize)
	}
	d, err := aterm.ParseLazy(string(data))
	if err != nil {
		return nil, "", fmt.Errorf("parse %s: %w", path, err)
	}
	for _, o := range d.Outputs {
		if o.Path != "" {
			outputs = append(outputs, o.Path)
		}
	}
	sort.Strings(outputs)
	return outputs, d.Platform, nil
}
