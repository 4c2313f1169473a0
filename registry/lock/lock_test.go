package lock_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/poison-nix/poison/registry/lock"
)

func sample() *lock.File {
	f := lock.New(lock.Source{URL: "file:///srv/registry", Ref: "main", Commit: strings.Repeat("ab", 20)}, lock.DefaultEnv)
	f.Derivations["6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv"] = 2
	f.Derivations["0a0a0n92z10kb50fggvwqzi15jj32g5b-a.drv"] = 1
	f.Outputs["bgzy1gmnwailjvdn2v79cvkn4xmr45v8-b"] = 3
	f.Names["b"] = 3
	f.Names["openssl-3.0.13"] = 1
	return f
}

func TestMarshalDeterministicGolden(t *testing.T) {
	f := sample()
	a, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		b, err := sample().Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("marshal is not deterministic:\n%s\n%s", a, b)
		}
	}
	golden := filepath.Join("testdata", "sample.lock")
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(golden, a, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
	}
	if !bytes.Equal(a, want) {
		t.Errorf("marshal differs from %s:\n%s", golden, a)
	}
	g, err := lock.Unmarshal(a)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := g.Marshal()
	if !bytes.Equal(a, c) {
		t.Errorf("round trip changed bytes:\n%s\n%s", a, c)
	}
}

func TestSerial(t *testing.T) {
	f := sample()
	tests := []struct {
		drv  string
		outs []string
		want int
	}{
		{"6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv", nil, 2},
		{"6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv", []string{"bgzy1gmnwailjvdn2v79cvkn4xmr45v8-b"}, 3},
		{"zzzz0n92z10kb50fggvwqzi15jj32g5b-b.drv", []string{"bgzy1gmnwailjvdn2v79cvkn4xmr45v8-b"}, 3},
		{"zzzz0n92z10kb50fggvwqzi15jj32g5b-b.drv", []string{"x"}, 0},
	}
	for _, tt := range tests {
		if got := f.Serial(tt.drv, tt.outs); got != tt.want {
			t.Errorf("Serial(%s, %v) = %d, want %d", tt.drv, tt.outs, got, tt.want)
		}
	}
	if got := f.NameSerial("b"); got != 3 {
		t.Errorf("NameSerial(b) = %d, want 3", got)
	}
}

func TestUnmarshalRejects(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"version", `{"version":2,"registry":{"url":"","ref":"","commit":""},"env":"X","derivations":{},"outputs":{},"names":{}}`, "version 2 is not supported"},
		{"unknown field", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"X","extra":1}`, "unknown field"},
		{"env", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"a b"}`, `lock env: "a b" is not a valid environment variable name`},
		{"env an output", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"out"}`, `lock env: "out" is a common output name`},
		{"env reserved", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"__json"}`, `"__json" starts with __`},
		{"env stdenv", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"dontBuild"}`, `lock env: "dontBuild" is a phase switch stdenv's setup reads (dontBuild, doCheck, ...); choose another name such as POISON_SERIAL`},
		{"env NIX_", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"NIX_SERIAL"}`, `lock env: "NIX_SERIAL" is a NIX_ variable`},
		{"drv key", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"X","derivations":{"/nix/store/6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv":1}}`, "not a .drv store path base name"},
		{"zero serial", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"X","outputs":{"6jqi0n92z10kb50fggvwqzi15jj32g5b-b":0}}`, "at least 1"},
		{"commit", `{"version":1,"registry":{"url":"","ref":"","commit":"xyz"},"env":"X"}`, "40-digit"},
		{"name key injection", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"X","names":{"${builtins.abort \"x\"}":1}}`, `lock names key "${builtins.abort \"x\"}" is not a derivation name`},
		{"name key quote", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"X","names":{"a\"b":1}}`, `lock names key "a\"b" is not a derivation name`},
		{"name key newline", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"X","names":{"a\nb":1}}`, `lock names key "a\nb" is not a derivation name`},
		{"name key empty", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"X","names":{"":1}}`, `lock names key "" is not a derivation name (empty name)`},
		{"name key dot", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"X","names":{".hidden":1}}`, "run 'poison resolve' to regenerate the lock"},
		{"storeDir dotdot", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"X","storeDir":"/nix/../etc"}`, `lock storeDir: store directory "/nix/../etc" has an empty, "." or ".." component; write a clean absolute directory such as /nix/store`},
		{"storeDir root", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"X","storeDir":"/"}`, `lock storeDir: store directory "/" is the root directory`},
		{"storeDir char", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"X","storeDir":"/nix/${x}"}`, `has the character '$'`},
		{"trailing", `{"version":1,"registry":{"url":"","ref":"","commit":""},"env":"X"} {}`, "trailing data"},
		{"truncated", `{"version":1,`, "decode lock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := lock.Unmarshal([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Unmarshal error = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Unmarshal error spans lines: %q", err)
			}
			// A lock that decodes but breaks an invariant says what to do.
			decodeErr := strings.HasPrefix(err.Error(), "decode lock")
			if hint := "; run 'poison resolve' to regenerate the lock"; !decodeErr && !strings.HasSuffix(err.Error(), hint) {
				t.Errorf("Unmarshal error %q does not end in %q", err, hint)
			}
		})
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "poison.lock")
	if _, err := lock.ReadFile(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadFile of a missing lock = %v, want fs.ErrNotExist", err)
	}
	f := sample()
	if err := f.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	bad := sample()
	bad.Env = "not valid"
	if err := bad.WriteFile(path); err == nil {
		t.Fatal("WriteFile of an invalid lock succeeded")
	}
	got, err := lock.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Env != f.Env || got.Derivations["6jqi0n92z10kb50fggvwqzi15jj32g5b-b.drv"] != 2 {
		t.Errorf("lock changed by a failed write: %+v", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	// A device or directory is never replaced by the rename.
	for _, target := range []string{os.DevNull, dir} {
		if err := lock.WriteAtomic(target, []byte("x"), 0o644); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("WriteAtomic(%s) = %v, want a refusal", target, err)
		}
	}
	if fi, err := os.Stat(os.DevNull); err != nil || fi.Mode().IsRegular() {
		t.Fatalf("%s is no longer a device: %v", os.DevNull, err)
	}
	// A directory that cannot be written leaves no file and reports the path.
	if err := f.WriteFile(filepath.Join(dir, "missing", "poison.lock")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("WriteFile into a missing directory: %v", err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	b, _ := sample().Marshal()
	f.Add(b)
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := lock.Unmarshal(data)
		if err != nil {
			return
		}
		out, err := g.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		h, err := lock.Unmarshal(out)
		if err != nil {
			t.Fatalf("re-decoding own output: %v\n%s", err, out)
		}
		out2, _ := h.Marshal()
		if !bytes.Equal(out, out2) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
	})
}

// TestValidateEnv: names Nix or stdenv give a meaning to are refused in
// one line ending in what to use instead; ordinary names pass, including
// ones that merely resemble a reserved family.
func TestValidateEnv(t *testing.T) {
	for _, ok := range []string{"POISON_SERIAL", "E", "SERIAL_2", "poison", "donut", "dot", "preset", "postal", "output", "NIX", "NIXSERIAL", "myFlag", "Phase1", "inputs"} {
		if err := lock.ValidateEnv(ok); err != nil {
			t.Errorf("ValidateEnv(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{
		"", "1A", "A-B", "__structuredAttrs", "__json", "name", "system", "builder", "args", "outputs", "out", "dev",
		"outputHash", "passAsFile", "allowedReferences", "PATH", "HOME", "TMPDIR", "NIX_BUILD_TOP", "NIX_CFLAGS_COMPILE", "NIX_SERIAL",
		"dontBuild", "dontUnpack", "doCheck", "doInstallCheck", "phases", "buildPhase", "preConfigurePhases", "preBuild",
		"postInstall", "setupHook", "makeFlags", "configureFlagsArray", "nativeBuildInputs", "depsBuildBuild", "outputDev",
		"src", "srcs", "sourceRoot", "patches", "pname", "version", "stdenv", "strictDeps", "enableParallelBuilding",
		"SOURCE_DATE_EPOCH", "hardeningDisable", "separateDebugInfo",
	} {
		err := lock.ValidateEnv(bad)
		if err == nil {
			t.Errorf("ValidateEnv(%q) = nil, want it refused", bad)
			continue
		}
		if msg := err.Error(); !strings.HasSuffix(msg, "; choose another name such as POISON_SERIAL") || strings.Contains(msg, "\n") {
			t.Errorf("ValidateEnv(%q) = %q: want one line ending in what to use instead", bad, msg)
		}
	}
}
