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
	return writeAll(ctx, c, res, false)
}

// RewriteWriteChunks is RewriteWrite with chunks of at most chunk
// derivations, edit (when not nil) applied to each rewritten derivation
// before it is written.
func RewriteWriteChunks(ctx context.Context, cl *Closure, opts Options, dial func(context.Context) (*daemon.Conn, error), chunk int, edit func(*Drv)) (*Result, error) {
	return rewriteWrite(ctx, cl, opts, dial, streamOptions{chunk: chunk, edit: edit})
}
