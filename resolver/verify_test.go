package resolver_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/poison-nix/poison/resolver"
	"github.com/poison-nix/poison/resolver/internal/regtest"
)

func pgpKey(t *testing.T, name string) (*openpgp.Entity, []byte) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	buf.WriteByte('\n')
	return e, buf.Bytes()
}

// signedCommit commits a new entry in the work tree with go-git, signed by
// key (unsigned when nil).
func signedCommit(t *testing.T, dir, name string, key *openpgp.Entity) {
	t.Helper()
	os.WriteFile(filepath.Join(dir, regtest.EntryPath(name)), regtest.Entry(name+"-1", name), 0o644)
	r, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := r.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add(regtest.EntryPath(name)); err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "T", Email: "t@example.com", When: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)}
	if _, err := wt.Commit("add "+name, &git.CommitOptions{Author: sig, Committer: sig, SignKey: key}); err != nil {
		t.Fatal(err)
	}
}

func sshKey(t *testing.T, dir, name string) (priv, pub string) {
	t.Helper()
	priv = filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", priv).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(priv + ".pub")
	return priv, string(b)
}

// TestTrustedKeys checks that a resolve with --trusted-keys accepts only a
// commit signed by a trusted OpenPGP or SSH key.
func TestTrustedKeys(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	tmp := t.TempDir()
	repo := regtest.NewRepo(t, filepath.Join(tmp, "reg"), map[string][]byte{"a": regtest.Entry("a-1", "a")})
	good, goodPub := pgpKey(t, "good")
	_, otherPub := pgpKey(t, "other")
	sshPriv, sshPub := sshKey(t, tmp, "id_good")
	_, sshOther := sshKey(t, tmp, "id_other")

	resolve := func(keys string) (*resolver.Result, error) {
		k, err := resolver.ParseTrustedKeys([]byte(keys))
		if err != nil {
			t.Fatal(err)
		}
		return resolver.Resolve(context.Background(), resolver.Options{Registry: repo.Dir, TrustedKeys: k, Cache: resolver.Cache{Dir: filepath.Join(tmp, "cache")}, Now: now})
	}
	check := func(what, keys string, wantErr string) {
		t.Helper()
		res, err := resolve(keys)
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("%s: %v", what, err)
		case wantErr == "" && res.Signer == "":
			t.Errorf("%s: no signer reported", what)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("%s: err = %v, want %q", what, err, wantErr)
		}
	}

	// The initial commit is unsigned.
	check("unsigned", string(goodPub), "is not signed")

	signedCommit(t, repo.Dir, "b", good)
	check("OpenPGP, trusted", string(goodPub), "")
	check("OpenPGP, trusted among others", string(otherPub)+"\n# comment\n"+sshPub+string(goodPub), "")
	check("OpenPGP, untrusted", string(otherPub), "not made by a trusted key")
	check("OpenPGP signature, only SSH keys trusted", sshPub, "no OpenPGP key is trusted")

	regtest.Git(t, repo.Dir, "-c", "gpg.format=ssh", "-c", "user.signingkey="+sshPriv, "commit", "-q", "--allow-empty", "-S", "-m", "ssh signed")
	check("SSH, trusted", sshPub, "")
	check("SSH, trusted as allowed_signers line", "t@example.com "+sshPub+string(otherPub), "")
	check("SSH, untrusted", sshOther, "not a trusted key")
	check("SSH signature, only OpenPGP keys trusted", string(goodPub), "no SSH key is trusted")

	// A tampered commit: same signature, other content.
	raw := regtest.Git(t, repo.Dir, "cat-file", "commit", "HEAD")
	tampered := strings.Replace(raw, "ssh signed", "ssh signeD", 1)
	cmd := exec.Command("git", "hash-object", "-t", "commit", "-w", "--stdin")
	cmd.Dir = repo.Dir
	cmd.Stdin = strings.NewReader(tampered + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	regtest.Git(t, repo.Dir, "update-ref", "refs/heads/main", strings.TrimSpace(string(out)))
	check("SSH, tampered commit", sshPub, "does not verify")

	for _, bad := range []string{"", "# only a comment\n", "not a key\n", "-----BEGIN PGP PUBLIC KEY BLOCK-----\nxx\n"} {
		if _, err := resolver.ParseTrustedKeys([]byte(bad)); err == nil {
			t.Errorf("ParseTrustedKeys(%q) accepted", bad)
		}
	}
}
