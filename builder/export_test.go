package builder

import (
	"context"

	"github.com/poison-nix/poison/builder/daemon"
)

// RewriteGeneral is Rewrite with the in-place patching of rewriteSpliced
// turned off: every changed derivation is re-serialised. Tests require both
// to give the same Result.
func RewriteGeneral(ctx context.Context, c *Closure, opts Options) (*Result, error) {
	opts.noSplice = true
	return Rewrite(ctx, c, opts)
}

// WriteTexts is Write without AddMultipleToStore: one pipelined AddToStore
// per derivation, as against daemons older than protocol 1.32.
func WriteTexts(ctx context.Context, c *daemon.Conn, res *Result) error {
	return writeWith(ctx, c, res.Changed, tempRoots(res), false)
}
