package resolver

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"

	"github.com/poison-nix/poison/registry/lock"
)

// TrustedKeys is a set of public keys a registry commit must be signed
// with: OpenPGP keys (armored blocks) and SSH keys, as the lines of an
// OpenSSH allowed_signers file (what git's gpg.ssh.allowedSignersFile
// holds: principals, options, key; see sshSigner) or plain authorized_keys
// lines. SSH signatures are accepted exactly when `git verify-commit`
// would accept them with the same file; a line this package does not
// understand makes the whole file an error (fail closed).
type TrustedKeys struct {
	pgp []openpgp.EntityList
	ssh []*sshSigner
}

// ReadTrustedKeys reads a trusted keys file.
func ReadTrustedKeys(path string) (*TrustedKeys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read trusted keys: %w", err)
	}
	k, err := ParseTrustedKeys(data)
	if err != nil {
		return nil, fmt.Errorf("trusted keys %s: %w", path, err)
	}
	return k, nil
}

// ParseTrustedKeys parses the content of a trusted keys file. It fails on
// anything it does not understand, and when there is no key at all.
func ParseTrustedKeys(data []byte) (*TrustedKeys, error) {
	k := &TrustedKeys{}
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case line == "-----BEGIN PGP PUBLIC KEY BLOCK-----":
			start := i
			for i < len(lines) && strings.TrimSpace(lines[i]) != "-----END PGP PUBLIC KEY BLOCK-----" {
				i++
			}
			if i == len(lines) {
				return nil, fmt.Errorf("line %d: PGP key block has no END line", start+1)
			}
			block := strings.Join(lines[start:i+1], "\n") + "\n"
			el, err := openpgp.ReadArmoredKeyRing(strings.NewReader(block))
			if err != nil {
				return nil, fmt.Errorf("line %d: PGP key block: %w", start+1, err)
			}
			k.pgp = append(k.pgp, el)
		default:
			sg, err := parseSSHSigner(line, i+1)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			k.ssh = append(k.ssh, sg)
		}
	}
	if len(k.pgp) == 0 && len(k.ssh) == 0 {
		return nil, errors.New("no keys in file")
	}
	return k, nil
}

// Len returns the number of trusted keys (an OpenPGP block counts once).
func (k *TrustedKeys) Len() int { return len(k.pgp) + len(k.ssh) }

// KeyIDs lists the identifiers (as VerifyCommit returns them) of the keys
// that may sign: "ssh:SHA256:..." for SSH keys (not cert-authority lines),
// "openpgp:FINGERPRINT" for the primary OpenPGP keys.
func (k *TrustedKeys) KeyIDs() []string {
	var out []string
	for _, s := range k.ssh {
		if !s.certAuthority {
			out = append(out, sshKeyID(s.key))
		}
	}
	for _, el := range k.pgp {
		for _, e := range el {
			out = append(out, pgpKeyID(e))
		}
	}
	return out
}

func sshKeyID(k ssh.PublicKey) string { return "ssh:" + ssh.FingerprintSHA256(k) }
func pgpKeyID(e *openpgp.Entity) string {
	return fmt.Sprintf("openpgp:%X", e.PrimaryKey.Fingerprint)
}

// VerifyCommit checks that c carries a valid signature by one of the keys.
// It returns a description of the signer.
func (k *TrustedKeys) VerifyCommit(c *object.Commit) (string, error) {
	_, desc, err := k.verify(c)
	return desc, err
}

// verify checks c's signature and returns the identifier of the key that
// made it (see KeyIDs) and a description for messages.
func (k *TrustedKeys) verify(c *object.Commit) (id, desc string, err error) {
	sig := strings.TrimSpace(c.PGPSignature)
	switch {
	case sig == "":
		return "", "", fmt.Errorf("commit %s is not signed", c.Hash)
	case strings.HasPrefix(sig, "-----BEGIN PGP SIGNATURE-----"):
		if len(k.pgp) == 0 {
			return "", "", fmt.Errorf("commit %s has an OpenPGP signature but no OpenPGP key is trusted", c.Hash)
		}
		payload, err := signedPayload(c)
		if err != nil {
			return "", "", err
		}
		var last error
		for _, el := range k.pgp {
			ent, err := openpgp.CheckArmoredDetachedSignature(el, bytes.NewReader(payload), strings.NewReader(c.PGPSignature), nil)
			if err == nil {
				for name := range ent.Identities {
					return pgpKeyID(ent), fmt.Sprintf("OpenPGP key %X (%s)", ent.PrimaryKey.Fingerprint, name), nil
				}
				return pgpKeyID(ent), fmt.Sprintf("OpenPGP key %X", ent.PrimaryKey.Fingerprint), nil
			}
			last = err
		}
		return "", "", fmt.Errorf("commit %s: OpenPGP signature not made by a trusted key: %v", c.Hash, last)
	case strings.HasPrefix(sig, "-----BEGIN SSH SIGNATURE-----"):
		if len(k.ssh) == 0 {
			return "", "", fmt.Errorf("commit %s has an SSH signature but no SSH key is trusted", c.Hash)
		}
		payload, err := signedPayload(c)
		if err != nil {
			return "", "", err
		}
		sg, err := verifySSHSig(sig, payload, "git", c.Committer.When, k.ssh)
		if err != nil {
			return "", "", fmt.Errorf("commit %s: %w", c.Hash, err)
		}
		desc := "SSH key " + ssh.FingerprintSHA256(sg.key)
		if sg.principals != "" {
			desc += " (" + sg.principals + ")"
		}
		return sshKeyID(sg.key), desc, nil
	default:
		return "", "", fmt.Errorf("commit %s has a signature of an unsupported kind (X.509?)", c.Hash)
	}
}

// signedPayload returns the bytes a commit signature covers.
func signedPayload(c *object.Commit) ([]byte, error) {
	o := &plumbing.MemoryObject{}
	if err := c.EncodeWithoutSignature(o); err != nil {
		return nil, fmt.Errorf("encode commit %s: %w", c.Hash, err)
	}
	r, err := o.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// verifySSHSig checks an armored SSHSIG signature (the format of
// ssh-keygen -Y sign) over msg in namespace, made at time when by the key
// of one of the allowed signers whose options permit it, as ssh-keygen -Y
// verify does for git. It returns that signer.
func verifySSHSig(armored string, msg []byte, namespace string, when time.Time, signers []*sshSigner) (*sshSigner, error) {
	const begin, end = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"
	s := strings.TrimSpace(armored)
	if !strings.HasPrefix(s, begin) || !strings.HasSuffix(s, end) {
		return nil, errors.New("SSH signature: malformed armor")
	}
	body := strings.Join(strings.Fields(s[len(begin):len(s)-len(end)]), "")
	blob, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("SSH signature: %w", err)
	}
	if !bytes.HasPrefix(blob, []byte("SSHSIG")) {
		return nil, errors.New("SSH signature: missing SSHSIG magic")
	}
	var w struct {
		Version   uint32
		PublicKey []byte
		Namespace string
		Reserved  string
		HashAlg   string
		Signature []byte
	}
	if err := ssh.Unmarshal(blob[6:], &w); err != nil {
		return nil, fmt.Errorf("SSH signature: %w", err)
	}
	if w.Version != 1 {
		return nil, fmt.Errorf("SSH signature: unsupported version %d", w.Version)
	}
	if w.Namespace != namespace {
		return nil, fmt.Errorf("SSH signature: namespace %q, want %q", w.Namespace, namespace)
	}
	pub, err := ssh.ParsePublicKey(w.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("SSH signature: public key: %w", err)
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return nil, errors.New("SSH signature made with a certificate: certificates are not supported; list the signing key itself in the trusted keys")
	}
	var signer *sshSigner
	var refusals []string
	// As git: ssh-keygen -Y find-principals picks the first line with
	// the key that is valid at the commit's time (cert-authority lines
	// only match certificates), and that line's options then decide.
	for _, sg := range signers {
		if !bytes.Equal(sg.key.Marshal(), pub.Marshal()) {
			continue
		}
		why := sg.refusal(namespace, when)
		if sg.certAuthority || !sg.validAt(when) {
			refusals = append(refusals, fmt.Sprintf("line %d %s", sg.line, why))
			continue
		}
		if why != "" {
			refusals = append(refusals, fmt.Sprintf("line %d %s", sg.line, why))
			break
		}
		signer = sg
		break
	}
	if signer == nil {
		if len(refusals) > 0 {
			return nil, fmt.Errorf("SSH signature made by %s, which the trusted keys do not allow here: %s", ssh.FingerprintSHA256(pub), strings.Join(refusals, "; "))
		}
		return nil, fmt.Errorf("SSH signature made by %s, which is not a trusted key", ssh.FingerprintSHA256(pub))
	}
	var h hash.Hash
	switch w.HashAlg {
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	default:
		return nil, fmt.Errorf("SSH signature: unsupported hash %q", w.HashAlg)
	}
	h.Write(msg)
	signed := ssh.Marshal(struct {
		Namespace string
		Reserved  string
		HashAlg   string
		Hash      []byte
	}{w.Namespace, w.Reserved, w.HashAlg, h.Sum(nil)})
	signed = append([]byte("SSHSIG"), signed...)
	var sig ssh.Signature
	if err := ssh.Unmarshal(w.Signature, &sig); err != nil {
		return nil, fmt.Errorf("SSH signature: %w", err)
	}
	if err := pub.Verify(signed, &sig); err != nil {
		return nil, fmt.Errorf("SSH signature does not verify: %w", err)
	}
	return signer, nil
}

// UnverifiedLockError is a lock that trusted keys do not vouch for: it
// was resolved without verifying its commit, or by a key that is not (or
// no longer) among the trusted keys.
type UnverifiedLockError struct {
	Commit     string
	VerifiedBy string // "" when the lock records no verification
}

func (e *UnverifiedLockError) Error() string {
	c := e.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	if e.VerifiedBy == "" {
		return fmt.Sprintf("the lock pins registry commit %s without a verified signature, but trusted keys are configured", c)
	}
	return fmt.Sprintf("the lock pins registry commit %s as verified by %s, which is not among the trusted keys", c, e.VerifiedBy)
}

// CheckVerified refuses a lock that the trusted keys do not vouch for:
// when keys are configured, the lock must record that its commit was
// verified, by one of them. A lock resolved before the keys were switched
// on is refused until it is resolved again (which verifies the commit).
func CheckVerified(l *lock.File, keys *TrustedKeys) error {
	if keys == nil {
		return nil
	}
	if l.Registry.VerifiedBy != "" {
		for _, id := range keys.KeyIDs() {
			if id == l.Registry.VerifiedBy {
				return nil
			}
		}
	}
	return &UnverifiedLockError{Commit: l.Registry.Commit, VerifiedBy: l.Registry.VerifiedBy}
}
