// Package storepath is the one place poison checks the syntax of Nix
// store paths (syntax.go: hash part, name, store directory) and computes
// them as Nix 2.8 does (libstore/path.cc, store-api.cc). The registry, the
// lock and the builder all validate paths with it.
//
// A store path is StoreDir + "/" + hashPart + "-" + name, where hashPart is
// the nixbase32 encoding of a 160-bit hash folded from
//
//	sha256(type + ":sha256:" + hex(inner) + ":" + StoreDir + ":" + name)
//
// and type is "output:OUT" for input-addressed outputs, "text:REF:REF..."
// for .drv files (REF the sorted, de-duplicated references) and "source" or
// "output:out" for fixed-output paths.
package storepath

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unsafe"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// Make returns makeStorePath(type, sha256 inner, name).
func Make(storeDir, typ string, inner [32]byte, name string) string {
	return make2(storeDir, typ, nil, inner, name)
}

// make2 is Make with the type written as typ followed by ":" + each ref,
// without building that string.
func make2(storeDir, typ string, refs []string, inner [32]byte, name string) string {
	h := sha256.New()
	write := func(s string) {
		if s != "" {
			h.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
		}
	}
	write(typ)
	for _, r := range refs {
		write(":")
		write(r)
	}
	write(":sha256:")
	var hx [64]byte
	hex.Encode(hx[:], inner[:])
	h.Write(hx[:])
	write(":")
	write(storeDir)
	write(":")
	write(name)
	var sum [32]byte
	h.Sum(sum[:0])
	var c [20]byte
	for i, b := range sum {
		c[i%20] ^= b
	}
	n := len(storeDir) + 1 + nixbase32.EncodedLen(len(c)) + 1 + len(name)
	out := make([]byte, 0, n)
	out = append(out, storeDir...)
	out = append(out, '/')
	out = append(out, nixbase32.EncodeToString(c[:])...)
	out = append(out, '-')
	out = append(out, name...)
	return unsafe.String(unsafe.SliceData(out), len(out))
}

// OutputPathName is the name of output out of a derivation called name.
func OutputPathName(name, out string) string {
	if out == "out" {
		return name
	}
	return name + "-" + out
}

// Output returns the path of output out of an input-addressed derivation
// whose masked hash-modulo is h.
func Output(storeDir, drvName, out string, h [32]byte) string {
	return Make(storeDir, "output:"+out, h, OutputPathName(drvName, out))
}

// Text returns the path of a text object (a .drv) with content hash h and
// the given references, which must be sorted and free of duplicates.
func Text(storeDir, name string, h [32]byte, refs []string) string {
	return make2(storeDir, "text", refs, h, name)
}

var hashSizes = map[string]int{"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}

// Fixed returns the output path of a fixed-output derivation given the
// hashAlgo field of its output ("r:sha256", "sha1", ...) and the hex hash.
func Fixed(storeDir, algoField, hexHash, name string) (string, error) {
	algo, recursive := strings.CutPrefix(algoField, "r:")
	size, ok := hashSizes[algo]
	if !ok {
		return "", fmt.Errorf("unknown hash algorithm %q", algoField)
	}
	raw, err := hex.DecodeString(hexHash)
	if err != nil || len(raw) != size || strings.ToLower(hexHash) != hexHash {
		return "", fmt.Errorf("hash %q is not a lowercase base16 %s hash", hexHash, algo)
	}
	if recursive && algo == "sha256" {
		var h [32]byte
		copy(h[:], raw)
		return Make(storeDir, "source", h, name), nil
	}
	prefix := ""
	if recursive {
		prefix = "r:"
	}
	inner := sha256.Sum256([]byte("fixed:out:" + prefix + algo + ":" + hexHash + ":"))
	return Make(storeDir, "output:out", inner, name), nil
}

// DownstreamPlaceholder is the string Nix puts in dependents for output out
// of a derivation whose output path is not known in advance (floating
// content-addressed, impure, deferred): "/" + nixbase32(sha256(
// "nix-upstream-output:" + drvHashPart + ":" + outputPathName)).
func DownstreamPlaceholder(drvHashPart, drvName, out string) string {
	h := sha256.Sum256([]byte("nix-upstream-output:" + drvHashPart + ":" + OutputPathName(drvName, out)))
	return "/" + nixbase32.EncodeToString(h[:])
}

// DefaultStoreDir is Nix's store directory.
const DefaultStoreDir = "/nix/store"

// Dirs fills in the defaults of a store's two directories: storeDir, the
// logical one, is DefaultStoreDir when empty, and realDir, where its files
// are ("DIR/nix/store" for a chroot store), is storeDir when empty.
func Dirs(storeDir, realDir string) (string, string) {
	if storeDir == "" {
		storeDir = DefaultStoreDir
	}
	if realDir == "" {
		realDir = storeDir
	}
	return storeDir, realDir
}
