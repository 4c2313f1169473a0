package builder

import "context"

// RewriteGeneral is Rewrite with the in-place patching of rewriteSpliced
// turned off: every changed derivation is re-serialised. Tests require both
// to give the same Result.
func RewriteGeneral(ctx context.Context, c *Closure, opts Options) (*Result, error) {
	opts.noSplice = true
	return Rewrite(ctx, c, opts)
}
