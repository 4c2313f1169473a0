package resolver_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/resolver"
	"github.com/poison-nix/poison/resolver/internal/regtest"
)

// TestAllowedSignersLikeGit signs a registry commit with an SSH key as git
// does (gpg.format ssh) and checks, line by line of an allowed_signers
// file, that resolve --trusted-keys accepts the commit exactly when `git
// verify-commit` with gpg.ssh.allowedSignersFile set to the same file
// does. The few lines this package refuses where git accepts are marked
// and explained; there is none the other way round.
func TestAllowedSignersLikeGit(t *testing.T) {
	tmp := t.TempDir()
	priv, pub := sshKey(t, tmp, "signer")
	_, otherPub := sshKey(t, tmp, "other")
	key := strings.Join(strings.Fields(pub)[:2], " ")
	other := strings.Join(strings.Fields(otherPub)[:2], " ")

	repo := regtest.NewRepo(t, filepath.Join(tmp, "reg"), map[string][]byte{"a": regtest.Entry("a-1", "a")})
	repo.Write(regtest.EntryPath("b"), regtest.Entry("b-1", "b"))
	regtest.Git(t, repo.Dir, "add", "-A")
	// regtest.Git dates the commit 2026-11-20T12:00:00Z.
	regtest.Git(t, repo.Dir, "-c", "gpg.format=ssh", "-c", "user.signingkey="+priv, "commit", "-q", "-S", "-m", "signed")

	cases := []struct {
		name, file string
		// stricter: this package refuses what git accepts, on purpose.
		stricter string
		// extension: a line git cannot read that this package accepts:
		// a bare public key (authorized_keys form), trusted without
		// restriction, which is all such a line says.
		extension string
	}{
		{name: "principal", file: "t@example.com " + key},
		{name: "any principal", file: "* " + key},
		{name: "other principal", file: "someone@else " + key},
		{name: "principal list", file: "a@x,t@example.com " + key},
		{name: "quoted principal", file: `"t@example.com" ` + key},
		{name: "namespace file only", file: `t@example.com namespaces="file" ` + key},
		{name: "namespaces git,file", file: `t@example.com namespaces="git,file" ` + key},
		{name: "namespace pattern", file: `t@example.com namespaces="gi*" ` + key},
		{name: "namespace negated", file: `t@example.com namespaces="!git,*" ` + key},
		{name: "options upper case", file: `t@example.com NAMESPACES="file" ` + key},
		{name: "expired", file: `t@example.com valid-before="20200101" ` + key},
		{name: "not yet valid", file: `t@example.com valid-after="20990101" ` + key},
		{name: "valid after, in the past", file: `t@example.com valid-after="20180101" ` + key},
		{name: "expires just after the commit", file: `t@example.com valid-before="20261120120001Z" ` + key},
		{name: "expired just before the commit", file: `t@example.com valid-before="20261120115959Z" ` + key},
		{name: "several options", file: `t@example.com namespaces="git",valid-after="20180101",valid-before="20990101" ` + key},
		{name: "cert-authority", file: "t@example.com cert-authority " + key},
		{name: "cert-authority with namespace", file: `t@example.com cert-authority,namespaces="git" ` + key},
		{name: "revoked marker alone", file: "@revoked " + key,
			stricter: `ssh-keygen reads "@revoked" as a principal name and accepts the key; a known_hosts marker in an allowed_signers file is refused here instead of trusting the key`},
		{name: "revoked marker with principal", file: "@revoked * " + key},
		{name: "unknown option", file: "t@example.com bogus " + key},
		{name: "unterminated quote", file: `t@example.com namespaces="git ` + key},
		{name: "untrusted key", file: "t@example.com " + other},
		{name: "restricted line, then a permitting one", file: `a@x namespaces="file" ` + key + "\nb@x " + key},
		{name: "expired line, then the other key", file: `a@x valid-before="20200101" ` + key + "\nb@x " + other},
		{name: "comment and blank lines", file: "# team keys\n\nt@example.com " + key + "\n"},
		{name: "expired line, then a valid one", file: `a@x valid-before="20200101" ` + key + "\nb@x " + key},
		{name: "bare key", file: key + " comment",
			extension: "earlier versions took authorized_keys lines; the line names a key and no restriction"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(tmp, "allowed_signers_"+string(rune('a'+i)))
			if err := os.WriteFile(file, []byte(c.file+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, gerr := regtest.GitE(repo.Dir, "-c", "gpg.ssh.allowedSignersFile="+file, "verify-commit", "HEAD")
			gitAccepts := gerr == nil

			ours := func() error {
				k, err := resolver.ReadTrustedKeys(file)
				if err != nil {
					return err
				}
				_, err = resolver.Resolve(context.Background(), resolver.Options{Registry: repo.Dir, TrustedKeys: k,
					Cache: resolver.Cache{Dir: filepath.Join(tmp, "cache")}, Now: now})
				return err
			}()
			weAccept := ours == nil
			switch {
			case c.extension != "":
				if gitAccepts || !weAccept {
					t.Errorf("git accepts: %v, we accept: %v (%v); want only us to accept: %s", gitAccepts, weAccept, ours, c.extension)
				}
			case c.stricter != "":
				if !gitAccepts || weAccept {
					t.Errorf("git accepts: %v, we accept: %v (%v); want git to accept and us to refuse: %s", gitAccepts, weAccept, ours, c.stricter)
				}
			case gitAccepts != weAccept:
				t.Errorf("git verify-commit accepts: %v, resolve accepts: %v (%v)", gitAccepts, weAccept, ours)
			}
			t.Logf("git: %v, resolve: %v", gitAccepts, ours)
		})
	}
}

// TestVerifiedLock checks that a lock records the key that verified its
// commit, and that CheckVerified refuses a lock the configured keys do
// not vouch for: one resolved without keys, or with another key.
func TestVerifiedLock(t *testing.T) {
	tmp := t.TempDir()
	priv, pub := sshKey(t, tmp, "signer")
	_, otherPub := sshKey(t, tmp, "other")
	repo := regtest.NewRepo(t, filepath.Join(tmp, "reg"), map[string][]byte{"a": regtest.Entry("a-1", "a")})
	repo.Write(regtest.EntryPath("b"), regtest.Entry("b-1", "b"))
	regtest.Git(t, repo.Dir, "add", "-A")
	regtest.Git(t, repo.Dir, "-c", "gpg.format=ssh", "-c", "user.signingkey="+priv, "commit", "-q", "-S", "-m", "signed")
	keys, err := resolver.ParseTrustedKeys([]byte("t@example.com " + pub))
	if err != nil {
		t.Fatal(err)
	}
	otherKeys, err := resolver.ParseTrustedKeys([]byte(otherPub))
	if err != nil {
		t.Fatal(err)
	}
	lockPath := filepath.Join(tmp, "poison.lock")
	cache := resolver.Cache{Dir: filepath.Join(tmp, "cache")}
	update := func(k *resolver.TrustedKeys) *lock.File {
		t.Helper()
		if _, _, err := resolver.Update(context.Background(), resolver.UpdateOptions{
			Options:  resolver.Options{Registry: repo.Dir, TrustedKeys: k, Cache: cache, Now: now},
			LockPath: lockPath}); err != nil {
			t.Fatal(err)
		}
		l, err := lock.ReadFile(lockPath)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	// Without keys: no verification recorded, refused once keys are on.
	l := update(nil)
	if l.Registry.VerifiedBy != "" {
		t.Errorf("unverified lock records verifiedBy %q", l.Registry.VerifiedBy)
	}
	var ue *resolver.UnverifiedLockError
	if err := resolver.CheckVerified(l, keys); !errors.As(err, &ue) || ue.VerifiedBy != "" {
		t.Errorf("CheckVerified(unverified lock) = %v", err)
	}
	if err := resolver.CheckVerified(l, nil); err != nil {
		t.Errorf("CheckVerified without keys = %v", err)
	}

	// With keys: the lock names the key; the same keys accept it, others
	// do not.
	l = update(keys)
	want := keys.KeyIDs()[0]
	if l.Registry.VerifiedBy != want || !strings.HasPrefix(want, "ssh:SHA256:") {
		t.Errorf("verifiedBy %q, want %q", l.Registry.VerifiedBy, want)
	}
	if err := resolver.CheckVerified(l, keys); err != nil {
		t.Errorf("CheckVerified(verified lock) = %v", err)
	}
	if err := resolver.CheckVerified(l, otherKeys); !errors.As(err, &ue) || ue.VerifiedBy != want {
		t.Errorf("CheckVerified(lock, other keys) = %v", err)
	}
	// The cached lock of the commit (computed without keys before) does
	// not leak an unverified header into a verified resolve, nor back.
	if l = update(nil); l.Registry.VerifiedBy != "" {
		t.Errorf("resolve without keys kept verifiedBy %q", l.Registry.VerifiedBy)
	}
}
