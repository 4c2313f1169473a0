package resolver

// WithRename returns o with its file renames done by f (to inject
// failures between the two renames of a lock and poison.nix).
func WithRename(o UpdateOptions, f func(oldpath, newpath string) error) UpdateOptions {
	o.rename = f
	return o
}
