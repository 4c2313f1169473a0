package builder_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/internal/aterm"
	"github.com/poison-nix/poison/registry/lock"
)

const (
	hA = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"
	hB = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"
	hC = "0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c"
	hO = "1111111111111111111111111111111a"
)

// drvText is a small derivation with the given inputs and env.
func drvText(name string, inputs []string, env string) string {
	var ins []string
	for _, in := range inputs {
		ins = append(ins, `("/nix/store/`+in+`",["out"])`)
	}
	if env == "" {
		env = `("out","/nix/store/` + hO + `-` + name + `")`
	}
	return `Derive([("out","/nix/store/` + hO + `-` + name + `","","")],[` + strings.Join(ins, ",") + `],[],"x86_64-linux","/bin/sh",[],[` + env + `])`
}

// TestBadInput: broken closures give one-line errors naming the
// derivation, never a panic or a path.
func TestBadInput(t *testing.T) {
	a := hA + "-a.drv"
	b := hB + "-b.drv"
	good := drvText("a", nil, "")
	cases := []struct {
		name     string
		files    map[string]string
		root     string
		want     []string // substrings of the error
		noVerify bool     // the made-up names do not match the contents
	}{
		{"content-does-not-match-path", map[string]string{a: good}, a, []string{a, "content does not match its store path"}, false},
		{"truncated", map[string]string{a: good[:40]}, a, []string{a, "malformed .drv file", "unterminated string"}, false},
		{"corrupt", map[string]string{a: strings.Replace(good, "Derive(", "Derivf(", 1)}, a, []string{a, "malformed"}, false},
		{"empty", map[string]string{a: ""}, a, []string{a, "malformed"}, false},
		{"missing-root", map[string]string{}, a, []string{a, "no such file"}, false},
		{"missing-input", map[string]string{a: drvText("a", []string{b}, "")}, a, []string{b, "input of /nix/store/" + a, "no such file"}, true},
		{"cycle", map[string]string{a: drvText("a", []string{b}, ""), b: drvText("b", []string{a}, "")}, a, []string{"cycle", ".drv"}, true},
		{"not-a-drv", map[string]string{}, hA + "-a", []string{"not a .drv path"}, false},
		{"bad-root-name", map[string]string{}, hA + "-a b.drv", []string{"which store path names cannot contain"}, false},
		{"bad-hash", map[string]string{}, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-a.drv", []string{"outside nixbase32"}, false},
		{"name-too-long", map[string]string{}, hA + "-" + strings.Repeat("x", 220) + ".drv", []string{"Nix allows at most 211"}, false},
		{"input-bad-name", map[string]string{a: drvText("a", []string{hB + "-b!x.drv"}, "")}, a, []string{a, "which store path names cannot contain"}, false},
		{"output-named-drv", map[string]string{a: strings.Replace(good, `[("out",`, `[("drv",`, 1)}, a, []string{a, `output name "drv"`}, false},
		{"env-unsorted", map[string]string{a: drvText("a", nil, `("z","1"),("a","2")`)}, a, []string{a, "not in the canonical form"}, false},
		{"fixed-output-wrong-path", map[string]string{a: `Derive([("out","/nix/store/` + hO + `-a","sha256","0000000000000000000000000000000000000000000000000000000000000000")],[],[],"x86_64-linux","/bin/sh",[],[("out","/nix/store/` + hO + `-a")])`}, a, []string{a, "does not match its hash"}, false},
		{"mixed-outputs", map[string]string{a: `Derive([("dev","","r:sha256",""),("out","/nix/store/` + hO + `-a","","")],[],[],"x86_64-linux","/bin/sh",[],[])`}, a, []string{a, "mixes output types"}, false},
		{"deferred-without-reason", map[string]string{a: `Derive([("out","","","")],[],[],"x86_64-linux","/bin/sh",[],[("out","")])`}, a, []string{a, "none of its inputs"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, text := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c, err := builder.LoadClosure(context.Background(), builder.LoadOptions{RealStoreDir: dir, NoVerify: tc.noVerify}, []string{"/nix/store/" + tc.root})
			if err == nil {
				_, err = builder.Rewrite(context.Background(), c, builder.Options{Lock: lock.New(lock.Source{}, lock.DefaultEnv)})
			}
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

// TestEscapedKeys: env keys and values that need escaping are rewritten
// exactly (the result parses back to the same keys).
func TestEscapedKeys(t *testing.T) {
	dir := t.TempDir()
	a := hA + "-a.drv"
	b := hB + "-b.drv"
	outA := "/nix/store/" + hO + "-a"
	if err := os.WriteFile(filepath.Join(dir, a), []byte(drvText("a", nil, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	env := `("k\"q","` + outA + `\t\\"),("out","/nix/store/` + hC + `-b"),("z\\","\n")`
	bText := strings.Replace(drvText("b", []string{a}, env), hO+"-b", hC+"-b", 1)
	if _, err := aterm.Parse(bText); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, b), []byte(bText), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := builder.LoadClosure(context.Background(), builder.LoadOptions{RealStoreDir: dir, NoVerify: true}, []string{"/nix/store/" + b})
	if err != nil {
		t.Fatal(err)
	}
	lk := lock.New(lock.Source{}, lock.DefaultEnv)
	lk.Derivations[a] = 1
	res, err := builder.Rewrite(context.Background(), c, builder.Options{Lock: lk})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changed) != 2 {
		t.Fatalf("%d changed, want 2", len(res.Changed))
	}
	d, err := aterm.Parse(string(res.Changed[1].ATerm))
	if err != nil {
		t.Fatalf("rewritten b does not parse: %v\n%s", err, res.Changed[1].ATerm)
	}
	newA := res.OutPaths[outA]
	if newA == outA {
		t.Fatal("a's output did not change")
	}
	if d.Env[0].Key != `k"q` || d.Env[0].Value != newA+"\t\\" || d.Env[len(d.Env)-1].Key != `z\` || d.Env[len(d.Env)-1].Value != "\n" {
		t.Fatalf("env after rewrite: %q", d.Env)
	}
}

// TestDrvTooLarge: a .drv file larger than the limit is refused from its
// size, before it is read, with one line naming it; a 1 GB (sparse) file
// under the default limit, a small one under a small limit.
func TestDrvTooLarge(t *testing.T) {
	a := hA + "-a.drv"
	for _, tc := range []struct {
		name string
		size int64
		max  int64
		want string
	}{
		{"1GB-default-limit", 1 << 30, 0, "more than the 64 MiB"},
		{"small-limit", 3 << 20, 2 << 20, "more than the 2 MiB"},
		{"under-one-read", 4000, 1000, "more than the 1000 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, a)
			if err := os.WriteFile(file, []byte(drvText("a", nil, "")), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(file, tc.size); err != nil {
				t.Fatal(err)
			}
			_, err := builder.LoadClosure(context.Background(), builder.LoadOptions{RealStoreDir: dir, MaxDrvSize: tc.max}, []string{"/nix/store/" + a})
			var tl *builder.TooLargeError
			if !errors.As(err, &tl) || tl.Size != tc.size || !strings.Contains(err.Error(), "/nix/store/"+a) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("LoadClosure of a %d-byte .drv = %v; want one line naming it, %q", tc.size, err, tc.want)
			}
		})
	}
}
