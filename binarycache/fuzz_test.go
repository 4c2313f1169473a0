package binarycache_test

import (
	"testing"

	"github.com/poison-nix/poison/binarycache"
)

func FuzzParseNarInfo(f *testing.F) {
	f.Add([]byte("StorePath: /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a\nURL: nar/a.nar\nDeriver: unknown-deriver\n"))
	f.Add([]byte("StorePath: x\r\nDeriver: d.drv"))
	f.Add([]byte(": \n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ni, err := binarycache.ParseNarInfo(data)
		if err != nil {
			return
		}
		if ni.StorePath == "" {
			t.Fatal("accepted a narinfo without StorePath")
		}
		if h := binarycache.HashPart(ni.StorePath); h != "" && len(h) != 32 {
			t.Fatalf("hash part %q", h)
		}
	})
}
