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

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"
)

// TrustedKeys is a set of public keys a registry commit must be signed
// with: OpenPGP keys (armored blocks) and SSH keys (authorized_keys lines,
// or allowed_signers lines "PRINCIPALS KEYTYPE KEY").
type TrustedKeys struct {
	pgp []openpgp.EntityList
	ssh []ssh.PublicKey
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
			pub, err := parseSSHLine(line)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			k.ssh = append(k.ssh, pub)
		}
	}
	if len(k.pgp) == 0 && len(k.ssh) == 0 {
		return nil, errors.New("no keys in file")
	}
	return k, nil
}

func parseSSHLine(line string) (ssh.PublicKey, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err == nil {
		return pub, nil
	}
	// allowed_signers: principals first, then options maybe, then the key.
	fields := strings.Fields(line)
	for j := 1; j < len(fields); j++ {
		if pub, _, _, _, err2 := ssh.ParseAuthorizedKey([]byte(strings.Join(fields[j:], " "))); err2 == nil {
			return pub, nil
		}
	}
	return nil, fmt.Errorf("not an OpenPGP key block or an SSH public key: %v", err)
}

// Len returns the number of trusted keys (an OpenPGP block counts once).
func (k *TrustedKeys) Len() int { return len(k.pgp) + len(k.ssh) }

// VerifyCommit checks that c carries a valid signature by one of the keys.
// It returns a description of the signer.
func (k *TrustedKeys) VerifyCommit(c *object.Commit) (string, error) {
	sig := strings.TrimSpace(c.PGPSignature)
	switch {
	case sig == "":
		return "", fmt.Errorf("commit %s is not signed", c.Hash)
	case strings.HasPrefix(sig, "-----BEGIN PGP SIGNATURE-----"):
		if len(k.pgp) == 0 {
			return "", fmt.Errorf("commit %s has an OpenPGP signature but no OpenPGP key is trusted", c.Hash)
		}
		payload, err := signedPayload(c)
		if err != nil {
			return "", err
		}
		var last error
		for _, el := range k.pgp {
			ent, err := openpgp.CheckArmoredDetachedSignature(el, bytes.NewReader(payload), strings.NewReader(c.PGPSignature), nil)
			if err == nil {
				for name := range ent.Identities {
					return "OpenPGP key " + name, nil
				}
				return fmt.Sprintf("OpenPGP key %X", ent.PrimaryKey.Fingerprint), nil
			}
			last = err
		}
		return "", fmt.Errorf("commit %s: OpenPGP signature not made by a trusted key: %v", c.Hash, last)
	case strings.HasPrefix(sig, "-----BEGIN SSH SIGNATURE-----"):
		if len(k.ssh) == 0 {
			return "", fmt.Errorf("commit %s has an SSH signature but no SSH key is trusted", c.Hash)
		}
		payload, err := signedPayload(c)
		if err != nil {
			return "", err
		}
		pub, err := verifySSHSig(sig, payload, "git", k.ssh)
		if err != nil {
			return "", fmt.Errorf("commit %s: %w", c.Hash, err)
		}
		return "SSH key " + ssh.FingerprintSHA256(pub), nil
	default:
		return "", fmt.Errorf("commit %s has a signature of an unsupported kind (X.509?)", c.Hash)
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
// ssh-keygen -Y sign, PROTOCOL.sshsig) over msg in namespace, made by one of
// keys. It returns the key that made it.
func verifySSHSig(armored string, msg []byte, namespace string, keys []ssh.PublicKey) (ssh.PublicKey, error) {
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
	trusted := false
	for _, k := range keys {
		if bytes.Equal(k.Marshal(), pub.Marshal()) {
			trusted = true
			break
		}
	}
	if !trusted {
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
	return pub, nil
}
