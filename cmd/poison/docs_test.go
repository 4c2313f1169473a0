package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryFlagDocumented: every flag of every command, by each of its
// names, appears in the command's help, in the man page and in each
// completion script, all generated from the command table.
func TestEveryFlagDocumented(t *testing.T) {
	out := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := runPoisonEnv(t, t.TempDir(), nil, args...)
		if code != 0 {
			t.Fatalf("poison %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
		}
		return stdout
	}
	man := out("man")
	bash, zsh, fish := out("completion", "bash"), out("completion", "zsh"), out("completion", "fish")
	n := 0
	for _, c := range commands() {
		help := out("help", c.name)
		if !strings.Contains(man, ".SS "+c.name+"\n") {
			t.Errorf("man page: no section for %s", c.name)
		}
		for _, script := range []string{bash, zsh, fish} {
			if !strings.Contains(script, c.name) {
				t.Errorf("completion: no command %s", c.name)
			}
		}
		fs, _ := c.flagSet()
		for _, d := range flagDocs(fs) {
			for _, name := range d.names {
				n++
				if !strings.Contains(help, "  "+name) && !strings.Contains(help, ", "+name) {
					t.Errorf("poison help %s: no %s", c.name, name)
				}
				if !strings.Contains(man, `\fB`+roff(name)+`\fR`) {
					t.Errorf("man page, %s: no %s", c.name, name)
				}
				if !strings.Contains(bash, name) || !strings.Contains(zsh, name) {
					t.Errorf("bash or zsh completion, %s: no %s", c.name, name)
				}
				fishName := "-s " + strings.TrimPrefix(name, "-")
				if strings.HasPrefix(name, "--") {
					fishName = "-l " + name[2:]
				}
				if !strings.Contains(fish, fishName) {
					t.Errorf("fish completion, %s: no %s", c.name, fishName)
				}
			}
		}
	}
	if n < 50 {
		t.Errorf("only %d flags found: the command table is not read", n)
	}
	// docs/poison.1 is a snapshot of 'poison man' for readers of the
	// repository; it must exist and be a man page of poison (it is not
	// compared byte for byte, so that a new flag does not fail the suite
	// until it is regenerated: go run ./cmd/poison man > docs/poison.1).
	committed, err := os.ReadFile(filepath.Join("..", "..", "docs", "poison.1"))
	if err != nil || !bytes.HasPrefix(committed, []byte(man[:strings.Index(man, ".SH COMMANDS")])) {
		t.Errorf("docs/poison.1 is missing or not a 'poison man' page (%v); regenerate it: go run ./cmd/poison man > docs/poison.1", err)
	}
	// The scripts parse in their shells, where installed.
	for shell, script := range map[string]string{"bash": bash, "zsh": zsh, "fish": fish} {
		if _, err := exec.LookPath(shell); err != nil {
			continue
		}
		f := filepath.Join(t.TempDir(), "completion."+shell)
		os.WriteFile(f, []byte(script), 0o644)
		if b, err := exec.Command(shell, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", shell, err, b)
		}
	}
}
