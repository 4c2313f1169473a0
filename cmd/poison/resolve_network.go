package main

import (
	"io"
	"os"
	"time"

	"github.com/poison-nix/poison/internal/settings"
	"github.com/poison-nix/poison/resolver"
)

// resolveNetwork is how resolve reaches a remote registry: the timeouts
// and ssh key of the settings, ~/.ssh and the ssh-agent of the
// environment, and a progress line when stderr is a capable terminal.
func resolveNetwork(e *env, s settings.Settings) resolver.Network {
	n := resolver.NetworkFromEnv(e.getenv)
	n.SSHKey = s.SSHKey
	n.ConnectTimeout = noLimit(s.ConnectTimeout)
	n.StallTimeout = noLimit(s.StallTimeout)
	if capableTerminal(e, e.stderr) {
		n.Progress = e.stderr
	}
	return n
}

// noLimit maps the settings' 0 ("wait forever") to the resolver's
// negative timeout (its 0 means the default).
func noLimit(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// capableTerminal reports whether w is a terminal that can redraw a line:
// a character device, with TERM set and not "dumb".
func capableTerminal(e *env, w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	t := e.getenv("TERM")
	return t != "" && t != "dumb"
}
