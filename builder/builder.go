// Package builder rewrites Nix derivation closures with poison serials,
// exactly as Nix 2.8 would have written them, and builds the result through
// the nix-daemon.
//
//	c, err := builder.LoadClosure(ctx, builder.LoadOptions{StoreDir: "/nix/store"}, roots)
//	res, err := builder.Rewrite(ctx, c, builder.Options{Lock: lk, ByName: false})
//	res.DrvPaths[oldDrv]   // new .drv path of every closure member (identity if unchanged)
//	res.OutPaths[oldOut]   // new output path of every output of every member (identity if unchanged)
//	res.Roots              // new .drv paths of the roots, in argument order
//	res.Changed            // rewritten derivations in topological order (inputs first)
//	res.Poisoned           // the derivations that received a serial
//
// The rewrite follows docs/rewrite.md R1–R8: derivations are visited in
// topological order (inputDrvs, .drv paths in inputSrcs, and textual
// mentions of other members' hash parts); each is canonicalised (the
// attribute removed), looked up in the lock by its canonical .drv and
// output base names, given the attribute (in env, or in __json for
// structured attrs), and rewritten where it or a dependency changed:
// hash parts replaced everywhere (also in names and keys), inputDrvs
// re-keyed, output paths recomputed with hashDerivationModulo (merged input
// sets, each derivation hashed once) and the .drv path computed as a text
// path over its reference set. Fixed-output derivations change their .drv
// path but not their output path (a Warning says so). Floating
// content-addressed, impure and deferred derivations are rewritten as Nix
// does: their outputs stay empty and dependents' placeholders are remapped.
//
// Unchanged derivations keep their paths and are never re-serialised. Most
// changed ones are not either: LoadClosure records where in each file the
// hash parts of other members are, and Rewrite patches those bytes and the
// inputDrvs section when that gives what re-serialising would (the
// attribute unchanged, no hash in the name, env keys or JSON keys, no
// placeholders); the rest are parsed values written back as Nix writes
// them. An output hash part shared by twins (two members with the same output
// path) is attributed through the dependent's inputDrvs, and Rewrite
// fails, naming the derivation, when that cannot decide.
package builder

import "github.com/poison-nix/poison/registry/lock"

// LoadOptions configures LoadClosure.
type LoadOptions struct {
	// StoreDir is the logical store directory, "/nix/store" when empty.
	StoreDir string
	// RealStoreDir is where .drv files are read from when it differs from
	// StoreDir (a chroot store); StoreDir when empty.
	RealStoreDir string
	// Parallelism bounds concurrent parsing; GOMAXPROCS when 0.
	Parallelism int
	// NoVerify skips checking that every file's content gives its own
	// .drv path (a text path over its bytes and references). The check
	// catches altered files; it costs one SHA-256 pass over the closure.
	NoVerify bool
	// MaxDrvSize is the largest .drv file read, DefaultMaxDrvSize when 0.
	// A larger file is refused before it is read.
	MaxDrvSize int64
}

// DefaultMaxDrvSize bounds the size of a .drv file (64 MiB): far above the
// largest real derivations (a few MiB, with big structured attributes or
// passAsFile contents), far below what would exhaust memory.
const DefaultMaxDrvSize = 64 << 20

// Options configures Rewrite.
type Options struct {
	// Lock holds the serials and the attribute name (Lock.Env). A lock with
	// no entries canonicalises the closure (removes every serial).
	Lock *lock.File
	// ByName also applies Lock.Names (docs/rewrite.md).
	ByName bool
	// NoATerm leaves Drv.ATerm nil, for callers that only need the paths
	// (saves the memory of every rewritten file).
	NoATerm bool
	// Warn receives notices such as "fixed-output derivation poisoned:
	// nothing will rebuild". May be nil.
	Warn func(Warning)

	// noSplice makes every rewrite re-serialise the derivation (tests
	// compare it with the patching fast path).
	noSplice bool
	// emit, when set, receives every rewritten derivation as soon as it
	// is computed, while the rewrite goes on (RewriteWrite writes them
	// meanwhile). It is called from several goroutines, but only after
	// the calls for all the rewritten inputs of the derivation have
	// returned: calls in the order of their returns are inputs first.
	emit func(Drv)
}

// Warning is a notice about the rewrite that does not stop it.
type Warning struct {
	DrvPath string // the derivation concerned (original path)
	Message string
}

// Poison describes one derivation that received a serial.
type Poison struct {
	DrvPath          string // original .drv path
	CanonicalDrvPath string // .drv path with every serial removed (the registry key)
	NewDrvPath       string
	Name             string
	Serial           int
	ByName           bool // the serial came from Lock.Names
	FixedOutput      bool // poisoning it changes no output path
	// Entries are the lock keys that carry the serial, sorted:
	// "derivations/<base>", "outputs/<base>" or "names/<name>".
	Entries []string
}

// Drv is one rewritten derivation ready to be added to a store.
type Drv struct {
	Path       string   // new .drv path
	OldPath    string   // original .drv path
	Name       string   // derivation name (store path name without ".drv")
	ATerm      []byte   // the exact file content
	References []string // inputDrvs ∪ inputSrcs, sorted full store paths
	Outputs    map[string]string
}

// Result is the outcome of Rewrite.
type Result struct {
	// Roots are the new .drv paths of the roots, in argument order.
	Roots []string
	// DrvPaths maps every original .drv path to its new path (itself
	// when unchanged).
	DrvPaths map[string]string
	// OutPaths maps every original output path to its new path. Twins
	// share an old output path; when only one changes, the entry holds
	// one of them: use Changed[].Outputs for those.
	OutPaths map[string]string
	// Changed are the rewritten derivations, inputs first.
	Changed []Drv
	// Poisoned are the derivations with a serial, inputs first.
	Poisoned []Poison

	spliced int // how many of Changed were patched, not re-serialised (tests)
}
