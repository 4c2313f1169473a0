package binarycache

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
)

// ServedResult is the answer of Served: which poisoned outputs a cache
// still serves.
type ServedResult struct {
	Hits []Hit `json:"served"`
	// Problems are narinfos that could not be judged (file caches).
	Problems []Problem `json:"undetermined"`
	// Failed are lookups that failed (HTTP caches): the cache may serve
	// them.
	Failed []Problem `json:"failed"`
	// DeriverChecked says whether narinfos were matched by Deriver too:
	// only a file cache can be listed; over HTTP only the lock's output
	// paths are looked up.
	DeriverChecked bool `json:"deriverChecked"`
}

// Served reports which poisoned outputs the cache at loc serves, changing
// nothing. A file cache is scanned (ScanDir); an HTTP cache is asked for
// the narinfo of each poisoned output path (GET, bounded body, at most
// eight requests at once), since HTTP caches cannot be listed. client
// carries the timeouts.
func Served(ctx context.Context, loc Location, p *Poisoned, client *http.Client) (*ServedResult, error) {
	if loc.Dir != "" {
		hits, problems, err := ScanDir(ctx, loc.Dir, p)
		if err != nil {
			return nil, err
		}
		return &ServedResult{Hits: nonNil(hits), Problems: nonNilP(problems), Failed: []Problem{}, DeriverChecked: true}, nil
	}
	res := &ServedResult{Hits: []Hit{}, Problems: []Problem{}, Failed: []Problem{}}
	hashes := p.OutputHashes()
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan string)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range work {
				ni, found, err := fetchNarInfo(ctx, client, loc.URL, h)
				mu.Lock()
				switch {
				case err != nil:
					res.Failed = append(res.Failed, Problem{Name: h + ".narinfo", Err: err.Error()})
				case found:
					if hit, ok := p.match(h, ni); ok {
						res.Hits = append(res.Hits, hit)
					}
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, h := range hashes {
		select {
		case work <- h:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sort.Slice(res.Hits, func(i, j int) bool { return res.Hits[i].Hash < res.Hits[j].Hash })
	sort.Slice(res.Failed, func(i, j int) bool { return res.Failed[i].Name < res.Failed[j].Name })
	return res, nil
}

// fetchNarInfo GETs base/HASH.narinfo: found on 200, not found on 404 and
// 403 (what S3-style servers answer for a missing key), an error else.
func fetchNarInfo(ctx context.Context, client *http.Client, base, h string) (NarInfo, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/"+h+".narinfo", nil)
	if err != nil {
		return NarInfo{}, false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return NarInfo{}, false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusForbidden:
		return NarInfo{}, false, nil
	default:
		return NarInfo{}, false, fmt.Errorf("HTTP %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxNarInfo+1))
	if err != nil {
		return NarInfo{}, false, fmt.Errorf("read body: %w", err)
	}
	ni, err := ParseNarInfo(data)
	if err != nil {
		return NarInfo{}, false, err
	}
	if HashPart(ni.StorePath) != h {
		return NarInfo{}, false, fmt.Errorf("StorePath %s does not match the name asked for", ni.StorePath)
	}
	return ni, true, nil
}

func nonNil(h []Hit) []Hit {
	if h == nil {
		return []Hit{}
	}
	return h
}

func nonNilP(p []Problem) []Problem {
	if p == nil {
		return []Problem{}
	}
	return p
}
