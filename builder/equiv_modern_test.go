package builder_test

// Equivalence with a modern Nix: the tests of equiv_test.go with Nix 2.26
// (Debian trixie's nix-bin, unpacked by scripts/modern-nix.sh) writing into
// its chroot store DIR/store, which LoadClosure reads through RealStoreDir.
// They run when POISON_MODERN_NIX=DIR/bin is set (scripts/test.sh sets it)
// and fail without it under POISON_REQUIRE_NIX=1.
//
//	scripts/modern-nix.sh /tmp/modern-nix
//	POISON_MODERN_NIX=/tmp/modern-nix/bin go test ./builder -run Modern
//
// The generated graphs are those of TestEquivGenerated (3 seeds × 300 nodes,
// POISON_EQUIV_SEEDS, -long), every case kind; then the graphs of
// testdata/graphs, ca/ (floating CA, impure) and ambiguous/. Where Nix 2.26
// and Nix 2.8 disagree, testdata/graphs/nix-versions reproduces it
// (TestModernNixVersions). All of it takes about 30 s here (2 cores, cold
// chroot store).

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
)

// modernNix returns Nix 2.26 from POISON_MODERN_NIX, or skips (fails under
// POISON_REQUIRE_NIX=1) when it is not set or does not run.
func modernNix(t *testing.T) equivNix {
	t.Helper()
	bin := daemontest.ModernNix(t)
	// modern-nix.sh's nix.conf has store = DIR/store: a chroot store keeps
	// the logical /nix/store and puts it on disk at DIR/store/nix/store.
	// Its nix.conf also enables ca-derivations and impure-derivations, and
	// the wrappers drop NIX_CONFIG, so no environment is passed.
	return equivNix{bin: bin, realStore: filepath.Join(filepath.Dir(bin), "store", "nix", "store")}
}

// modernUTF8Error is how Nix 2.26 refuses a __structuredAttrs string that
// is not UTF-8 (testdata/graphs/nix-versions/json-utf8.nix).
const modernUTF8Error = "json.exception.type_error.316"

// modernPrep gives Nix 2.26 a variant of each graph file it can instantiate:
// the file itself, or, when Nix 2.26 refuses its __structuredAttrs strings
// that are not UTF-8 (which Nix 2.8 writes raw), a copy whose invalid UTF-8
// is replaced. That affects graphgen's graphs (the tricky string "latin1
// \xe9\xff raw") and escape.nix; latin1-env.nix keeps raw bytes in plain
// derivations, which Nix 2.26 accepts.
func modernPrep(nix equivNix) equivPrep {
	return func(t *testing.T, file string) string {
		t.Helper()
		_, err := nix.eval(file, "")
		if err == nil {
			return file
		}
		if !strings.Contains(err.Error(), modernUTF8Error) {
			t.Fatal(err)
		}
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), filepath.Base(file))
		if err := os.WriteFile(out, bytes.ToValidUTF8(src, []byte("\u00e9")), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: Nix 2.26 refuses __structuredAttrs strings that are not UTF-8; testing a copy without invalid UTF-8", filepath.Base(file))
		return out
	}
}

// TestEquivModernGenerated is TestEquivGenerated against Nix 2.26: the same
// seeds (POISON_EQUIV_SEEDS, -long) and every case kind.
func TestEquivModernGenerated(t *testing.T) {
	nix := modernNix(t)
	seeds, nodes := equivSeeds(t)
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			t.Parallel()
			equivGenerated(t, seed, nodes, nix, modernPrep(nix))
		})
	}
}

// TestEquivModernTestdata is TestEquivTestdata against Nix 2.26.
func TestEquivModernTestdata(t *testing.T) {
	nix := modernNix(t)
	equivFiles(t, filepath.Join("..", "testdata", "graphs", "*.nix"), nix, false, modernPrep(nix))
}

// TestEquivModernFloatingCA is TestEquivFloatingCA against Nix 2.26, whose
// nix.conf (modern-nix.sh) enables ca-derivations and impure-derivations.
func TestEquivModernFloatingCA(t *testing.T) {
	nix := modernNix(t)
	equivFiles(t, filepath.Join("..", "testdata", "graphs", "ca", "*.nix"), nix, true, modernPrep(nix))
}

// TestEquivModernAmbiguous is TestEquivAmbiguous against Nix 2.26.
func TestEquivModernAmbiguous(t *testing.T) {
	nix := modernNix(t)
	equivFiles(t, filepath.Join("..", "testdata", "graphs", "ambiguous", "*.nix"), nix, true, modernPrep(nix))
}

// TestModernNixVersions checks the differences between Nix 2.8 and Nix 2.26
// that testdata/graphs/nix-versions reproduces, and that the rewrite
// reproduces each Nix on them.
func TestModernNixVersions(t *testing.T) {
	nixtest.Need(t)
	modern := modernNix(t)
	system := systemNix(nixtest.Environ())
	dir, err := filepath.Abs(filepath.Join("..", "testdata", "graphs", "nix-versions"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("json-utf8", func(t *testing.T) {
		file := filepath.Join(dir, "json-utf8.nix")
		if _, err := system.eval(file, ""); err != nil {
			t.Fatalf("Nix 2.8: %v", err)
		}
		if _, err := modern.eval(file, ""); err == nil || !strings.Contains(err.Error(), modernUTF8Error) {
			t.Fatalf("Nix 2.26 no longer refuses a __structuredAttrs string that is not UTF-8 (%v): update modernPrep and nix-versions/README.md", err)
		}
		equivFiles(t, file, system, false, nil)
	})
	t.Run("json-float", func(t *testing.T) {
		file := filepath.Join(dir, "json-float.nix")
		old, err := system.eval(file, "")
		if err != nil {
			t.Fatalf("Nix 2.8: %v", err)
		}
		cur, err := modern.eval(file, "")
		if err != nil {
			t.Fatalf("Nix 2.26: %v", err)
		}
		for a, differ := range map[string]bool{"floats": true, "dep": true, "plain": false} {
			if (old[a].Drv != cur[a].Drv) != differ || (old[a].Outs["out"] != cur[a].Outs["out"]) != differ {
				t.Errorf("%s: Nix 2.8 %v, Nix 2.26 %v; want them to differ: %v", a, old[a], cur[a], differ)
			}
		}
		for _, c := range []struct {
			nix  equivNix
			path string
			want string
		}{{system, old["floats"].Drv, `0.000123457,42,1.23457e+06,3.14159,1e+20`}, {modern, cur["floats"].Drv, `0.000123456789,42.0,1234567.0,3.14159265,1e+20`}} {
			data, err := os.ReadFile(c.nix.real(c.path))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(data, []byte(c.want)) {
				t.Errorf("%s does not print the floats as %s:\n%s", c.path, c.want, data)
			}
		}
		equivFiles(t, file, system, false, nil)
		equivFiles(t, file, modern, false, nil)
	})
}
