package main

import (
	"os"
	"path/filepath"
	"slices"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/closurecache"
	"github.com/poison-nix/poison/registry/lock"
)

// closureCache is the closure record of one build: whether the lock
// poisons anything in the closure of its roots can be answered from it
// without reading their .drv files (builder/closurecache).
type closureCache struct {
	cache *closurecache.Cache
	key   closurecache.Key
	// recorded: a record of the key was read, so none needs writing.
	recorded bool
}

// newClosureCache returns the closure cache of a build, or nil where it
// does not apply: when turned off (closure-cache = false), without a
// cache directory, and in every mode but the plain build in a local or
// daemon store. A dry run explains the rewrite, --unit and
// --per-derivation use the loaded closure or check more than the roots,
// and a remote store copies inputs: those always load the closure.
func newClosureCache(o buildOptions, lk *lock.File, storeDir, realDir string, roots []string) *closureCache {
	if !o.settings.ClosureCache || o.settings.CacheDir == "" || o.dryRun || o.perDrv || o.unit != "" || remoteStore(o.store) {
		return nil
	}
	attr := lk.Env
	if attr == "" {
		attr = lock.DefaultEnv
	}
	if realDir == "" {
		realDir = storeDir
	}
	return &closureCache{
		cache: closurecache.New(filepath.Join(o.settings.CacheDir, "closures")),
		key:   closurecache.Key{StoreDir: storeDir, RealStoreDir: realDir, Attr: attr, Roots: roots},
	}
}

// unpoisoned returns the result of rewriting the roots when a record of
// their closure shows that the lock poisons nothing in it (every path
// stays as it is), with the closure's size; nil otherwise.
func (cc *closureCache) unpoisoned(lk *lock.File, byName bool) (*builder.Result, int) {
	if cc == nil {
		return nil, 0
	}
	rec, err := cc.cache.Load(cc.key)
	if err != nil {
		return nil, 0
	}
	cc.recorded = true
	if rec.Poisons(lk, byName) {
		return nil, 0
	}
	// A root given as a .drv path that is gone: loading it says so.
	for _, r := range cc.key.Roots {
		if _, err := os.Lstat(filepath.Join(cc.key.RealStoreDir, filepath.Base(r))); err != nil {
			return nil, 0
		}
	}
	return &builder.Result{Roots: slices.Clone(cc.key.Roots)}, rec.Len()
}

// save records the loaded closure c when no record was read, in the
// background; the returned function waits for it. A record that cannot
// be written is no error: the next build loads the closure again.
func (cc *closureCache) save(c *builder.Closure) (wait func()) {
	if cc == nil || cc.recorded {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if ms, ok := c.Members(cc.key.Attr); ok {
			_ = cc.cache.Save(cc.key, ms)
		}
	}()
	return func() { <-done }
}
