package lock

import (
	"fmt"
	"regexp"
	"strings"
)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedEnv are attribute names Nix gives a meaning to, or sets in the
// build environment itself: injecting a serial under one of them would
// change the build or be overwritten, and removing it (canonicalising)
// would damage the derivation.
var reservedEnv = map[string]bool{
	// derivation attributes and common output names
	"name": true, "system": true, "builder": true, "args": true, "outputs": true,
	"out": true, "bin": true, "dev": true, "lib": true, "man": true, "doc": true,
	"info": true, "devdoc": true, "static": true, "debug": true, "include": true,
	// attributes Nix interprets
	"allowedReferences": true, "allowedRequisites": true, "disallowedReferences": true,
	"disallowedRequisites": true, "exportReferencesGraph": true, "impureEnvVars": true,
	"outputHash": true, "outputHashAlgo": true, "outputHashMode": true, "passAsFile": true,
	"preferLocalBuild": true, "allowSubstitutes": true, "requiredSystemFeatures": true,
	"outputChecks": true, "unsafeDiscardReferences": true, "contentAddressed": true,
	// variables Nix sets in the build environment
	"PATH": true, "HOME": true, "NIX_STORE": true, "NIX_BUILD_TOP": true, "NIX_BUILD_CORES": true,
	"NIX_LOG_FD": true, "NIX_ATTRS_JSON_FILE": true, "NIX_ATTRS_SH_FILE": true,
	"TMPDIR": true, "TEMPDIR": true, "TMP": true, "TEMP": true, "PWD": true, "TERM": true,
}

// ValidateEnv checks that name can carry a serial: a shell-safe variable
// name that Nix neither interprets nor sets itself. The registry
// (registry.toml env), the lock and the rewrite all apply it.
func ValidateEnv(name string) error {
	if !envNameRE.MatchString(name) {
		return fmt.Errorf("%q is not a valid environment variable name (letters, digits, _; not starting with a digit)", short(name))
	}
	if strings.HasPrefix(name, "__") {
		return fmt.Errorf("%q starts with __, which Nix reserves for its own attributes", name)
	}
	if reservedEnv[name] {
		return fmt.Errorf("%q is an attribute Nix interprets or sets itself", name)
	}
	return nil
}

// short cuts a name for messages to 80 bytes.
func short(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:80] + "..."
}
