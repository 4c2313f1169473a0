package progress_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/progress"
	"github.com/poison-nix/poison/internal/ptytest"
)

// TestIsTerminal: the live line only on a terminal that can show it, as
// Nix decides: TERM=dumb, no TERM, NO_COLOR, pipes and files get plain
// lines.
func TestIsTerminal(t *testing.T) {
	tty := ptytest.Open(t).TTY
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, c := range []struct {
		name string
		out  any
		env  map[string]string
		want bool
	}{
		{"terminal, TERM=xterm", tty, map[string]string{"TERM": "xterm-256color"}, true},
		{"terminal, TERM=dumb", tty, map[string]string{"TERM": "dumb"}, false},
		{"terminal, no TERM", tty, map[string]string{}, false},
		{"terminal, NO_COLOR", tty, map[string]string{"TERM": "xterm", "NO_COLOR": "1"}, false},
		{"regular file", file, map[string]string{"TERM": "xterm"}, false},
		{"pipe", w, map[string]string{"TERM": "xterm"}, false},
		{"buffer", &bytes.Buffer{}, map[string]string{"TERM": "xterm"}, false},
	} {
		out := c.out.(interface{ Write([]byte) (int, error) })
		if got := progress.IsTerminal(out, func(k string) string { return c.env[k] }); got != c.want {
			t.Errorf("%s: IsTerminal = %v, want %v", c.name, got, c.want)
		}
	}
}

func messages() []daemon.Message {
	return []daemon.Message{
		{Kind: daemon.StartActivity, ID: 7, Activity: daemon.ActBuild, Text: "building '/nix/store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-hello-2.12.drv'",
			Fields: []daemon.Field{{IsString: true, String: "/nix/store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-hello-2.12.drv"}}},
		{Kind: daemon.Result, ID: 7, Result: daemon.ResBuildLogLine, Fields: []daemon.Field{{IsString: true, String: "\x1b[1mcompiling\x1b[0m"}}},
		{Kind: daemon.StopActivity, ID: 7},
		{Kind: daemon.LogLine, Text: "error: builder for '/nix/store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-x.drv' failed with exit code 1"},
	}
}

// TestRenderer: plain lines without a terminal (ANSI stripped), a live
// line with one, singular counts, failure bits from the log.
func TestRenderer(t *testing.T) {
	for _, term := range []bool{false, true} {
		var out bytes.Buffer
		r := progress.New(&out, progress.Options{Terminal: term, Logs: true})
		r.Plan(1)
		for _, m := range messages() {
			r.Message(m)
		}
		r.Finish()
		s := out.String()
		if !strings.HasPrefix(s, "poison: 1 derivation to build\n") {
			t.Errorf("terminal %v: plan line: %q", term, s)
		}
		if !strings.Contains(s, "hello-2.12> ") {
			t.Errorf("terminal %v: no -L line: %q", term, s)
		}
		hasLive := strings.Contains(s, "\r\x1b[K[0 built, 1 running, 0 left] building hello-2.12")
		if hasLive != term {
			t.Errorf("terminal %v: live line drawn %v: %q", term, hasLive, s)
		}
		if !term && strings.Contains(s, "\x1b") {
			t.Errorf("escape sequences without a terminal: %q", s)
		}
		if !term && !strings.Contains(s, "building '/nix/store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-hello-2.12.drv'\n") {
			t.Errorf("no plain build line without a terminal: %q", s)
		}
		if r.FailureBits() != 4 {
			t.Errorf("failure bits %d, want 4", r.FailureBits())
		}
	}
	var out bytes.Buffer
	progress.New(&out, progress.Options{}).Plan(3)
	if out.String() != "poison: 3 derivations to build\n" {
		t.Errorf("plural: %q", out.String())
	}
}

// TestInternalJSON: the lines nix build --log-format internal-json writes.
func TestInternalJSON(t *testing.T) {
	var out bytes.Buffer
	r := progress.New(&out, progress.Options{InternalJSON: true, Terminal: true})
	for _, m := range messages() {
		r.Message(m)
	}
	want := `@nix {"action":"start","fields":["/nix/store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-hello-2.12.drv"],"id":7,"level":0,"parent":0,"text":"building '/nix/store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-hello-2.12.drv'","type":105}
@nix {"action":"result","fields":["\u001b[1mcompiling\u001b[0m"],"id":7,"type":101}
@nix {"action":"stop","id":7}
@nix {"action":"msg","level":0,"msg":"error: builder for '/nix/store/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a-x.drv' failed with exit code 1"}
`
	if out.String() != want {
		t.Errorf("internal-json:\n%s\nwant\n%s", out.String(), want)
	}
}
