package binarycache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/poison-nix/poison/registry/lock"
)

// Location is a parsed binary cache URI.
type Location struct {
	// Dir is the directory of a file:// cache; "" otherwise.
	Dir string
	// URL is the base URL of an http(s):// cache, without a trailing
	// slash; "" otherwise.
	URL string
}

// ParseURI reads a binary cache URI as Nix writes them: file:///DIR,
// http://HOST/PATH or https://HOST/PATH. Query parameters (Nix's store
// settings such as ?compression=) are ignored. Other schemes are refused:
// s3:// would need the AWS SDK, which poison does not depend on.
func ParseURI(uri string) (Location, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return Location{}, fmt.Errorf("cache %q: %w", uri, err)
	}
	switch u.Scheme {
	case "file":
		p := u.Path
		if u.Host != "" { // file://relative/dir, as Nix accepts it
			p = u.Host + u.Path
		}
		if p == "" {
			return Location{}, fmt.Errorf("cache %q: no directory", uri)
		}
		return Location{Dir: filepath.Clean(p)}, nil
	case "http", "https":
		if u.Host == "" {
			return Location{}, fmt.Errorf("cache %q: no host", uri)
		}
		u.RawQuery, u.Fragment = "", ""
		return Location{URL: strings.TrimRight(u.String(), "/")}, nil
	case "s3":
		return Location{}, fmt.Errorf("cache %q: s3:// caches are not supported (poison carries no AWS SDK); mount the bucket as a directory and pass file://, or move the narinfos 'poison quarantine --dry-run' lists with your S3 tools", uri)
	default:
		return Location{}, fmt.Errorf("cache %q: want file:///DIR, http://HOST/PATH or https://HOST/PATH", uri)
	}
}

// Poisoned is what a cache must not serve: the lock's poisoned output
// paths and .drv paths, by base name.
type Poisoned struct {
	outputs map[string]string // hash part -> output base name
	drvs    map[string]int    // .drv base name -> serial
	serials map[string]int    // output base name -> serial
}

// FromLock returns the poisoned paths of a lock.
func FromLock(lk *lock.File) *Poisoned {
	p := &Poisoned{outputs: map[string]string{}, drvs: map[string]int{}, serials: map[string]int{}}
	for base, s := range lk.Outputs {
		if h := HashPart(base); h != "" {
			p.outputs[h] = base
			p.serials[base] = s
		}
	}
	for base, s := range lk.Derivations {
		p.drvs[base] = s
	}
	return p
}

// Len is the number of poisoned outputs and derivations.
func (p *Poisoned) Len() int { return len(p.outputs) + len(p.drvs) }

// OutputHashes returns the hash parts of the poisoned outputs, sorted.
func (p *Poisoned) OutputHashes() []string {
	hs := make([]string, 0, len(p.outputs))
	for h := range p.outputs {
		hs = append(hs, h)
	}
	sort.Strings(hs)
	return hs
}

// Hit is a narinfo that serves a poisoned output.
type Hit struct {
	// Hash is the narinfo's name without ".narinfo".
	Hash      string `json:"hash"`
	StorePath string `json:"path"`
	Deriver   string `json:"deriver,omitempty"`
	// Why says which lock key matched: "output BASE (serial N)" or
	// "deriver BASE.drv (serial N)".
	Why string `json:"reason"`
}

// Problem is a narinfo that could not be judged.
type Problem struct {
	Name string `json:"name"`
	Err  string `json:"error"`
}

// match judges one narinfo (name hash h, content ni).
func (p *Poisoned) match(h string, ni NarInfo) (Hit, bool) {
	hit := Hit{Hash: h, StorePath: ni.StorePath, Deriver: ni.Deriver}
	if base, ok := p.outputs[h]; ok {
		hit.Why = fmt.Sprintf("output %s (serial %d)", base, p.serials[base])
		if hit.StorePath == "" {
			hit.StorePath = base
		}
		return hit, true
	}
	if ni.Deriver != "" {
		if s, ok := p.drvs[ni.Deriver]; ok {
			hit.Why = fmt.Sprintf("deriver %s (serial %d)", ni.Deriver, s)
			return hit, true
		}
	}
	return hit, false
}

// ErrNotCache: the directory has no nix-cache-info.
var ErrNotCache = errors.New("not a binary cache (no nix-cache-info)")

// checkDir makes sure dir is a binary cache directory.
func checkDir(dir string) error {
	fi, err := os.Lstat(filepath.Join(dir, "nix-cache-info"))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", dir, ErrNotCache)
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: nix-cache-info is not a regular file", dir)
	}
	return nil
}

// readNarInfo reads a regular file of at most MaxNarInfo bytes.
func readNarInfo(path string) (NarInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return NarInfo{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return NarInfo{}, err
	}
	if !fi.Mode().IsRegular() {
		return NarInfo{}, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxNarInfo+1))
	if err != nil {
		return NarInfo{}, err
	}
	return ParseNarInfo(data)
}

// ScanDir lists the narinfos of the file cache dir that serve a poisoned
// output: the narinfo of a poisoned output path, or one whose Deriver is
// a poisoned .drv. It changes nothing. Narinfos that cannot be read are
// problems (their deriver is unknown), not errors. Hits are sorted by
// hash.
func ScanDir(ctx context.Context, dir string, p *Poisoned) ([]Hit, []Problem, error) {
	if err := checkDir(dir); err != nil {
		return nil, nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read cache: %w", err)
	}
	var hits []Hit
	var problems []Problem
	for i, de := range ents {
		if i&0xff == 0 {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
		}
		name := de.Name()
		h, ok := strings.CutSuffix(name, ".narinfo")
		if !ok || !isHash(h) {
			continue
		}
		if !de.Type().IsRegular() {
			problems = append(problems, Problem{Name: name, Err: "not a regular file"})
			continue
		}
		if _, isOut := p.outputs[h]; isOut || len(p.drvs) == 0 {
			// The name decides; read it only to report the path.
			if isOut {
				ni, _ := readNarInfo(filepath.Join(dir, name))
				if hit, ok := p.match(h, ni); ok {
					hits = append(hits, hit)
				}
			}
			continue
		}
		ni, err := readNarInfo(filepath.Join(dir, name))
		if err != nil {
			problems = append(problems, Problem{Name: name, Err: err.Error()})
			continue
		}
		if HashPart(ni.StorePath) != h {
			problems = append(problems, Problem{Name: name, Err: fmt.Sprintf("StorePath %s does not match the file name", ni.StorePath)})
		}
		if hit, ok := p.match(h, ni); ok {
			hits = append(hits, hit)
		}
	}
	sort.Slice(hits, func(i, j int) bool { return hits[i].Hash < hits[j].Hash })
	return hits, problems, nil
}
