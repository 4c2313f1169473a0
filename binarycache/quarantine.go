package binarycache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// QuarantineDir is the directory inside a file cache where quarantined
// narinfos and their records are kept.
const QuarantineDir = "quarantine"

// Record says why and when a narinfo was quarantined. It is written as
// quarantine/HASH.json next to the moved quarantine/HASH.narinfo.
type Record struct {
	Narinfo   string    `json:"narinfo"` // "HASH.narinfo"
	StorePath string    `json:"path"`
	Deriver   string    `json:"deriver,omitempty"`
	Why       string    `json:"reason"`
	Source    string    `json:"source"` // the lock and registry commit that poisoned it
	Time      time.Time `json:"time"`
}

// Moved is one narinfo Quarantine or Restore moved (or, with DryRun,
// would move).
type Moved struct {
	Hash      string `json:"hash"`
	StorePath string `json:"path"`
	Why       string `json:"reason"`
}

// QuarantineOptions configure Quarantine.
type QuarantineOptions struct {
	// Source names the lock (registry URL and commit) in the records.
	Source string
	// Now is the time written into the records.
	Now time.Time
	// DryRun lists what would move and changes nothing.
	DryRun bool
}

// QuarantineResult is what Quarantine did.
type QuarantineResult struct {
	Moved []Moved `json:"moved"`
	// Already lists hits already in quarantine (nothing to do).
	Already []Moved `json:"alreadyQuarantined"`
	// Problems are narinfos that could not be judged or moved.
	Problems []Problem `json:"problems"`
}

// Quarantine moves the narinfo of every poisoned output the file cache
// dir serves (ScanDir) into dir/quarantine/, each with a record of why
// and when. Nothing is deleted and NAR files stay where they are: without
// its narinfo a path is no longer in the cache for a client that has not
// looked it up before. Each move is a rename within the cache; the record
// is written first, so a crash leaves at worst a record whose narinfo is
// still in place (Restore and a second Quarantine both handle it). Run
// again, it moves nothing new: quarantine is idempotent. A narinfo that
// is in the cache and in quarantine at once (uploaded again since) is a
// problem left alone, never overwritten.
func Quarantine(ctx context.Context, dir string, p *Poisoned, o QuarantineOptions) (*QuarantineResult, error) {
	hits, problems, err := ScanDir(ctx, dir, p)
	if err != nil {
		return nil, err
	}
	res := &QuarantineResult{Moved: []Moved{}, Already: []Moved{}, Problems: nonNilP(problems)}
	qdir := filepath.Join(dir, QuarantineDir)
	if err := checkQuarantineDir(qdir); err != nil {
		return nil, err
	}
	// Hits already quarantined: poisoned outputs whose narinfo is only in
	// quarantine/ (ScanDir cannot see them: they are no longer served).
	res.Already = alreadyQuarantined(qdir, p)
	if o.DryRun {
		for _, h := range hits {
			res.Moved = append(res.Moved, Moved{Hash: h.Hash, StorePath: h.StorePath, Why: h.Why})
		}
		return res, nil
	}
	if len(hits) > 0 {
		if err := os.Mkdir(qdir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return res, fmt.Errorf("quarantine: %w", err)
		}
	}
	for _, h := range hits {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		name := h.Hash + ".narinfo"
		dst := filepath.Join(qdir, name)
		if _, err := os.Lstat(dst); err == nil {
			res.Problems = append(res.Problems, Problem{Name: name, Err: "also in quarantine/ (uploaded again since it was quarantined): left alone; remove one of the two"})
			continue
		}
		rec := Record{Narinfo: name, StorePath: h.StorePath, Deriver: h.Deriver, Why: h.Why, Source: o.Source, Time: o.Now.UTC()}
		data, _ := json.MarshalIndent(rec, "", "  ")
		if err := writeFileAtomic(filepath.Join(qdir, h.Hash+".json"), append(data, '\n')); err != nil {
			return res, fmt.Errorf("quarantine %s: %w", name, err)
		}
		if err := os.Rename(filepath.Join(dir, name), dst); err != nil {
			os.Remove(filepath.Join(qdir, h.Hash+".json"))
			return res, fmt.Errorf("quarantine %s: %w", name, err)
		}
		res.Moved = append(res.Moved, Moved{Hash: h.Hash, StorePath: h.StorePath, Why: h.Why})
	}
	return res, nil
}

// alreadyQuarantined lists the quarantined narinfos of poisoned outputs.
func alreadyQuarantined(qdir string, p *Poisoned) []Moved {
	out := []Moved{}
	recs, _ := readRecords(qdir)
	for _, r := range recs {
		h := strings.TrimSuffix(r.Narinfo, ".narinfo")
		if _, err := os.Lstat(filepath.Join(qdir, r.Narinfo)); err != nil {
			continue
		}
		if _, ok := p.outputs[h]; ok || p.drvs[r.Deriver] > 0 {
			out = append(out, Moved{Hash: h, StorePath: r.StorePath, Why: r.Why})
		}
	}
	return out
}

// checkQuarantineDir refuses a quarantine/ that is not a plain directory:
// poison never follows a link out of the cache.
func checkQuarantineDir(qdir string) error {
	fi, err := os.Lstat(qdir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory (a symlink or a file); move it away", qdir)
	}
	return nil
}

// recordFile is a record with the name it was read from.
type recordFile struct {
	Record
	file string
}

// readRecords reads quarantine/*.json, sorted by name. Records that
// cannot be read are returned as errors by Restore.
func readRecords(qdir string) ([]recordFile, []Problem) {
	ents, err := os.ReadDir(qdir)
	if err != nil {
		return nil, nil
	}
	var recs []recordFile
	var problems []Problem
	for _, de := range ents {
		h, ok := strings.CutSuffix(de.Name(), ".json")
		if !ok || !isHash(h) {
			continue
		}
		var r Record
		data, err := readSmall(filepath.Join(qdir, de.Name()))
		if err == nil {
			err = json.Unmarshal(data, &r)
		}
		if err == nil && r.Narinfo != h+".narinfo" {
			err = fmt.Errorf("names narinfo %q, want %s.narinfo", r.Narinfo, h)
		}
		if err != nil {
			problems = append(problems, Problem{Name: QuarantineDir + "/" + de.Name(), Err: err.Error()})
			continue
		}
		recs = append(recs, recordFile{Record: r, file: de.Name()})
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].file < recs[j].file })
	return recs, problems
}

// RestoreResult is what Restore did.
type RestoreResult struct {
	Restored []Moved   `json:"restored"`
	Problems []Problem `json:"problems"`
}

// Restore puts every narinfo Quarantine moved back where it was and
// removes its record, then quarantine/ itself when it is left empty: the
// cache is as it was before Quarantine, byte for byte. A narinfo that is
// in the cache again (uploaded since) is left alone with its quarantined
// copy, as a problem. With dryRun nothing changes. Running it again does
// nothing.
func Restore(ctx context.Context, dir string, dryRun bool) (*RestoreResult, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	qdir := filepath.Join(dir, QuarantineDir)
	if err := checkQuarantineDir(qdir); err != nil {
		return nil, err
	}
	recs, problems := readRecords(qdir)
	res := &RestoreResult{Restored: []Moved{}, Problems: nonNilP(problems)}
	for _, r := range recs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		h := strings.TrimSuffix(r.Narinfo, ".narinfo")
		src := filepath.Join(qdir, r.Narinfo)
		dst := filepath.Join(dir, r.Narinfo)
		_, srcErr := os.Lstat(src)
		_, dstErr := os.Lstat(dst)
		switch {
		case srcErr != nil && dstErr == nil:
			// A quarantine interrupted before its move: only the record.
			if !dryRun {
				os.Remove(filepath.Join(qdir, r.file))
			}
			continue
		case srcErr != nil:
			res.Problems = append(res.Problems, Problem{Name: QuarantineDir + "/" + r.file, Err: "its narinfo is missing from quarantine/ and from the cache"})
			continue
		case dstErr == nil:
			res.Problems = append(res.Problems, Problem{Name: r.Narinfo, Err: "in the cache again (uploaded since it was quarantined): the quarantined copy is left in quarantine/"})
			continue
		}
		if !dryRun {
			if err := os.Rename(src, dst); err != nil {
				return res, fmt.Errorf("restore %s: %w", r.Narinfo, err)
			}
			if err := os.Remove(filepath.Join(qdir, r.file)); err != nil {
				return res, fmt.Errorf("restore %s: remove its record: %w", r.Narinfo, err)
			}
		}
		res.Restored = append(res.Restored, Moved{Hash: h, StorePath: r.StorePath, Why: r.Why})
	}
	if !dryRun {
		os.Remove(qdir) // only succeeds when empty
	}
	return res, nil
}

func readSmall(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxNarInfo+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxNarInfo {
		return nil, fmt.Errorf("larger than %d bytes", MaxNarInfo)
	}
	return data, nil
}

// writeFileAtomic writes data to path through a temporary file renamed
// into place (mode 0644).
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".poison-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	return err
}
