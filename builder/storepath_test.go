package builder_test

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder/internal/aterm"
	"github.com/poison-nix/poison/storepath"
)

// TestStorePathsOfDrvFiles: the .drv files Nix wrote into testdata/drv/store are
// named by Text over their bytes and their reference set (R8), and their
// fixed outputs by Fixed.
func TestStorePathsOfDrvFiles(t *testing.T) {
	dir := "../testdata/drv/store"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		d, err := aterm.Parse(string(data))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		refs := slices.Clone(d.InputSrcs)
		for _, in := range d.InputDrvs {
			refs = append(refs, in.Path)
		}
		slices.Sort(refs)
		refs = slices.Compact(refs)
		name := e.Name()[storepath.HashLen+1:]
		if got, want := storepath.Text("/nix/store", name, sha256.Sum256(data), refs), "/nix/store/"+e.Name(); got != want {
			t.Errorf("Text = %s, want %s", got, want)
		}
		for _, o := range d.Outputs {
			if o.Hash == "" || o.Hash == "impure" {
				continue
			}
			got, err := storepath.Fixed("/nix/store", o.HashAlgo, o.Hash, storepath.OutputPathName(strings.TrimSuffix(name, ".drv"), o.Name))
			if err != nil || got != o.Path {
				t.Errorf("%s: Fixed = %s, %v; want %s", e.Name(), got, err, o.Path)
			}
		}
	}
}
