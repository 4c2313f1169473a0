package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
)

// TestBuildDaemonKilled: the daemon dies in the middle of `poison build`:
// one clear error line naming the store, exit 1; a second run against a
// new daemon completes the build.
func TestBuildDaemonKilled(t *testing.T) {
	d := daemontest.Start(t)
	g := daemontest.Instantiate(t, d.Dir, daemontest.GraphArgs{Slow: "b", SleepSecs: 3})
	lockFile := filepath.Join(d.Dir, "poison.lock")
	lk := fmt.Sprintf(`{"version":1,"registry":{"url":"file:///srv/registry","ref":"main","commit":"%s"},"env":"POISON_SERIAL","derivations":{"%s":1},"outputs":{},"names":{}}`,
		strings.Repeat("ab", 20), filepath.Base(g.Drvs["a"]))
	if err := os.WriteFile(lockFile, []byte(lk), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(store string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, now: time.Now, dir: d.Dir,
			getenv: func(k string) string {
				if k == "NIX_CONFIG" {
					return nixtest.Config
				}
				return ""
			}}
		code := run([]string{"build", "--lock", lockFile, "--store", store, "--print-out-paths", g.Drvs["top"]}, e)
		return code, stdout.String(), stderr.String()
	}
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := build(d.URI())
		done <- result{code, out, errOut}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Contains(g.Ran(t), "b-started") {
		if time.Now().After(deadline) {
			t.Fatal("b never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.Kill()
	r := <-done
	if r.code != 1 {
		t.Errorf("exit code %d after the daemon died, want 1\n%s", r.code, r.stderr)
	}
	var errs []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "poison: error:") {
			errs = append(errs, l)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "connection closed by the daemon") || !strings.Contains(errs[0], d.Socket) {
		t.Errorf("errors after the daemon died: %q, want one line naming the socket", errs)
	}
	if !strings.Contains(r.stderr, "poison: hint: the connection to the nix-daemon broke; run the build again") {
		t.Errorf("no hint to run again:\n%s", r.stderr)
	}

	d2 := daemontest.Start(t)
	code, out, errOut := build(d2.URI())
	if code != 0 || !strings.HasSuffix(strings.TrimSpace(out), "-top") {
		t.Fatalf("second run: exit %d, stdout %q\n%s", code, out, errOut)
	}
}
