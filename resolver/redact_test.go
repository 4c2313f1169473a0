package resolver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/poison-nix/poison/registry/lock"
)

func TestRedactURL(t *testing.T) {
	cases := []struct{ in, want string }{
		// http(s): the whole userinfo goes, a token is often the user.
		{"https://oauth2:glpat-XXXX@gitlab.example.com/team/registry.git", "https://gitlab.example.com/team/registry.git"},
		{"https://x-access-token:ghs_XXXX@github.com/o/r", "https://github.com/o/r"},
		{"https://ghp_XXXX@github.com/o/r", "https://github.com/o/r"},
		{"http://user:pw@127.0.0.1:8080/reg.git?x=1#f", "http://127.0.0.1:8080/reg.git?x=***#***"},
		{"HTTPS://tok@Example.COM/r", "HTTPS://Example.COM/r"},
		{"https://:tok@h/r", "https://h/r"},
		{"https://u:p%40ss%2Fw@h/r", "https://h/r"},
		{"https://h", "https://h"},
		{"https://u:p@h", "https://h"},
		{"https://github.com/o/r", "https://github.com/o/r"},
		// '@' outside the userinfo is kept, and the path is not re-escaped.
		{"https://h/o/r@v1", "https://h/o/r@v1"},
		{"https://h/r?u=a@b", "https://h/r?u=***"},
		// Query values and fragments go: hosts take tokens there too.
		{"https://gitlab.example.com/r.git?private_token=glpat-XXXX", "https://gitlab.example.com/r.git?private_token=***"},
		{"https://h/r.git?a=1&b=&c#tok", "https://h/r.git?a=***&b=***&***#***"},
		{"https://h/r.git#tok", "https://h/r.git#***"},
		{"https://h/r.git?", "https://h/r.git?"},
		{"ssh://git:pw@h/r?k=v", "ssh://git@h/r?k=***"},
		{"git@h:o/r?x=1", "git@h:o/r?x=1"}, // scp-like: a path, not a query
		{"/srv/reg#1?x=y", "/srv/reg#1?x=y"},
		{"https://h/a%2Fb/r%20x", "https://h/a%2Fb/r%20x"},
		{"https://t@h/a%2Fb/x@y", "https://h/a%2Fb/x@y"},
		// ssh and other schemes: the password goes, the user stays.
		{"ssh://git@github.com/o/r.git", "ssh://git@github.com/o/r.git"},
		{"ssh://git:hunter2@github.com:22/o/r.git", "ssh://git@github.com:22/o/r.git"},
		{"ssh://git:@h/r", "ssh://git@h/r"},
		{"git+ssh://u:pw@h/r", "git+ssh://u@h/r"},
		{"git://h/r.git", "git://h/r.git"},
		{"git://u:pw@h/r.git", "git://u@h/r.git"},
		{"file:///srv/reg.git", "file:///srv/reg.git"},
		{"file:///srv/a@b/reg.git", "file:///srv/a@b/reg.git"},
		// scp-like: no password possible, unless written user:pw@.
		{"git@github.com:o/r.git", "git@github.com:o/r.git"},
		{"git:pw@github.com:o/r.git", "git@github.com:o/r.git"},
		// plain paths, even with '@' in them.
		{"/srv/reg", "/srv/reg"},
		{"/srv/a:b@c/reg", "/srv/a:b@c/reg"},
		{"./reg@2", "./reg@2"},
		{"reg", "reg"},
		{"", ""},
		// Broken URLs: kept only without '@'.
		{"https://h:port/r", "https://h:port/r"},
		{"https://u:pa/ss@h/r", "https://***@h/r"},
		{"https://u:tok@en@h/r", "https://h/r"}, // net/url takes the last '@'
		{"ssh://u:tok@en@h/r", "ssh://u@h/r"},
		{"https://u:p@h:xx/r", "https://***@h:xx/r"},
		{"ssh://u:p@h:xx/r", "ssh://***@h:xx/r"},
		{"1https://u:p@h/r", "1https://***@h/r"},
		{"https://u:p@h/%zz", "https://***@h/%zz"},
	}
	for _, c := range cases {
		if got := RedactURL(c.in); got != c.want {
			t.Errorf("RedactURL(%q) = %q, want %q", c.in, got, c.want)
		}
		// Idempotent, but for the "***" of a broken URL (then a user).
		if got := RedactURL(c.want); got != c.want && !strings.Contains(c.want, "***") {
			t.Errorf("RedactURL(%q) = %q, not idempotent", c.want, got)
		}
	}
}

func TestScrub(t *testing.T) {
	full := "https://oauth2:s3cr%2Ft@127.0.0.1:9/reg.git"
	cases := []struct{ in, want string }{
		{`Get "https://oauth2:s3cr%2Ft@127.0.0.1:9/reg.git/info/refs?service=git-upload-pack": dial tcp 127.0.0.1:9: connect: connection refused`,
			`Get "https://127.0.0.1:9/reg.git/info/refs?service=git-upload-pack": dial tcp 127.0.0.1:9: connect: connection refused`},
		// net/http's own redaction leaves the user, go-git's says REDACTED.
		{`Get "https://oauth2:***@127.0.0.1:9/reg.git/info/refs": EOF`, `Get "https://127.0.0.1:9/reg.git/info/refs": EOF`},
		{`unexpected requesting "https://oauth2:REDACTED@127.0.0.1:9/reg.git/info/refs" status code: 500`, `unexpected requesting "https://127.0.0.1:9/reg.git/info/refs" status code: 500`},
		{"remote: " + full, "remote: https://127.0.0.1:9/reg.git"},
		// the bare secret, decoded or not, standing on its own.
		{"bad credentials s3cr/t for oauth2", "bad credentials *** for ***"},
		{"token s3cr%2Ft refused", "token *** refused"},
		// not inside longer words.
		{"authentication required", "authentication required"},
	}
	for _, c := range cases {
		if got := scrub(c.in, full); got != c.want {
			t.Errorf("scrub(%q) =\n %q, want\n %q", c.in, got, c.want)
		}
	}
	// A short password does not garble the words around it, yet goes
	// where it stands alone.
	if got := scrub("authentication required for a: a", "ssh://git:a@h/r"); got != "authentication required for ***: ***" {
		t.Errorf("short password: %q", got)
	}
	// A token (8 characters or more) wherever it is.
	if got := scrub("token=glpat-XXXXXXXX&x", "https://oauth2:glpat-XXXXXXXX@h/r"); got != "token=***&x" {
		t.Errorf("token: %q", got)
	}
	// A token in the query, or in the fragment.
	for _, full := range []string{"https://h/r.git?private_token=glpat-SECRETQ", "https://h/r.git#glpat-SECRETQ"} {
		got := scrub(`Get "https://h/r.git/info/refs?private_token=glpat-SECRETQ&service=git-upload-pack": 401 for glpat-SECRETQ`, full)
		if strings.Contains(got, "SECRETQ") {
			t.Errorf("query token: %q", got)
		}
	}
	// The ssh user is no secret and stays.
	if got := scrub("ssh: handshake failed for git:pw@h", "ssh://git:pw@h/r"); got != "ssh: handshake failed for git:***@h" {
		t.Errorf("ssh: %q", got)
	}
	// A token as the http user name.
	if got := scrub(`Get "https://ghp_XXXX@h/r/info/refs": x; user ghp_XXXX`, "https://ghp_XXXX@h/r"); got != `Get "https://h/r/info/refs": x; user ***` {
		t.Errorf("token user: %q", got)
	}
	if got := scrub("x-ghp_XXXXXXXX-y", "https://ghp_XXXXXXXX@h/r"); got != "x-***-y" {
		t.Errorf("token user: %q", got)
	}
	// Nothing to hide: untouched.
	if got := scrub("fetch https://a@h/x failed", "https://h/r"); got != "fetch https://h/x failed" {
		t.Errorf("no credentials: %q", got)
	}
}

func TestRedactErr(t *testing.T) {
	full := "https://u:SECRET@h/r"
	base := fmt.Errorf("list %s: %w", full, transport.ErrAuthenticationRequired)
	err := redactErr(base, full)
	if strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "https://h/r") {
		t.Errorf("redactErr: %v", err)
	}
	if !errors.Is(err, transport.ErrAuthenticationRequired) || !isNetwork(err) {
		t.Errorf("redactErr hides the error it wraps")
	}
	plain := errors.New("nothing here")
	if redactErr(plain, full) != plain {
		t.Errorf("redactErr wraps an error with nothing to scrub")
	}
	fe := &FetchError{URL: full, Err: errors.New("x")}
	if strings.Contains(fe.Error(), "SECRET") {
		t.Errorf("FetchError: %v", fe)
	}
}

// TestParseSourceCredentials checks the source records the redacted URL,
// fetches with the full one, and that no parse error shows a credential.
func TestParseSourceCredentials(t *testing.T) {
	full := "https://oauth2:SECRET@gitlab.example.com/team/registry.git"
	src, err := ParseSource(full, "/")
	if err != nil {
		t.Fatal(err)
	}
	if src.URL != "https://gitlab.example.com/team/registry.git" || src.fetchURL() != full {
		t.Errorf("source %q fetching %q", src.URL, src.fetchURL())
	}
	for _, spec := range []string{
		"https://u:SECRET@h:port/r",
		"https://u:SECRET@/r",
		"ftp://u:SECRET@h/r",
		"file://u:SECRET@h/r",
		"https://SECRET@h/r\n",
		"u:SECRET@nosuchhost:r",
	} {
		_, err := ParseSource(spec, t.TempDir())
		if err == nil {
			t.Errorf("ParseSource(%q) succeeded", spec)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("ParseSource(%q): %v", spec, err)
		}
	}
}

// TestLegacyState checks a lock written before the redaction (holding the
// full URL) still finds the state an earlier version kept under the full
// URL's key, and that removeLegacy deletes those entries.
func TestLegacyState(t *testing.T) {
	c := Cache{Dir: t.TempDir()}
	full, red := "https://tok:SECRET@h/r", "https://h/r"
	fetched := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	if err := c.writeState(state{URL: full, LastFetch: fetched}); err != nil {
		t.Fatal(err)
	}
	if name := c.statePath(full); strings.Contains(name, "SECRET") {
		t.Errorf("cache file name %s holds the secret", name)
	}
	l := lock.New(lock.Source{URL: full, Commit: strings.Repeat("a", 40)}, "E")
	f := CheckFreshness(c, l, time.Hour, fetched.Add(time.Minute))
	if f.LastFetch != fetched || f.URL != red || f.Stale() {
		t.Errorf("legacy lock: %+v", f)
	}
	if strings.Contains(f.Describe("poison.lock"), "SECRET") {
		t.Errorf("Describe: %s", f.Describe("poison.lock"))
	}
	// The state of this version wins.
	if err := c.writeState(state{URL: red, LastFetch: fetched.Add(30 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if f := CheckFreshness(c, l, time.Hour, fetched.Add(time.Minute)); f.Age != 30*time.Second {
		t.Errorf("legacy lock with a new state: age %s", f.Age)
	}
	os.MkdirAll(c.repoDir(full), 0o755)
	os.MkdirAll(filepath.Dir(c.lockCachePath(full, "x")), 0o755)
	c.removeLegacy(full, red)
	for _, p := range []string{c.repoDir(full), c.statePath(full), filepath.Dir(c.lockCachePath(full, "x"))} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("legacy %s not removed", p)
		}
	}
	if _, ok := c.readState(red); !ok {
		t.Errorf("removeLegacy removed the current state")
	}
}
