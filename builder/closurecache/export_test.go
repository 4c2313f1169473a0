package closurecache

// FileOf is the name of the record of k in its cache directory.
func FileOf(k Key) string { return k.file() }
