// Package binarycache reads and quarantines Nix binary caches the team
// owns: which narinfos serve outputs of poisoned derivations (by output
// path, or by the Deriver a narinfo names), and moving those narinfos
// aside so that no new client substitutes them, reversibly.
//
// A binary cache is a directory (file://) or an HTTP server holding
// nix-cache-info, one HASH.narinfo per store path (HASH is the path's
// 32-character hash part) and the NAR files the narinfos point to. A
// client asks for HASH.narinfo before it substitutes a path: without it,
// the path is not in the cache for that client, whatever NARs remain.
package binarycache

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// MaxNarInfo bounds the size of a narinfo poison reads (real ones are a
// few hundred bytes; references make them longer).
const MaxNarInfo = 1 << 20

// NarInfo is what poison reads of a narinfo.
type NarInfo struct {
	StorePath string // absolute store path
	Deriver   string // base name of the .drv ("HASH-name.drv"), or ""
	URL       string // of the NAR, relative to the cache
}

// ParseNarInfo reads the "Key: value" lines of a narinfo. StorePath is
// required; other keys are ignored.
func ParseNarInfo(data []byte) (NarInfo, error) {
	var ni NarInfo
	if len(data) > MaxNarInfo {
		return ni, fmt.Errorf("narinfo larger than %d bytes", MaxNarInfo)
	}
	for n, line := range bytes.Split(data, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		k, v, ok := bytes.Cut(line, []byte(": "))
		if !ok {
			return ni, fmt.Errorf("line %d: not \"Key: value\"", n+1)
		}
		switch string(k) {
		case "StorePath":
			ni.StorePath = string(v)
		case "Deriver":
			if string(v) != "unknown-deriver" {
				ni.Deriver = string(v)
			}
		case "URL":
			ni.URL = string(v)
		}
	}
	if ni.StorePath == "" {
		return ni, errors.New("no StorePath")
	}
	return ni, nil
}

// HashPart returns the 32-character hash part of a store path or base
// name, or "" when p has none.
func HashPart(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		p = p[i+1:]
	}
	if len(p) < 33 || p[32] != '-' || !isHash(p[:32]) {
		return ""
	}
	return p[:32]
}

func isHash(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') || c == 'e' || c == 'o' || c == 'u' || c == 't' {
			return false
		}
	}
	return true
}
