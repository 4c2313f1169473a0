package dispatch

import (
	"context"
	"errors"
	"io"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/builder/storecopy"
)

// StoreCopier copies closures as `nix copy` does (builder/storecopy),
// without signature checks (the destination must trust the client, as a
// build machine trusts the user Nix's build hook logs in as).
var StoreCopier Copier = CopierFunc(func(ctx context.Context, from, to *daemon.Conn, paths []string) error {
	_, err := storecopy.CopyClosure(ctx, connStore{from}, connStore{to}, paths, storecopy.Options{AddOptions: storecopy.AddOptions{NoCheckSigs: true}})
	return err
})

// connStore is one connection as a storecopy Source and Dest.
type connStore struct{ c *daemon.Conn }

func (s connStore) QueryPathInfos(ctx context.Context, paths []string) ([]*daemon.PathInfo, error) {
	return s.c.QueryPathInfos(ctx, paths)
}

func (s connStore) NarsFromPaths(ctx context.Context, infos []*daemon.PathInfo, each func(int, io.Reader) error) error {
	return s.c.NarsFromPaths(ctx, infos, each)
}

func (s connStore) QueryValidPaths(ctx context.Context, paths []string) ([]string, error) {
	return s.c.QueryValidPaths(ctx, paths, false)
}

func (s connStore) AddNars(ctx context.Context, n int, next func(int) (daemon.NarSource, error), opts storecopy.AddOptions) error {
	errs, err := s.c.AddToStoreNars(ctx, n, next, opts.Repair, opts.NoCheckSigs)
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}
