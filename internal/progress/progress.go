// Package progress shows on stderr what the nix-daemon does during a
// build, as nix-build does: one live status line on a capable terminal
// (built / running / left), plain lines otherwise, the builders' output
// with -L, and with --log-format internal-json Nix's own "@nix {...}"
// lines for tools such as nix-output-monitor (internaljson.go).
package progress

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/daemon"
)

// Options select what a Renderer shows.
type Options struct {
	// Terminal draws the live status line (see IsTerminal).
	Terminal bool
	// Logs prints the builders' output, prefixed with the derivation
	// name ("hello> ..."), as -L does.
	Logs bool
	// InternalJSON writes every daemon message as Nix's internal-json
	// logger does instead of text.
	InternalJSON bool
}

// IsTerminal reports whether w is a terminal that can show a live status
// line: a character device, TERM set and not "dumb", and no NO_COLOR, as
// Nix decides whether to draw its progress bar.
func IsTerminal(w io.Writer, getenv func(string) string) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if t := getenv("TERM"); t == "" || t == "dumb" {
		return false
	}
	return getenv("NO_COLOR") == "" && getenv("NOCOLOR") == ""
}

// Renderer renders daemon messages. Its methods may be called from
// several connections at once.
type Renderer struct {
	mu     sync.Mutex
	w      io.Writer
	o      Options
	builds map[uint64]string // build activity → derivation name
	total  int
	done   int
	bits   int
	live   bool   // the live line is on screen
	shown  string // its text
}

// New returns a Renderer writing to w.
func New(w io.Writer, o Options) *Renderer {
	return &Renderer{w: w, o: o, builds: map[uint64]string{}}
}

// Plan announces how many derivations will be built.
func (r *Renderer) Plan(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total = n
	if !r.o.InternalJSON && n > 0 {
		r.clear()
		fmt.Fprintf(r.w, "poison: %s to build\n", Count(n, "derivation", "derivations"))
	}
}

// FailureBits returns Nix's exit-code bits learned from the daemon's
// error lines so far (see builder.FailureBits).
func (r *Renderer) FailureBits() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bits
}

// Message handles one daemon message.
func (r *Renderer) Message(m daemon.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.Kind == daemon.LogLine {
		r.bits |= builder.FailureBits(m.Text)
	}
	if r.o.InternalJSON {
		WriteInternalJSON(r.w, m)
		return
	}
	switch m.Kind {
	case daemon.LogLine:
		r.line(r.text(m.Text))
	case daemon.StartActivity:
		if m.Activity == daemon.ActBuild {
			r.builds[m.ID] = DrvName(m.StringField(0))
			if !r.o.Terminal {
				r.line(r.text(m.Text))
			}
		} else if m.Activity == daemon.ActSubstitute && !r.o.Terminal {
			r.line(r.text(m.Text))
		}
	case daemon.StopActivity:
		if _, ok := r.builds[m.ID]; ok {
			delete(r.builds, m.ID)
			r.done++
		}
	case daemon.Result:
		if r.o.Logs && (m.Result == daemon.ResBuildLogLine || m.Result == daemon.ResPostBuildLogLine) {
			r.line(r.builds[m.ID] + "> " + r.text(m.StringField(0)))
		}
	}
	r.redraw()
}

// Finish removes the live line.
func (r *Renderer) Finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clear()
}

func (r *Renderer) text(s string) string {
	if r.o.Terminal {
		return s
	}
	return daemon.StripANSI(s)
}

// line prints a full line above the live line.
func (r *Renderer) line(s string) {
	r.clear()
	fmt.Fprintln(r.w, s)
}

func (r *Renderer) clear() {
	if r.live {
		fmt.Fprint(r.w, "\r\x1b[K")
		r.live = false
	}
}

func (r *Renderer) redraw() {
	if !r.o.Terminal {
		return
	}
	names := make([]string, 0, len(r.builds))
	for _, n := range r.builds {
		names = append(names, n)
	}
	slices.Sort(names)
	s := fmt.Sprintf("[%d built, %d running, %d left]", r.done, len(r.builds), max(r.total-r.done-len(r.builds), 0))
	if len(names) > 0 {
		s += " building " + strings.Join(names, ", ")
	}
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	if r.live && s == r.shown {
		return
	}
	fmt.Fprint(r.w, "\r\x1b[K"+s)
	r.live, r.shown = true, s
}

// DrvName turns "/nix/store/…-hello-2.12.drv" into "hello-2.12".
func DrvName(p string) string {
	b := filepath.Base(p)
	if i := strings.IndexByte(b, '-'); i >= 0 {
		b = b[i+1:]
	}
	return strings.TrimSuffix(b, ".drv")
}

// Count writes n with the singular or plural noun: "1 derivation",
// "2 derivations".
func Count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
