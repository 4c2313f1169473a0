package resolver

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshSigner is one line of an OpenSSH allowed_signers file (see
// ssh-keygen(1), ALLOWED SIGNERS), as git reads it for
// gpg.ssh.allowedSignersFile:
//
//	PRINCIPALS [OPTIONS] KEYTYPE BASE64 [COMMENT]
//
// with the options cert-authority, namespaces="PATTERN,...",
// valid-after="TIME" and valid-before="TIME" (case-insensitive). A plain
// authorized_keys line (KEYTYPE BASE64 [COMMENT], no principals) is
// accepted too and means the key, for any namespace, at any time.
type sshSigner struct {
	line       int
	principals string // as written ("" for an authorized_keys line)
	key        ssh.PublicKey
	// certAuthority marks a CA key: it vouches for certificates, and does
	// not itself sign.
	certAuthority bool
	namespaces    []string // nil: any
	validAfter    time.Time
	validBefore   time.Time
}

// parseSSHSigner parses one non-empty, non-comment line.
func parseSSHSigner(line string, n int) (*sshSigner, error) {
	if strings.HasPrefix(line, "@") {
		// known_hosts markers (@revoked, @cert-authority) are not
		// allowed_signers syntax: ssh-keygen would take "@revoked" as a
		// principal and accept the key. Refuse rather than guess.
		return nil, fmt.Errorf("%q is not allowed_signers syntax (it is a known_hosts marker); to retire a key, delete its line", strings.Fields(line)[0])
	}
	// An authorized_keys line without options: the key alone.
	if pub, comment, opts, _, err := ssh.ParseAuthorizedKey([]byte(line)); err == nil && len(opts) == 0 && strings.HasPrefix(line, pub.Type()) {
		_ = comment
		return &sshSigner{line: n, key: pub}, nil
	}
	principals, rest, err := nextToken(line)
	if err != nil {
		return nil, err
	}
	if principals == "" || rest == "" {
		return nil, errors.New("want PRINCIPALS [OPTIONS] KEYTYPE KEY, as in an SSH allowed_signers file")
	}
	s := &sshSigner{line: n, principals: principals}
	// Options come before the key type when the next word is not one.
	if pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(rest)); err == nil && !looksLikeOptions(rest, pub) {
		s.key = pub
		return s, nil
	}
	opts, keyPart, err := nextToken(rest)
	if err != nil {
		return nil, err
	}
	if err := s.parseOptions(opts); err != nil {
		return nil, err
	}
	pub, _, popts, _, err := ssh.ParseAuthorizedKey([]byte(keyPart))
	if err != nil || len(popts) > 0 || !strings.HasPrefix(strings.TrimSpace(keyPart), pub.Type()) {
		return nil, fmt.Errorf("no SSH public key after the options %q", opts)
	}
	s.key = pub
	return s, nil
}

// looksLikeOptions reports whether ParseAuthorizedKey took the start of
// rest as authorized_keys options rather than rest beginning with the
// key type.
func looksLikeOptions(rest string, pub ssh.PublicKey) bool {
	return !strings.HasPrefix(strings.TrimSpace(rest), pub.Type()+" ")
}

// nextToken splits off the first whitespace-separated token of s, in
// which double quotes protect spaces (and are kept for the options).
func nextToken(s string) (tok, rest string, err error) {
	s = strings.TrimLeft(s, " \t")
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			quoted = !quoted
		case !quoted && (c == ' ' || c == '\t'):
			return s[:i], strings.TrimLeft(s[i:], " \t"), nil
		}
	}
	if quoted {
		return "", "", errors.New("unterminated quote")
	}
	return s, "", nil
}

// parseOptions parses the comma-separated options field.
func (s *sshSigner) parseOptions(opts string) error {
	for opts != "" {
		// One option: up to the next comma outside quotes.
		end, quoted := len(opts), false
		for i := 0; i < len(opts); i++ {
			if opts[i] == '"' {
				quoted = !quoted
			} else if opts[i] == ',' && !quoted {
				end = i
				break
			}
		}
		opt := opts[:end]
		opts = strings.TrimPrefix(opts[end:], ",")
		name, val, hasVal := strings.Cut(opt, "=")
		name = strings.ToLower(name)
		if hasVal {
			if len(val) < 2 || val[0] != '"' || val[len(val)-1] != '"' {
				return fmt.Errorf("option %s: the value must be in double quotes", name)
			}
			val = val[1 : len(val)-1]
		}
		switch {
		case name == "cert-authority" && !hasVal:
			s.certAuthority = true
		case name == "namespaces" && hasVal:
			s.namespaces = strings.Split(val, ",")
		case name == "valid-after" && hasVal:
			t, err := parseSSHTime(val)
			if err != nil {
				return fmt.Errorf("valid-after: %w", err)
			}
			s.validAfter = t
		case name == "valid-before" && hasVal:
			t, err := parseSSHTime(val)
			if err != nil {
				return fmt.Errorf("valid-before: %w", err)
			}
			s.validBefore = t
		default:
			return fmt.Errorf("unknown option %q (allowed_signers knows cert-authority, namespaces=, valid-after=, valid-before=)", opt)
		}
	}
	return nil
}

// parseSSHTime parses the time of valid-after/valid-before as OpenSSH
// does: YYYYMMDD or YYYYMMDDHHMM[SS], in local time unless it ends in Z.
func parseSSHTime(s string) (time.Time, error) {
	loc := time.Local
	if v, ok := strings.CutSuffix(s, "Z"); ok {
		s, loc = v, time.UTC
	}
	for _, layout := range []string{"20060102", "200601021504", "20060102150405"} {
		if len(s) == len(layout) {
			if t, err := time.ParseInLocation(layout, s, loc); err == nil {
				return t, nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("invalid time %q: want YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]", s)
}

// namespaceOK reports whether the line allows signatures in namespace ns
// (patterns with * and ?, ! negates, as ssh's match_pattern_list).
func (s *sshSigner) namespaceOK(ns string) bool {
	if s.namespaces == nil {
		return true
	}
	ok := false
	for _, p := range s.namespaces {
		neg := strings.HasPrefix(p, "!")
		if m, _ := path.Match(strings.TrimPrefix(p, "!"), ns); m {
			if neg {
				return false
			}
			ok = true
		}
	}
	return ok
}

// validAt reports whether t is within the line's validity interval.
func (s *sshSigner) validAt(t time.Time) bool {
	return (s.validAfter.IsZero() || !t.Before(s.validAfter)) && (s.validBefore.IsZero() || !t.After(s.validBefore))
}

// refusal says why the line does not let its key sign in namespace ns at
// time t, or "" when it does.
func (s *sshSigner) refusal(ns string, t time.Time) string {
	switch {
	case s.certAuthority:
		return "is a cert-authority line: the key vouches for certificates and does not sign itself"
	case !s.namespaceOK(ns):
		return fmt.Sprintf("does not permit the signature namespace %q (namespaces=%q)", ns, strings.Join(s.namespaces, ","))
	case !s.validAfter.IsZero() && t.Before(s.validAfter):
		return fmt.Sprintf("is not valid before %s, and the commit is dated %s", s.validAfter.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	case !s.validBefore.IsZero() && t.After(s.validBefore):
		return fmt.Sprintf("expired at %s, and the commit is dated %s", s.validBefore.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	return ""
}
