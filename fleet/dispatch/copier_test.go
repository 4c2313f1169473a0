package dispatch_test

import (
	"context"
	"io"
	"slices"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/fleet/dispatch"
)

// testCopier copies closures path by path (until the copy library is
// wired in): the closure from the source's path infos, what the
// destination lacks, references first.
var testCopier = dispatch.CopierFunc(func(ctx context.Context, from, to *daemon.Conn, paths []string) error {
	infos := map[string]*daemon.PathInfo{}
	todo := slices.Clone(paths)
	for len(todo) > 0 {
		got, err := from.QueryPathInfos(ctx, todo)
		if err != nil {
			return err
		}
		todo = nil
		for _, in := range got {
			if in == nil {
				continue
			}
			infos[in.Path] = in
			for _, r := range in.References {
				if _, ok := infos[r]; !ok && !slices.Contains(todo, r) {
					todo = append(todo, r)
				}
			}
		}
	}
	all := make([]string, 0, len(infos))
	for p := range infos {
		all = append(all, p)
	}
	valid, err := to.QueryValidPaths(ctx, all, false)
	if err != nil {
		return err
	}
	var order []*daemon.PathInfo
	done := map[string]bool{}
	for _, v := range valid {
		done[v] = true
	}
	var visit func(p string)
	visit = func(p string) {
		if done[p] {
			return
		}
		done[p] = true
		for _, r := range infos[p].References {
			if r != p {
				visit(r)
			}
		}
		order = append(order, infos[p])
	}
	slices.Sort(all)
	for _, p := range all {
		visit(p)
	}
	if len(order) == 0 {
		return nil
	}
	return from.NarsFromPaths(ctx, order, func(i int, r io.Reader) error {
		return to.AddToStoreNar(ctx, order[i], r, false, true)
	})
})
