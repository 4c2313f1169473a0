package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/poison-nix/poison/binarycache"
	"github.com/poison-nix/poison/internal/settings"
)

// checkCacheReport is the report of 'poison check --cache'.
type checkCacheReport struct {
	Cache          string `json:"cache"`
	Lock           string `json:"lock"`
	RegistryCommit string `json:"registryCommit"`
	*binarycache.ServedResult
	ExitStatus int `json:"exitStatus"`
}

// runCheckCache reports which poisoned outputs a binary cache serves,
// changing nothing. Exit bits as check: 1 a poisoned output is served, 2 a
// narinfo could not be judged, 4 a lookup failed.
func runCheckCache(ctx context.Context, e *env, o checkOptions, sf *settings.Flags) error {
	if len(o.paths) > 0 {
		return usageErrorf("check --cache takes no PATH arguments (got %q): it checks the cache against the lock", o.paths[0])
	}
	loc, err := binarycache.ParseURI(o.cache)
	if err != nil {
		return usageErrorf("check: %v", err)
	}
	if loc.Dir != "" && !filepath.IsAbs(loc.Dir) {
		loc.Dir = filepath.Join(e.dir, loc.Dir)
	}
	if o.settings, err = loadSettings(e, sf); err != nil {
		return err
	}
	lk, err := readLock(e, "check", o.settings)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 20 * time.Second,
			MaxIdleConnsPerHost:   8,
		},
	}
	res, err := binarycache.Served(ctx, loc, binarycache.FromLock(lk), client)
	if err != nil {
		return &exitErr{code: checkFailed, err: cacheError("check --cache", err)}
	}
	rep := checkCacheReport{Cache: o.cache, Lock: displayPath(e, o.settings.Lock), RegistryCommit: lk.Registry.Commit, ServedResult: res}
	if len(res.Hits) > 0 {
		rep.ExitStatus |= checkStale
	}
	if len(res.Problems) > 0 {
		rep.ExitStatus |= checkUndetermined
	}
	if len(res.Failed) > 0 {
		rep.ExitStatus |= checkFailed
	}
	err = writeReport(e.stdout, o.json, rep, func(w io.Writer) {
		for _, h := range res.Hits {
			fmt.Fprintf(w, "served %s: %s\n", h.StorePath, h.Why)
		}
		for _, p := range res.Problems {
			fmt.Fprintf(w, "undetermined %s: %s\n", p.Name, p.Err)
		}
		for _, p := range res.Failed {
			fmt.Fprintf(w, "failed %s: %s\n", p.Name, p.Err)
		}
	})
	if err != nil {
		return err
	}
	if !o.json {
		how := "by output path and by deriver"
		if !res.DeriverChecked {
			how = "by output path only (an HTTP cache cannot be listed to match derivers)"
		}
		fmt.Fprintf(e.stderr, "poison: %s serves %d poisoned output(s) (checked %s)\n", o.cache, len(res.Hits), how)
	}
	if rep.ExitStatus != 0 {
		return silentExit(rep.ExitStatus)
	}
	return nil
}
