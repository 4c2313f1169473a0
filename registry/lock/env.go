package lock

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

var envNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`) })

// reservedEnv are attribute names Nix or stdenv give a meaning to, or that
// Nix sets in the build environment itself: injecting a serial under one
// of them would change the build or be overwritten, and removing it
// (canonicalising) would damage the derivation. The value says who reads
// the name. Sources: the Nix manual (Derivations; Advanced Attributes; the
// builder's environment) and the nixpkgs manual (stdenv: phases, their
// variables and hooks, multiple outputs). reservedEnvRules cover the
// families of names stdenv reads.
var reservedEnv = func() map[string]string {
	m := map[string]string{}
	add := func(who string, names ...string) {
		for _, n := range names {
			m[n] = who
		}
	}
	add("a derivation attribute Nix interprets",
		"name", "system", "builder", "args", "outputs",
		"allowedReferences", "allowedRequisites", "disallowedReferences",
		"disallowedRequisites", "exportReferencesGraph", "impureEnvVars",
		"outputHash", "outputHashAlgo", "outputHashMode", "passAsFile",
		"preferLocalBuild", "allowSubstitutes", "requiredSystemFeatures",
		"outputChecks", "unsafeDiscardReferences", "contentAddressed")
	add("a common output name (Nix sets each output's path under its name)",
		"out", "bin", "dev", "lib", "man", "doc", "info", "devdoc", "static",
		"debug", "include", "devman", "python", "modules", "data", "tools")
	add("a variable Nix sets in the build environment",
		"PATH", "HOME", "TMPDIR", "TEMPDIR", "TMP", "TEMP", "PWD", "TERM",
		"SHELL", "SSL_CERT_FILE", "IN_NIX_SHELL")
	add("a variable stdenv's setup interprets",
		"phases", "src", "srcs", "sourceRoot", "setSourceRoot", "unpackCmd",
		"patches", "patchFlags", "stdenv", "shell", "strictDeps", "pname",
		"version", "meta", "passthru", "buildCommand", "buildCommandPath",
		"enableParallelBuilding", "enableParallelChecking",
		"enableParallelInstalling", "separateDebugInfo", "setupHook",
		"hardeningEnable", "hardeningDisable", "makefile", "configureScript",
		"prefix", "prefixKey", "buildTargets", "checkTarget",
		"installCheckTarget", "installTargets", "distTarget", "tarballs",
		"SOURCE_DATE_EPOCH", "LANG", "LC_ALL", "TZ", "HOST_PATH",
		"NIX_DEBUG", "stripDebugList", "stripAllList", "propagatedBuildOutputs",
		"moveToDev", "forceShare")
	return m
}()

// reservedEnvRules are the families of names stdenv's setup (or Nix, for
// NIX_) reads: a phase switch (dontBuild, doCheck), a phase or phase list
// (buildPhase, preConfigurePhases), a hook (preBuild, postInstall,
// setupHook), flags and inputs (makeFlags, nativeBuildInputs), and the
// outputs of a multiple-output derivation (outputDev, outputBin).
var reservedEnvRules = []struct {
	match func(string) bool
	who   string
}{
	{func(s string) bool { return strings.HasPrefix(s, "NIX_") }, "a NIX_ variable, which Nix sets (NIX_BUILD_TOP, NIX_STORE, ...) and stdenv's compiler wrappers read (NIX_CFLAGS_COMPILE, ...)"},
	{func(s string) bool { return camelPrefix(s, "dont") || camelPrefix(s, "do") }, "a phase switch stdenv's setup reads (dontBuild, doCheck, ...)"},
	{func(s string) bool { return strings.HasSuffix(s, "Phase") || strings.HasSuffix(s, "Phases") }, "a phase or phase list stdenv's setup runs (buildPhase, preConfigurePhases, ...)"},
	{func(s string) bool {
		return camelPrefix(s, "pre") || camelPrefix(s, "post") || strings.HasSuffix(s, "Hook") || strings.HasSuffix(s, "Hooks")
	}, "a hook stdenv's setup runs (preBuild, postInstall, setupHook, ...)"},
	{func(s string) bool {
		return strings.HasSuffix(s, "Flags") || strings.HasSuffix(s, "FlagsArray") || strings.HasSuffix(s, "Inputs") || camelPrefix(s, "deps")
	}, "a flags or inputs variable stdenv's setup reads (makeFlags, nativeBuildInputs, depsBuildBuild, ...)"},
	{func(s string) bool { return camelPrefix(s, "output") }, "an output choice of stdenv's multiple-outputs setup (outputDev, outputBin, ...)"},
}

// camelPrefix reports whether s is prefix followed by an upper-case
// letter (dontBuild for "dont", not "donut").
func camelPrefix(s, prefix string) bool {
	return len(s) > len(prefix) && strings.HasPrefix(s, prefix) && s[len(prefix)] >= 'A' && s[len(prefix)] <= 'Z'
}

// envHint ends every refusal: what to use instead.
const envHint = "; choose another name such as " + DefaultEnv

// ValidateEnv checks that name can carry a serial: a shell-safe variable
// name that neither Nix nor stdenv interprets and Nix does not set itself.
// The registry (registry.toml env, init --env), the lock and the rewrite
// all apply it. Its error is one line ending in what to use instead.
func ValidateEnv(name string) error {
	if !envNameRE().MatchString(name) {
		return fmt.Errorf("%q is not a valid environment variable name (letters, digits, _; not starting with a digit)%s", short(name), envHint)
	}
	if strings.HasPrefix(name, "__") {
		return fmt.Errorf("%q starts with __, which Nix reserves for its own attributes (__structuredAttrs, ...)%s", name, envHint)
	}
	if who, ok := reservedEnv[name]; ok {
		return fmt.Errorf("%q is %s%s", name, who, envHint)
	}
	for _, r := range reservedEnvRules {
		if r.match(name) {
			return fmt.Errorf("%q is %s%s", name, r.who, envHint)
		}
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
