package resolver

import (
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// RedactURL returns the form of a registry URL that may be shown or
// recorded: the one poison.lock, poison.nix, the cache and every message
// hold. It never fails and never contacts anything.
//
//   - http:// and https:// URLs lose their whole userinfo: hosts take a
//     token as the user name as readily as the password
//     (https://ghp_XXXX@github.com/o/r), so
//     https://oauth2:glpat-XXXX@gitlab.example.com/r.git becomes
//     https://gitlab.example.com/r.git.
//   - Every other URL (ssh://, git://, file://, any scheme) loses only the
//     password: ssh://git:pw@host/r becomes ssh://git@host/r, since a user
//     name such as git@ is no secret and tells which account to use.
//   - scp-like user@host:path has no password and stays as it is;
//     user:pw@host:path becomes user@host:path.
//   - A plain path stays as it is, even with an '@' in it.
//   - A string with "://" that net/url cannot parse (or that does not
//     begin with a scheme) stays as it is only when it holds no '@' after
//     the "://"; otherwise everything between "://" and the last '@' is
//     replaced by "***", since where a broken URL's userinfo ends cannot
//     be told and keeping too little is the safe side.
//
// A "://" URL also loses the values of its query and its fragment, where
// hosts accept tokens too (https://h/r.git?private_token=XXXX becomes
// https://h/r.git?private_token=***; #XXXX becomes #***): the parameter
// names stay, so the URL still says what it carried.
//
// Only the userinfo, query values and fragment change: the rest of the
// string is kept byte for byte (no re-escaping), so a URL without
// credentials is returned unchanged.
func RedactURL(s string) string {
	return redactQuery(redactUserinfo(s))
}

// redactQuery replaces every query value and the fragment of a "://" URL
// by "***".
func redactQuery(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	j := strings.IndexAny(s[i+3:], "?#")
	if j < 0 {
		return s
	}
	j += i + 3
	var b strings.Builder
	b.WriteString(s[:j])
	rest := s[j:]
	if rest[0] == '?' {
		q := rest[1:]
		frag := ""
		if k := strings.IndexByte(q, '#'); k >= 0 {
			q, frag = q[:k], q[k:]
		}
		b.WriteByte('?')
		for n, p := range strings.Split(q, "&") {
			if n > 0 {
				b.WriteByte('&')
			}
			switch name, _, ok := strings.Cut(p, "="); {
			case ok:
				b.WriteString(name + "=***")
			case p != "":
				b.WriteString("***")
			}
		}
		rest = frag
	}
	if rest != "" { // the fragment
		b.WriteString("#***")
	}
	return b.String()
}

// querySecrets returns the query values and the fragment of a "://" URL.
func querySecrets(s string) []string {
	i := strings.Index(s, "://")
	if i < 0 {
		return nil
	}
	j := strings.IndexAny(s[i+3:], "?#")
	if j < 0 {
		return nil
	}
	rest := s[i+3+j:]
	var out []string
	if rest[0] == '?' {
		q := rest[1:]
		if k := strings.IndexByte(q, '#'); k >= 0 {
			q, rest = q[:k], q[k:]
		} else {
			rest = ""
		}
		for _, p := range strings.Split(q, "&") {
			if _, v, ok := strings.Cut(p, "="); ok {
				out = append(out, v)
			} else {
				out = append(out, p)
			}
		}
	}
	if rest != "" {
		out = append(out, rest[1:])
	}
	return out
}

// redactUserinfo drops the credentials of a URL's userinfo (see RedactURL).
func redactUserinfo(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return redactSCP(s)
	}
	rest := s[i+3:]
	if !strings.Contains(rest, "@") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || schemeEnd(s) < 0 {
		at := strings.LastIndexByte(rest, '@')
		return s[:i+3] + "***" + rest[at:]
	}
	if u.User == nil {
		return s // the '@' is in the path, query or fragment
	}
	// url.Parse takes the authority up to the first '/' (the query and
	// fragment are cut off first) and the userinfo up to its last '@'.
	auth := rest
	if j := strings.IndexAny(auth, "/?#"); j >= 0 {
		auth = auth[:j]
	}
	at := strings.LastIndexByte(auth, '@')
	if at < 0 {
		return s // cannot happen when u.User is set
	}
	userinfo, after := auth[:at], rest[at+1:]
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		return s[:i+3] + after
	}
	user, _, hasPassword := strings.Cut(userinfo, ":")
	if !hasPassword {
		return s
	}
	return s[:i+3] + user + "@" + after
}

// schemeEnd returns the index of "://" when s begins with a URL scheme
// (RFC 3986: a letter, then letters, digits, '+', '-', '.'), else -1.
func schemeEnd(s string) int {
	i := strings.Index(s, "://")
	if i <= 0 {
		return -1
	}
	for k, c := range s[:i] {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case k > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return -1
		}
	}
	return i
}

// scpPassword matches the user:password@ of a scp-like address.
var scpPassword = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([A-Za-z0-9._-]+):[^/@]*@[^/@]`) })

// redactSCP drops the password of user:password@host:path; anything else
// (user@host:path, a path) is returned as it is.
func redactSCP(s string) string {
	m := scpPassword().FindStringSubmatchIndex(s)
	if m == nil {
		return s
	}
	return s[:m[3]] + s[strings.IndexByte(s, '@'):]
}

// urlInText finds URLs with a userinfo in a message; queryURLInText URLs
// with a query or a fragment.
var (
	urlInText      = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>@/]*@[^\s"'<>]*`) })
	queryURLInText = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>?#]*[?#][^\s"'<>]*`)
	})
)

// secretsOf returns what RedactURL drops from full that is worth looking
// for on its own in a message: the password and, for http(s), the user
// name, the query values and the fragment, each as written and
// percent-decoded.
func secretsOf(full string) []string {
	red := RedactURL(full)
	if red == full {
		return nil
	}
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if d, err := url.PathUnescape(s); err == nil && d != s {
			out = append(out, d)
		}
	}
	for _, q := range querySecrets(full) {
		if len(q) >= 6 { // shorter values are no tokens, and would garble words
			add(q)
		}
	}
	red = redactUserinfo(full)
	i := strings.Index(full, "://")
	if i < 0 {
		// user:password@host:path
		if m := scpPassword().FindStringSubmatchIndex(full); m != nil {
			add(full[m[3]+1 : strings.IndexByte(full, '@')])
		}
		return out
	}
	rest := full[i+3:]
	auth := rest
	_, perr := url.Parse(full)
	broken := perr != nil || schemeEnd(full) < 0
	if !broken {
		if j := strings.IndexAny(auth, "/?#"); j >= 0 {
			auth = auth[:j]
		}
	}
	at := strings.LastIndexByte(auth, '@')
	if at < 0 {
		return out
	}
	userinfo := auth[:at]
	user, pass, hasPassword := strings.Cut(userinfo, ":")
	if hasPassword {
		add(pass)
	}
	if !strings.HasPrefix(red[i+3:], user+"@") {
		add(user) // dropped too (http, or a URL that does not parse)
	}
	if broken {
		add(userinfo)
	}
	return out
}

// scrub removes the credentials of the registry URL full from a message
// (an error text of go-git, net/http or net/url): full itself becomes its
// redacted form, every URL in the message loses its credentials as
// RedactURL would drop them, and then what remains of a password (or of
// an http user name) becomes "***": every occurrence of one of 8 or more
// characters (a token), and of a shorter one only where it stands on its
// own, so that "a" does not garble every word.
func scrub(msg, full string) string {
	red := RedactURL(full)
	if red != full {
		msg = strings.ReplaceAll(msg, full, red)
	}
	msg = urlInText().ReplaceAllStringFunc(msg, RedactURL)
	if strings.ContainsAny(full, "?#") {
		msg = queryURLInText().ReplaceAllStringFunc(msg, RedactURL)
	}
	secrets := secretsOf(full)
	sort.Slice(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	for _, s := range secrets {
		if len(s) >= 8 {
			msg = strings.ReplaceAll(msg, s, "***")
		} else {
			msg = replaceWord(msg, s, "***")
		}
	}
	return msg
}

// replaceWord replaces the occurrences of s in msg that are not part of a
// longer run of characters a credential may hold (letters, digits and
// -._~%+=), so that a short secret does not garble the words around it.
func replaceWord(msg, s, with string) string {
	if s == "" {
		return msg
	}
	var b strings.Builder
	for {
		j := strings.Index(msg, s)
		if j < 0 {
			b.WriteString(msg)
			return b.String()
		}
		end := j + len(s)
		if (j == 0 || !credByte(msg[j-1])) && (end == len(msg) || !credByte(msg[end])) {
			b.WriteString(msg[:j])
			b.WriteString(with)
		} else {
			b.WriteString(msg[:end])
		}
		msg = msg[end:]
	}
}

func credByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~%+=", c) >= 0 || c >= 0x80
}

// redactedError is an error whose text has the credentials of a registry
// URL scrubbed; it unwraps to the original, so errors.Is and errors.As
// still see the transport errors.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr scrubs the credentials of full from err's text.
func redactErr(err error, full string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if s := scrub(msg, full); s != msg {
		return &redactedError{msg: s, err: err}
	}
	return err
}
