package regtest

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	gogitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
)

// SSH is an SSH server on 127.0.0.1 that runs `git upload-pack` on the
// repositories under a root directory for one client key, like a git
// hosting service's SSH endpoint.
type SSH struct {
	Port int
	// Auth authenticates the client and pins the server's host key.
	Auth *gogitssh.PublicKeys
	// HostKey is the server's public host key.
	HostKey  ssh.PublicKey
	sessions atomic.Int64
	l        net.Listener
}

// URL is the ssh:// URL of repository name under the root.
func (s *SSH) URL(name string) string {
	return fmt.Sprintf("ssh://git@127.0.0.1:%d/%s", s.Port, name)
}

// Sessions returns the number of commands run so far.
func (s *SSH) Sessions() int64 { return s.sessions.Load() }

// StartSSH serves root over SSH until the test ends.
func StartSSH(tb testing.TB, root string) *SSH {
	tb.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(nil)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		tb.Fatal(err)
	}
	_, clientPriv, _ := ed25519.GenerateKey(nil)
	clientSigner, err := ssh.NewSignerFromKey(clientPriv)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), clientSigner.PublicKey().Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	cfg.AddHostKey(hostSigner)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &SSH{
		Port:    l.Addr().(*net.TCPAddr).Port,
		HostKey: hostSigner.PublicKey(),
		l:       l,
		Auth: &gogitssh.PublicKeys{User: "git", Signer: clientSigner,
			HostKeyCallbackHelper: gogitssh.HostKeyCallbackHelper{HostKeyCallback: ssh.FixedHostKey(hostSigner.PublicKey())}},
	}
	tb.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(conn, cfg, root)
		}
	}()
	return s
}

func (s *SSH) serve(conn net.Conn, cfg *ssh.ServerConfig, root string) {
	defer conn.Close()
	_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go s.session(ch, creqs, root)
	}
}

func (s *SSH) session(ch ssh.Channel, reqs <-chan *ssh.Request, root string) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			if req.WantReply {
				req.Reply(false, nil)
			}
			continue
		}
		var p struct{ Cmd string }
		if ssh.Unmarshal(req.Payload, &p) != nil {
			req.Reply(false, nil)
			return
		}
		// "git-upload-pack '/reg.git'"
		name, arg, _ := strings.Cut(p.Cmd, " ")
		if name != "git-upload-pack" {
			req.Reply(false, nil)
			return
		}
		req.Reply(true, nil)
		s.sessions.Add(1)
		repo := filepath.Join(root, filepath.Clean("/"+strings.Trim(arg, "'")))
		cmd := exec.Command("git", "upload-pack", repo)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
		status := uint32(0)
		if err := cmd.Run(); err != nil {
			status = 1
		}
		ch.CloseWrite()
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}
