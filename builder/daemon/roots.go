package daemon

import "context"

// opAddIndirectRoot is wopAddIndirectRoot.
const opAddIndirectRoot = 12

// AddIndirectRoot registers the symlink at path (absolute, on the
// daemon's machine) as a garbage collector root: the daemon links to it
// from its gcroots/auto directory, and whatever the symlink points to in
// the store stays alive while the symlink exists. This is how nix-build
// protects its result links.
func (c *Conn) AddIndirectRoot(ctx context.Context, path string) error {
	return c.simple(ctx, "AddIndirectRoot", opAddIndirectRoot, func() { c.writeString(path) }, func() error {
		_, err := c.readU64()
		return err
	})
}
