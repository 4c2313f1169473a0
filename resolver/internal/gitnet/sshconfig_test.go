package gitnet

import (
	"bytes"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

// TestSSHConfig reads testdata/ssh_config as ssh would for several hosts:
// first value wins, IdentityFile accumulates, Match blocks never apply,
// negated patterns exclude, tokens and ~ expand.
func TestSSHConfig(t *testing.T) {
	home := "/home/u"
	cfg, err := readSSHConfig(filepath.Join("testdata", "ssh_config"), home)
	if err != nil {
		t.Fatal(err)
	}
	s := &SSH{Home: home, LocalUser: "me"}
	cases := []struct {
		url                    string
		host, port, user       string
		identities             []string
		strict, knownHostsFile string
	}{
		{"ssh://regserver/r.git", "10.0.0.7", "2222", "git",
			[]string{"/home/u/.ssh/deploy_10.0.0.7", "/home/u/.ssh/second", "/home/u/.ssh/fallback"}, "", "~/.ssh/known hosts ~/.ssh/known_hosts2"},
		{"ssh://alice@regserver:2200/r.git", "10.0.0.7", "2200", "alice",
			[]string{"/home/u/.ssh/deploy_10.0.0.7", "/home/u/.ssh/second", "/home/u/.ssh/fallback"}, "", "~/.ssh/known hosts ~/.ssh/known_hosts2"},
		{"git.example.com:o/r.git", "git.example.com", "22", "corp", []string{"/home/u/.ssh/fallback"}, "accept-new", "~/.ssh/known hosts ~/.ssh/known_hosts2"},
		{"ssh://bad.example.com/r", "bad.example.com", "22", "me", []string{"/home/u/.ssh/fallback"}, "", "~/.ssh/known hosts ~/.ssh/known_hosts2"},
	}
	for _, c := range cases {
		ep, err := transport.NewEndpoint(c.url)
		if err != nil {
			t.Fatal(err)
		}
		tg := s.targetFrom(ep, cfg)
		if tg.host != c.host || tg.port != c.port || tg.user != c.user {
			t.Errorf("%s: %s:%s as %s, want %s:%s as %s", c.url, tg.host, tg.port, tg.user, c.host, c.port, c.user)
		}
		if ids := tg.identityFiles(home); !reflect.DeepEqual(ids, c.identities) {
			t.Errorf("%s: identities %q, want %q", c.url, ids, c.identities)
		}
		if got := cfg.get(ep.Host, "stricthostkeychecking"); got != c.strict {
			t.Errorf("%s: StrictHostKeyChecking %q, want %q", c.url, got, c.strict)
		}
		if got := cfg.get(ep.Host, "userknownhostsfile"); got != c.knownHostsFile {
			t.Errorf("%s: UserKnownHostsFile %q, want %q", c.url, got, c.knownHostsFile)
		}
	}
}

// TestProgress checks that a fetch shorter than a second draws nothing and
// a longer one draws a line and erases it.
func TestProgress(t *testing.T) {
	var quick bytes.Buffer
	w := &watch{}
	stop := startProgress(&quick, "URL", w)
	stop()
	if quick.Len() != 0 {
		t.Errorf("a quick fetch drew %q", quick.String())
	}
	var slow bytes.Buffer
	w.received.Store(3 << 20)
	stop = startProgress(&slow, "URL", w)
	time.Sleep(progressDelay + 400*time.Millisecond)
	stop()
	out := slow.String()
	if !strings.Contains(out, "poison: fetching URL: 3.0 MiB") || !strings.HasSuffix(out, "\r\033[K") {
		t.Errorf("progress output %q", out)
	}
}
