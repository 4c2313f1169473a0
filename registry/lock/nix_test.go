package lock_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/registry/lock"
)

// hostile are strings that would break or inject code into a naively
// quoted Nix string, plus attribute names Nix treats specially.
var hostile = []string{
	`a"b`,
	`back\slash`,
	`trailing\`,
	`${builtins.abort "pwned"}`,
	`$${builtins.abort "pwned"}`,
	`\${builtins.abort "pwned"}`,
	`$\${x}`,
	`$`,
	`x$`,
	`$$`,
	`$"`,
	`''${x}''`,
	`" + builtins.abort "x" + "`,
	`"; injected = builtins.abort "x"; y = "`,
	"line\nbreak",
	"tab\tcr\r\nend",
	"ctl\x01\x1f\x7f",
	"ünïcödé-✓-日本",
	"raw\xff\xfe\x80latin1\xe9",
	"#not-a-comment",
	"/* not a comment */",
	"__toString",
	"__functor",
	"outPath",
	"type",
	"recurseForDerivations",
	" ",
	"",
}

func hostileLock() *lock.File {
	f := lock.New(lock.Source{
		URL:    "file:///srv/re\"gi${builtins.abort \"u\"}stry\n",
		Ref:    `ma$in\`,
		Commit: strings.Repeat("ab", 20),
	}, "POISON_SERIAL")
	for i, s := range hostile {
		f.Names[s] = i + 1
		f.Derivations["0a0a0n92z10kb50fggvwqzi15jj32g5b-"+s+".drv"] = i + 2
		f.Outputs[s] = 1000 + i
	}
	return f
}

// randomLock holds names made of arbitrary bytes (no NUL), biased towards
// the characters the escaping cares about.
func randomLock(seed int64, n int) *lock.File {
	r := rand.New(rand.NewSource(seed))
	alphabet := []byte("\"\\${}'\n\r\t#/* a\x01\xff\xc3\xa9")
	f := lock.New(lock.Source{URL: "u", Ref: "r"}, "E")
	for len(f.Names) < n {
		b := make([]byte, r.Intn(12))
		for i := range b {
			if r.Intn(3) == 0 {
				b[i] = byte(1 + r.Intn(255))
			} else {
				b[i] = alphabet[r.Intn(len(alphabet))]
			}
		}
		f.Names[string(b)] = 1 + r.Intn(1<<20)
	}
	return f
}

// evalExpr maps every string of a poison.nix to its sha256 (hashString
// works on raw bytes; JSON output would mangle non-UTF-8), so the result
// compares byte-exactly with the lock's data.
const evalExpr = `{ file }:
let
  p = import file;
  h = builtins.hashString "sha256";
  m = s: builtins.listToAttrs (map (k: { name = h k; value = s.${k}; }) (builtins.attrNames s));
in {
  attrs = builtins.attrNames p;
  derivations = m p.derivations;
  env = h p.env;
  names = m p.names;
  outputs = m p.outputs;
  registry = builtins.mapAttrs (k: v: h v) p.registry;
  storeDir = h p.storeDir;
  version = p.version;
}
`

type evaluated struct {
	Attrs       []string          `json:"attrs"`
	Derivations map[string]int    `json:"derivations"`
	Env         string            `json:"env"`
	Names       map[string]int    `json:"names"`
	Outputs     map[string]int    `json:"outputs"`
	Registry    map[string]string `json:"registry"`
	StoreDir    string            `json:"storeDir"`
	Version     int               `json:"version"`
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func hashed(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[sum(k)] = v
	}
	return out
}

func expected(f *lock.File) evaluated {
	return evaluated{
		Attrs:       []string{"derivations", "env", "names", "outputs", "registry", "storeDir", "version"},
		Derivations: hashed(f.Derivations),
		Env:         sum(f.Env),
		Names:       hashed(f.Names),
		Outputs:     hashed(f.Outputs),
		Registry:    map[string]string{"commit": sum(f.Registry.Commit), "ref": sum(f.Registry.Ref), "url": sum(f.Registry.URL)},
		StoreDir:    sum(f.Store()),
		Version:     f.Version,
	}
}

// TestNixEvaluatesToLock writes poison.nix for locks full of hostile
// strings, imports it with the real nix-instantiate and checks that every
// key and value is exactly the lock's, byte for byte.
func TestNixEvaluatesToLock(t *testing.T) {
	nixtest.Need(t)
	dir := t.TempDir()
	exprFile := filepath.Join(dir, "eval.nix")
	if err := os.WriteFile(exprFile, []byte(evalExpr), 0o644); err != nil {
		t.Fatal(err)
	}
	custom := sample()
	custom.StoreDir = "/gnu/store"
	tests := []struct {
		name string
		lock *lock.File
	}{
		{"sample", sample()},
		{"empty", lock.New(lock.Source{}, lock.DefaultEnv)},
		{"storeDir", custom},
		{"hostile", hostileLock()},
		{"random", randomLock(1, 300)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, tt.name+".nix")
			if err := os.WriteFile(file, tt.lock.Nix(), 0o644); err != nil {
				t.Fatal(err)
			}
			out := nixtest.Output(t, "nix-instantiate", "--eval", "--strict", "--json", "--argstr", "file", file, exprFile)
			var got evaluated
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("decode %s: %v", out, err)
			}
			if want := expected(tt.lock); !reflect.DeepEqual(got, want) {
				t.Errorf("%s evaluates to\n%+v\nwant\n%+v", file, got, want)
			}
		})
	}
}

// TestNixNUL: a string Nix cannot hold makes evaluation of that part fail
// with a message naming the field, and WriteNixFile refuses it (a name
// key never gets that far: Validate refuses it as a name, so the refusal
// is shown on the registry URL, a string Validate leaves free).
func TestNixNUL(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "poison.nix")
	u := sample()
	u.Registry.URL = "file:///srv/bad\x00registry"
	err := u.WriteNixFile(path)
	if err == nil || !strings.Contains(err.Error(), "lock registry url") || !strings.Contains(err.Error(), "NUL byte") {
		t.Fatalf("WriteNixFile = %v, want a NUL byte error naming the registry url", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatalf("WriteNixFile left %s behind", path)
	}
	f := sample()
	f.Names["bad\x00name"] = 1
	err = f.WriteNixFile(path)
	if err == nil || !strings.Contains(err.Error(), "is not a derivation name") {
		t.Fatalf("WriteNixFile = %v, want the name key refused", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatalf("WriteNixFile left %s behind", path)
	}
	nixtest.Need(t)
	if err := os.WriteFile(path, f.Nix(), 0o644); err != nil {
		t.Fatal(err)
	}
	// The rest of the file is still usable; names is not.
	if got := nixtest.Output(t, "nix-instantiate", "--eval", "--strict", "-E", "(import "+path+").env"); got != `"POISON_SERIAL"` {
		t.Errorf("env = %s", got)
	}
	cmd := nixtest.Command("nix-instantiate", "--eval", "--strict", "-E", "builtins.attrNames (import "+path+").names")
	out, err := cmd.CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("names key contains a NUL byte")) {
		t.Errorf("evaluating names: err %v, output %s; want a NUL byte error", err, out)
	}
}

func TestWriteNixFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "poison.nix")
	if err := sample().WriteNixFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, sample().Nix()) {
		t.Errorf("WriteNixFile wrote\n%s\nwant\n%s", got, sample().Nix())
	}
	bad := sample()
	bad.Names["x"] = 0
	if err := bad.WriteNixFile(path); err == nil {
		t.Error("WriteNixFile accepted an invalid lock")
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, got) {
		t.Error("a refused write changed the previous file")
	}
}

func TestNixGolden(t *testing.T) {
	a := sample().Nix()
	for i := 0; i < 20; i++ {
		if b := sample().Nix(); !bytes.Equal(a, b) {
			t.Fatalf("Nix is not deterministic:\n%s\n%s", a, b)
		}
	}
	golden := filepath.Join("testdata", "sample.nix")
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
		t.Errorf("Nix differs from %s:\n%s", golden, a)
	}
}

// FuzzNix checks that the output of Nix for arbitrary names and values
// reads back, under the string rules of Nix's lexer, to exactly the
// lock's data, and never contains an interpolation.
func FuzzNix(f *testing.F) {
	for _, s := range hostile {
		f.Add(s, s, 1)
	}
	f.Add("a\x00b", "x", -5)
	f.Fuzz(func(t *testing.T, name, url string, serial int) {
		l := lock.New(lock.Source{URL: url, Ref: name, Commit: url}, name)
		l.Names[name] = serial
		l.Names[url] = 7
		l.Derivations[name] = 1
		l.Outputs[url+name] = serial
		src := l.Nix()
		got, err := parseNix(src)
		if err != nil {
			t.Fatalf("output does not parse: %v\n%s", err, src)
		}
		want := map[string]any{
			"derivations": serials(l.Derivations),
			"env":         str(l.Env),
			"names":       serials(l.Names),
			"outputs":     serials(l.Outputs),
			"registry":    map[string]any{"commit": str(l.Registry.Commit), "ref": str(l.Registry.Ref), "url": str(l.Registry.URL)},
			"storeDir":    str(l.Store()),
			"version":     int64(l.Version),
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("output reads back as\n%#v\nwant\n%#v\n%s", got, want, src)
		}
	})
}

// serials is m as parseNix reads it back: keys holding a NUL byte are
// throws, named "\x00throw#N" in the order of the sorted keys.
func serials(m map[string]int) map[string]any {
	out := map[string]any{}
	var nul []string
	for k, v := range m {
		if strings.IndexByte(k, 0) >= 0 {
			nul = append(nul, k)
			continue
		}
		out[k] = int64(v)
	}
	sort.Strings(nul)
	for i, k := range nul {
		out[fmt.Sprintf("\x00throw#%d", i)] = int64(m[k])
	}
	return out
}

// str is s as parseNix reads it back.
func str(s string) any {
	if strings.IndexByte(s, 0) >= 0 {
		return throwValue{}
	}
	return s
}

// throwValue stands for a (throw "...") or ${(throw "...")} in the
// output: the place of a string holding a NUL byte.
type throwValue struct{}

// parseNix reads the subset of Nix that Nix() writes: comments, attribute
// sets with identifier, string or ${(throw ...)} keys, double-quoted
// strings, integers, (-N), (-N - 1) and (throw "..."). Strings follow
// Nix's lexer: a backslash escapes the next byte (n, r, t are control
// characters), "${" starts an interpolation, which is reported as an
// error. A NUL-holding string read back as throwValue compares equal to
// nothing but is accepted where the original held a NUL.
func parseNix(src []byte) (any, error) {
	p := &nixParser{src: src}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.src) {
		return nil, fmt.Errorf("offset %d: trailing input", p.i)
	}
	return v, nil
}

type nixParser struct {
	src []byte
	i   int
}

func (p *nixParser) space() {
	for p.i < len(p.src) {
		switch c := p.src[p.i]; {
		case c == ' ' || c == '\n' || c == '\t' || c == '\r':
			p.i++
		case c == '#':
			for p.i < len(p.src) && p.src[p.i] != '\n' {
				p.i++
			}
		default:
			return
		}
	}
}

func (p *nixParser) lit(s string) bool {
	p.space()
	if bytes.HasPrefix(p.src[p.i:], []byte(s)) {
		p.i += len(s)
		return true
	}
	return false
}

func (p *nixParser) value() (any, error) {
	p.space()
	switch {
	case p.lit("{"):
		m := map[string]any{}
		throws := 0
		for !p.lit("}") {
			key, err := p.key()
			if err != nil {
				return nil, err
			}
			if key == "\x00throw" {
				key = fmt.Sprintf("\x00throw#%d", throws)
				throws++
			}
			if !p.lit("=") {
				return nil, fmt.Errorf("offset %d: want =", p.i)
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			if !p.lit(";") {
				return nil, fmt.Errorf("offset %d: want ;", p.i)
			}
			if _, dup := m[key]; dup {
				return nil, fmt.Errorf("offset %d: attribute %q defined twice", p.i, key)
			}
			m[key] = v
		}
		return m, nil
	case p.lit(`"`):
		return p.str()
	case p.lit("(throw "):
		if _, err := p.value(); err != nil {
			return nil, err
		}
		if !p.lit(")") {
			return nil, fmt.Errorf("offset %d: want )", p.i)
		}
		return throwValue{}, nil
	case p.lit("(-9223372036854775807 - 1)"):
		return int64(-9223372036854775807 - 1), nil
	case p.lit("(-"):
		n, err := p.int()
		if !p.lit(")") {
			return nil, fmt.Errorf("offset %d: want )", p.i)
		}
		return -n, err
	default:
		return p.int()
	}
}

func (p *nixParser) int() (int64, error) {
	p.space()
	j := p.i
	for j < len(p.src) && p.src[j] >= '0' && p.src[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(string(p.src[p.i:j]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("offset %d: %v", p.i, err)
	}
	p.i = j
	return n, nil
}

func (p *nixParser) key() (string, error) {
	p.space()
	if p.lit(`"`) {
		return p.str()
	}
	if p.lit("${") {
		v, err := p.value()
		if err != nil {
			return "", err
		}
		if _, ok := v.(throwValue); !ok || !p.lit("}") {
			return "", fmt.Errorf("offset %d: dynamic attribute other than a throw", p.i)
		}
		return "\x00throw", nil
	}
	j := p.i
	for j < len(p.src) && (p.src[j] >= 'a' && p.src[j] <= 'z' || p.src[j] >= 'A' && p.src[j] <= 'Z') {
		j++
	}
	if j == p.i {
		return "", fmt.Errorf("offset %d: want an attribute name", p.i)
	}
	k := string(p.src[p.i:j])
	p.i = j
	return k, nil
}

// str reads a string body after the opening quote, as Nix's lexer does.
func (p *nixParser) str() (string, error) {
	var b strings.Builder
	for p.i < len(p.src) {
		c := p.src[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c == '\\' && p.i+1 < len(p.src):
			switch e := p.src[p.i+1]; e {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(e)
			}
			p.i += 2
		case c == '$' && p.i+1 < len(p.src) && p.src[p.i+1] == '{':
			return "", fmt.Errorf("offset %d: interpolation in a string", p.i)
		case c == 0:
			return "", fmt.Errorf("offset %d: NUL byte in a string", p.i)
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	return "", fmt.Errorf("offset %d: unterminated string", p.i)
}
