package gitnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	gogitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// SSH says how ssh:// and user@host:path registries are reached. It
// follows OpenSSH: ~/.ssh/config (Host blocks: HostName, Port, User,
// IdentityFile, IdentitiesOnly, UserKnownHostsFile, GlobalKnownHostsFile,
// StrictHostKeyChecking, HostKeyAlias), the keys of the ssh-agent and the
// default identity files, and the host keys in known_hosts.
type SSH struct {
	// KeyFile is the private key to log in with (--ssh-key,
	// POISON_SSH_KEY, poison.toml ssh-key). When set it is the only key
	// offered: no agent, no other file.
	KeyFile string
	// Home is the home directory whose .ssh/ is read; "" reads none.
	Home string
	// AgentSocket is $SSH_AUTH_SOCK; "" means no agent.
	AgentSocket string
	// LocalUser is the login name used when neither the URL nor the
	// configuration names a remote user.
	LocalUser string
	// SystemDir is where the global known hosts files live
	// (/etc/ssh when empty).
	SystemDir string
}

// NoKeyError is an ssh login attempted with no key at all: no agent and
// no key file.
type NoKeyError struct {
	Host string
	// Tried lists the key files looked for, and why each was not used.
	Tried []string
}

func (e *NoKeyError) Error() string {
	msg := fmt.Sprintf("ssh %s: no key to log in with: no ssh-agent (SSH_AUTH_SOCK is not set) and no usable key file", e.Host)
	if len(e.Tried) > 0 {
		msg += " (" + strings.Join(e.Tried, "; ") + ")"
	}
	return msg
}

// Unwrap makes a NoKeyError an authentication failure.
func (e *NoKeyError) Unwrap() error { return transport.ErrAuthenticationRequired }

// HostKeyError is a server whose host key is not known, or has changed.
type HostKeyError struct {
	Host  string
	Files []string
	// Changed is set when known_hosts holds another key for the host.
	Changed bool
	Err     error
}

func (e *HostKeyError) Error() string {
	files := "no known_hosts file exists"
	if len(e.Files) > 0 {
		files = "known hosts files " + strings.Join(e.Files, ", ")
	}
	if e.Changed {
		return fmt.Sprintf("ssh %s: REMOTE HOST KEY CHANGED: the server's key is not the one in %s (someone may be intercepting the connection): %v", e.Host, files, e.Err)
	}
	return fmt.Sprintf("ssh %s: host key unknown: %s lists no key for it", e.Host, files)
}

func (e *HostKeyError) Unwrap() error { return e.Err }

// sshTarget is where and as whom an ssh endpoint is reached.
type sshTarget struct {
	alias      string // the host as written in the URL
	host, port string
	user       string
	keyAlias   string // the name known_hosts is searched for
	cfg        *sshConfig
	tokens     map[byte]string
}

func (s *SSH) target(ep *transport.Endpoint) (*sshTarget, error) {
	cfg := &sshConfig{}
	if s.Home != "" {
		var err error
		if cfg, err = readSSHConfig(filepath.Join(s.Home, ".ssh", "config"), s.Home); err != nil {
			return nil, fmt.Errorf("ssh configuration: %w", err)
		}
	}
	return s.targetFrom(ep, cfg), nil
}

// targetFrom applies the configuration cfg to the endpoint.
func (s *SSH) targetFrom(ep *transport.Endpoint, cfg *sshConfig) *sshTarget {
	t := &sshTarget{alias: ep.Host, host: ep.Host, cfg: cfg}
	if h := cfg.get(ep.Host, "hostname"); h != "" {
		t.host = expandTokens(h, map[byte]string{'h': ep.Host, '%': "%"})
	}
	t.port = "22"
	if ep.Port > 0 {
		t.port = strconv.Itoa(ep.Port)
	} else if p := cfg.get(ep.Host, "port"); p != "" {
		t.port = p
	}
	t.user = ep.User
	if t.user == "" {
		t.user = cfg.get(ep.Host, "user")
	}
	if t.user == "" {
		t.user = s.LocalUser
	}
	t.keyAlias = t.host
	if a := cfg.get(ep.Host, "hostkeyalias"); a != "" {
		t.keyAlias = a
	}
	t.tokens = map[byte]string{'d': s.Home, 'h': t.host, 'p': t.port, 'r': t.user, 'u': s.LocalUser, '%': "%"}
	return t
}

// identityFiles lists the key files the configuration names for the
// target, expanded (none: ssh's defaults apply).
func (t *sshTarget) identityFiles(home string) []string {
	var out []string
	for _, f := range t.cfg.getAll(t.alias, "identityfile") {
		out = append(out, expandTokens(expandTilde(f, home), t.tokens))
	}
	return out
}

func (t *sshTarget) addr() string { return net.JoinHostPort(t.host, t.port) }

// knownHostsFiles lists the existing known hosts files ssh would read.
func (s *SSH) knownHostsFiles(t *sshTarget) []string {
	sys := s.SystemDir
	if sys == "" {
		sys = "/etc/ssh"
	}
	user := "~/.ssh/known_hosts ~/.ssh/known_hosts2"
	if v := t.cfg.get(t.alias, "userknownhostsfile"); v != "" {
		user = v
	}
	global := filepath.Join(sys, "ssh_known_hosts") + " " + filepath.Join(sys, "ssh_known_hosts2")
	if v := t.cfg.get(t.alias, "globalknownhostsfile"); v != "" {
		global = v
	}
	var out []string
	for _, f := range strings.Fields(user + " " + global) {
		if f == "none" {
			continue
		}
		p := expandTokens(expandTilde(f, s.Home), t.tokens)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			out = append(out, p)
		}
	}
	return out
}

// hostKeyCallback checks the server's key against known_hosts as ssh
// does with StrictHostKeyChecking=yes (the only setting that does not
// need a question): an unknown host and a changed key are refused.
// StrictHostKeyChecking accept-new (or no) in the configuration accepts
// and records a new host's key, and still refuses a changed one.
func (s *SSH) hostKeyCallback(t *sshTarget) (ssh.HostKeyCallback, []string, error) {
	files := s.knownHostsFiles(t)
	strict := strings.ToLower(t.cfg.get(t.alias, "stricthostkeychecking"))
	acceptNew := strict == "accept-new" || strict == "no" || strict == "off"
	var db *knownhosts.HostKeyDB
	if len(files) > 0 {
		var err error
		if db, err = knownhosts.NewDB(files...); err != nil {
			return nil, nil, fmt.Errorf("ssh known hosts: %w", err)
		}
	}
	keyAddr := net.JoinHostPort(t.keyAlias, t.port)
	cb := func(_ string, remote net.Addr, key ssh.PublicKey) error {
		var err error
		if db != nil {
			err = db.HostKeyCallback()(keyAddr, remote, key)
			if err == nil {
				return nil
			}
			if knownhosts.IsHostKeyChanged(err) {
				return &HostKeyError{Host: keyAddr, Files: files, Changed: true, Err: err}
			}
			if !knownhosts.IsHostUnknown(err) {
				return &HostKeyError{Host: keyAddr, Files: files, Err: err}
			}
		}
		if !acceptNew {
			return &HostKeyError{Host: keyAddr, Files: files, Err: err}
		}
		return s.recordHostKey(t, keyAddr, remote, key)
	}
	var algos []string
	if db != nil {
		algos = db.HostKeyAlgorithms(keyAddr)
	}
	return cb, algos, nil
}

// recordHostKey appends a new host's key to the user's known_hosts, as
// ssh does under StrictHostKeyChecking accept-new.
func (s *SSH) recordHostKey(t *sshTarget, keyAddr string, remote net.Addr, key ssh.PublicKey) error {
	if s.Home == "" {
		return nil
	}
	user := "~/.ssh/known_hosts"
	if v := t.cfg.get(t.alias, "userknownhostsfile"); v != "" {
		user = strings.Fields(v)[0]
	}
	p := expandTokens(expandTilde(user, s.Home), t.tokens)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("record host key of %s: %w", keyAddr, err)
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record host key of %s: %w", keyAddr, err)
	}
	defer f.Close()
	if err := knownhosts.WriteKnownHost(f, keyAddr, remote, key); err != nil {
		return fmt.Errorf("record host key of %s: %w", keyAddr, err)
	}
	return nil
}

// defaultIdentities are the key files ssh tries when the configuration
// names none.
var defaultIdentities = []string{"id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk"}

// signers returns the keys to offer: the KeyFile alone, else the agent's
// keys (unless IdentitiesOnly) and the identity files.
func (s *SSH) signers(t *sshTarget) ([]ssh.Signer, func(), error) {
	if s.KeyFile != "" {
		k, err := loadKey(s.KeyFile)
		if err != nil {
			return nil, nil, err
		}
		return []ssh.Signer{k}, func() {}, nil
	}
	var out []ssh.Signer
	var tried []string
	closeAgent := func() {}
	only := strings.EqualFold(t.cfg.get(t.alias, "identitiesonly"), "yes")
	if s.AgentSocket != "" && !only {
		conn, err := net.Dial("unix", s.AgentSocket)
		if err != nil {
			tried = append(tried, fmt.Sprintf("SSH_AUTH_SOCK=%s: %v", s.AgentSocket, err))
		} else {
			closeAgent = func() { conn.Close() }
			ks, err := agent.NewClient(conn).Signers()
			if err != nil {
				tried = append(tried, fmt.Sprintf("ssh-agent: %v", err))
			}
			out = append(out, ks...)
		}
	}
	files := t.identityFiles(s.Home)
	explicit := len(files) > 0
	if !explicit && s.Home != "" {
		for _, n := range defaultIdentities {
			files = append(files, filepath.Join(s.Home, ".ssh", n))
		}
	}
	for _, p := range files {
		if _, err := os.Stat(p); err != nil {
			if explicit {
				tried = append(tried, fmt.Sprintf("IdentityFile %s: %v", p, unwrapPath(err)))
			}
			continue
		}
		k, err := loadKey(p)
		if err != nil {
			tried = append(tried, err.Error())
			continue
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		closeAgent()
		if !explicit && s.Home != "" {
			tried = append(tried, "none of "+filepath.Join(s.Home, ".ssh", "{"+strings.Join(defaultIdentities, ",")+"}")+" exists")
		}
		return nil, nil, &NoKeyError{Host: t.addr(), Tried: tried}
	}
	return out, closeAgent, nil
}

// maxKeyFile bounds a private key file.
const maxKeyFile = 1 << 20

// loadKey reads an unencrypted private key file.
func loadKey(path string) (ssh.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("ssh key %s: larger than %d bytes, not a private key", path, maxKeyFile)
	}
	k, err := ssh.ParsePrivateKey(data)
	var pm *ssh.PassphraseMissingError
	if errors.As(err, &pm) {
		return nil, fmt.Errorf("ssh key %s is protected by a passphrase: load it into ssh-agent, or use a key without one (a deploy key)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	return k, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// sshSession logs in to the endpoint's server and starts git-upload-pack
// on the repository.
func (c *Config) sshSession(ctx context.Context, ep *transport.Endpoint, d *dialer) (*pipeSession, error) {
	s := c.SSH
	t, err := s.target(ep)
	if err != nil {
		return nil, err
	}
	// Connect first, as ssh does: an unreachable server is reported as
	// such, whatever the keys.
	addr := t.addr()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	var cc *ssh.ClientConfig
	closeAgent := func() {}
	fail0 := func(err error) (*pipeSession, error) {
		conn.Close()
		closeAgent()
		return nil, err
	}
	if a, ok := c.Auth.(gogitssh.AuthMethod); ok {
		// A caller-built method (tests: a key and a pinned host key).
		if cc, err = a.ClientConfig(); err != nil {
			return fail0(err)
		}
	} else if c.Auth != nil {
		return fail0(fmt.Errorf("ssh: unsupported authentication method %s", c.Auth.Name()))
	}
	if cc == nil || cc.HostKeyCallback == nil {
		cb, algos, err := s.hostKeyCallback(t)
		if err != nil {
			return fail0(err)
		}
		if cc == nil {
			signers, closeFn, err := s.signers(t)
			if err != nil {
				return fail0(err)
			}
			closeAgent = closeFn
			cc = &ssh.ClientConfig{User: t.user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signers...)}}
		}
		cc.HostKeyCallback = cb
		cc.HostKeyAlgorithms = algos
	}
	if cc.User == "" {
		cc.User = t.user
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cc)
	if err != nil {
		conn.Close()
		closeAgent()
		if te := d.w.stalledErr(); te != nil {
			return nil, te
		}
		var hk *HostKeyError
		if errors.As(err, &hk) {
			return nil, hk
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("ssh %s@%s: the server refused the keys offered (%v): %w", cc.User, addr, err, transport.ErrAuthenticationRequired)
		}
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	client := ssh.NewClient(sc, chans, reqs)
	fail := func(err error) (*pipeSession, error) {
		client.Close()
		closeAgent()
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	sess, err := client.NewSession()
	if err != nil {
		return fail(err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		return fail(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	stderr, err := sess.StderrPipe()
	if err != nil {
		return fail(err)
	}
	if err := sess.Start("git-upload-pack " + shellQuote(ep.Path)); err != nil {
		return fail(err)
	}
	return &pipeSession{
		r: stdout, w: stdin, stderr: newTailBuffer(stderr),
		closeFn: func() error {
			sess.Close()
			closeAgent()
			return client.Close()
		},
	}, nil
}

// shellQuote quotes s for a POSIX shell (and git-shell) as git does:
// single quotes, with ' and ! escaped outside them.
func shellQuote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' || s[i] == '!' {
			b.WriteString(`'\`)
			b.WriteByte(s[i])
			b.WriteByte('\'')
			continue
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('\'')
	return b.String()
}
