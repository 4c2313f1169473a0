package registry

import (
	"errors"
	"fmt"

	"github.com/poison-nix/poison/registry/gittree"
)

// LimitSettings maps each field of Limits to the poison setting that
// raises it (--NAME, POISON_NAME, NAME in poison.toml): a message naming a
// limit says which setting to change when the registry is right.
var LimitSettings = map[string]string{
	"Entries":    "max-entries",
	"Depth":      "max-tree-depth",
	"FileSize":   "max-entry-size",
	"TreeSize":   "max-tree-size",
	"TotalBytes": "max-registry-bytes",
}

// LimitHint is the end of a message about the limit field (a field of
// Limits): the setting that raises it.
func LimitHint(field string) string {
	return "; if the registry is right, raise the limit with --" + LimitSettings[field]
}

// limitError is err with, when it reports a limit of a git tree
// (*gittree.Error with Limit set), the setting that raises it appended to
// its one line. errors.Is and errors.As see through it.
func limitError(err error) error {
	var te *gittree.Error
	if err == nil || !errors.As(err, &te) || te.Limit == "" {
		return err
	}
	return fmt.Errorf("%w%s", err, LimitHint(te.Limit))
}
