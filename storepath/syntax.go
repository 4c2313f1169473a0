package storepath

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// HashLen is the length of the hash part of a store path.
const HashLen = 32

// MaxNameLen is the longest name Nix 2.8 accepts.
const MaxNameLen = 211

// Alphabet is nixbase32, the alphabet of hash parts (no e, o, u, t).
const Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// hashChar and nameChar are lookup tables: validation is on the hot path
// of linting 100,000 entries and of loading closures.
var hashChar, nameChar = func() (h, n [256]bool) {
	for i := 0; i < len(Alphabet); i++ {
		h[Alphabet[i]] = true
	}
	for c := 0; c < 256; c++ {
		n[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("+-._?=", byte(c)) >= 0
	}
	return h, n
}()

// IsHashChar reports whether c belongs to the nixbase32 alphabet.
func IsHashChar(c byte) bool { return hashChar[c] }

// CheckName returns an error when name (the part after "HASH-") is not a
// valid store path name for Nix 2.8: 1 to 211 characters of [A-Za-z0-9]
// and +-._?=, not starting with '.'.
func CheckName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("name is %d bytes long; Nix allows at most %d", len(name), MaxNameLen)
	}
	if name[0] == '.' {
		return fmt.Errorf("name %q starts with '.'", truncate(name))
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !nameChar[c] {
			return fmt.Errorf("name %q has the character %s, which store path names cannot contain", truncate(name), charAt(name, i))
		}
	}
	return nil
}

// CheckBase checks a store path base name "HASH-NAME".
func CheckBase(base string) error {
	if len(base) < HashLen+2 || base[HashLen] != '-' {
		return errors.New("a store path base name is a 32-character hash, '-' and a name")
	}
	for i := 0; i < HashLen; i++ {
		if !hashChar[base[i]] {
			return fmt.Errorf("hash part %q has a character outside nixbase32 (%s)", base[:HashLen], Alphabet)
		}
	}
	return CheckName(base[HashLen+1:])
}

// Base checks that s is a store path directly under storeDir (no
// sub-path) and returns its base name "HASH-NAME".
func Base(storeDir, s string) (string, error) {
	if s == "" {
		return "", errors.New("empty store path")
	}
	if !strings.HasPrefix(s, "/") {
		return "", fmt.Errorf("%q is not absolute", s)
	}
	prefix := storeDir + "/"
	if !strings.HasPrefix(s, prefix) {
		return "", fmt.Errorf("%q is outside the store %s", s, storeDir)
	}
	base := s[len(prefix):]
	if strings.IndexByte(base, '/') >= 0 {
		return "", fmt.Errorf("%q names a file inside a store path, not a store path", s)
	}
	if err := CheckBase(base); err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	return base, nil
}

// Split checks that path is a valid store path in storeDir and returns its
// base name, hash part and name.
func Split(storeDir, path string) (base, hashPart, name string, err error) {
	base, err = Base(storeDir, path)
	if err != nil {
		return "", "", "", err
	}
	return base, base[:HashLen], base[HashLen+1:], nil
}

// Root returns the store path that path is or lies inside
// ("/nix/store/HASH-x/bin/x" gives "/nix/store/HASH-x"), checked.
func Root(storeDir, path string) (string, error) {
	if rest, ok := strings.CutPrefix(path, storeDir+"/"); ok {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			path = path[:len(storeDir)+1+i]
		}
	}
	if _, err := Base(storeDir, path); err != nil {
		return "", err
	}
	return path, nil
}

// MaxStoreDirLen caps the length of a store directory: PATH_MAX, with no
// room left for the store paths under it beyond that.
const MaxStoreDirLen = 4096

// CheckStoreDir returns an error when dir cannot be a Nix store directory:
// it must be absolute and clean (no trailing slash, no empty, "." or ".."
// component), not "/", at most MaxStoreDirLen bytes, and made of the
// characters of store path names and '/' only, so that every store path
// under it is a plain word in a shell, a URL and a Nix string. It is the
// one check of a store directory: registry.toml, the lock, and the
// --store-dir flags all apply it.
func CheckStoreDir(dir string) error {
	bad := func(why string) error {
		return fmt.Errorf("store directory %q %s; write a clean absolute directory such as /nix/store", truncate(dir), why)
	}
	switch {
	case dir == "":
		return bad("is empty")
	case dir[0] != '/':
		return bad("is not absolute")
	case dir == "/":
		return bad("is the root directory")
	case len(dir) > MaxStoreDirLen:
		return bad(fmt.Sprintf("is %d bytes long, more than %d", len(dir), MaxStoreDirLen))
	case strings.HasSuffix(dir, "/"):
		return bad("ends in a slash")
	}
	for i := 0; i < len(dir); i++ {
		if c := dir[i]; c != '/' && !nameChar[c] {
			return bad(fmt.Sprintf("has the character %s, which store paths cannot contain", charAt(dir, i)))
		}
	}
	for _, comp := range strings.Split(dir[1:], "/") {
		if comp == "" || comp == "." || comp == ".." {
			return bad(`has an empty, "." or ".." component`)
		}
	}
	return nil
}

// truncate shortens s for messages.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// charAt quotes the character that starts at byte i of s: the whole
// UTF-8 character ('ü', not its first byte), or the byte ('\xff') where s
// is not UTF-8 there.
func charAt(s string, i int) string {
	r, size := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("'\\x%02x'", s[i])
	}
	return strconv.QuoteRune(r)
}
