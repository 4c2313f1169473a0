package main

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/poison-nix/poison/builder/daemon"
)

// checkBuilders makes sure the daemon at store keeps the builders setting
// this client sends. A daemon keeps client settings from trusted users
// only and drops the others: builds would then run on its own builders or
// here, without a word. Daemons of protocol 1.35 and newer say whether
// they trust the client; older ones (Nix 2.8) say they ignore the setting
// in a debug message, which a probe connection asks for.
func checkBuilders(ctx context.Context, store string, dopts daemon.Options) error {
	settings := *dopts.Settings
	settings.Verbosity = daemon.VerbDebug
	var mu sync.Mutex
	var ignored string
	probe := dopts
	probe.Settings = &settings
	probe.Log = func(m daemon.Message) {
		if m.Kind != daemon.LogLine {
			return
		}
		line := daemon.StripANSI(m.Text)
		if strings.Contains(line, "'builders'") && strings.Contains(line, "ignoring") {
			mu.Lock()
			ignored = strings.TrimSpace(line)
			mu.Unlock()
		}
	}
	c, err := daemon.Dial(ctx, store, probe)
	if err != nil {
		return nil // the build's own connection reports it
	}
	defer c.Close()
	mu.Lock()
	defer mu.Unlock()
	var why string
	switch {
	case c.Trust() == daemon.NotTrusted:
		why = "the daemon does not trust this user"
	case c.Trust() == daemon.TrustUnknown && ignored != "":
		why = "the daemon said: " + ignored
	default:
		return nil
	}
	return withHint(fmt.Errorf("build: the daemon at %s ignores --builders: %s", store, why),
		"add the user to trusted-users in the daemon's nix.conf, or put the machines in its builders setting (/etc/nix/machines) and drop --builders, or let poison dispatch itself with --per-derivation --builders")
}
