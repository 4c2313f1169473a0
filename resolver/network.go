package resolver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/poison-nix/poison/registry"
	"github.com/poison-nix/poison/resolver/internal/gitnet"
)

// Default network timeouts: long enough that a healthy server never meets
// them, short enough that a dead one does not hold a CI job.
const (
	DefaultConnectTimeout = gitnet.DefaultConnectTimeout
	DefaultStallTimeout   = gitnet.DefaultStallTimeout
)

// Network configures how remote registries are reached.
type Network struct {
	// ConnectTimeout bounds establishing a connection (TCP and TLS);
	// 0 means DefaultConnectTimeout, negative no limit.
	ConnectTimeout time.Duration
	// StallTimeout ends a fetch when the server sends (or takes) no byte
	// for that long; 0 means DefaultStallTimeout, negative no limit.
	StallTimeout time.Duration
	// SSHKey is a private key file for ssh registries; when set it is the
	// only key offered (no agent needed).
	SSHKey string
	// Home is the home directory whose ~/.ssh (config, known_hosts,
	// id_* keys) ssh registries use; "" uses none.
	Home string
	// SSHAuthSock is the ssh-agent socket ($SSH_AUTH_SOCK); "" means no
	// agent.
	SSHAuthSock string
	// User is the local login name, the default remote user of ssh.
	User string
	// TLS, when set, configures https (e.g. a private CA).
	TLS *tls.Config
	// Progress, when set, receives a progress line redrawn while a fetch
	// takes more than a second. Set it only for a capable terminal.
	Progress io.Writer
}

// NetworkFromEnv fills the ssh fields of a Network from the environment:
// HOME, SSH_AUTH_SOCK and USER (or LOGNAME).
func NetworkFromEnv(getenv func(string) string) Network {
	u := getenv("USER")
	if u == "" {
		u = getenv("LOGNAME")
	}
	return Network{Home: getenv("HOME"), SSHAuthSock: getenv("SSH_AUTH_SOCK"), User: u}
}

func (o *Options) gitnetConfig(label string) gitnet.Config {
	n := o.Network
	return gitnet.Config{
		ConnectTimeout: n.ConnectTimeout,
		StallTimeout:   n.StallTimeout,
		TLS:            n.TLS,
		SSH: gitnet.SSH{
			KeyFile:     n.SSHKey,
			Home:        n.Home,
			AgentSocket: n.SSHAuthSock,
			LocalUser:   n.User,
		},
		Auth:     o.Auth,
		Progress: n.Progress,
		Label:    label,
		// The network caps follow the registry limits when those are
		// raised above them: a registry allowed larger trees or files,
		// or more bytes, may send them.
		MaxObject:  raised(gitnet.DefaultMaxObject, o.Limits.TreeSize, o.Limits.FileSize),
		MaxReceive: raised(gitnet.DefaultMaxReceive, o.Limits.TotalBytes),
	}
}

// raised is the largest of limits when one is above def, else 0 (the
// default).
func raised(def int64, limits ...int64) int64 {
	var m int64
	for _, l := range limits {
		m = max(m, l)
	}
	if m > def {
		return m
	}
	return 0
}

// fetchLimitError adds to a fetch refused for its size the setting that
// raises the limit.
func fetchLimitError(err error) error {
	var ot *gitnet.ObjectTooLargeError
	var tl *gitnet.TooLargeError
	switch {
	case errors.As(err, &ot) && ot.Type == plumbing.BlobObject:
		return fmt.Errorf("%w%s", err, registry.LimitHint("FileSize"))
	case errors.As(err, &ot):
		return fmt.Errorf("%w%s", err, registry.LimitHint("TreeSize"))
	case errors.As(err, &tl):
		return fmt.Errorf("%w%s", err, registry.LimitHint("TotalBytes"))
	}
	return err
}

// IsTimeout reports whether err is a connect or stall timeout of a fetch.
func IsTimeout(err error) bool {
	var te *gitnet.TimeoutError
	return errors.As(err, &te)
}

// IsNoSSHKey reports whether err is an ssh login with no key to offer
// (no agent, no key file).
func IsNoSSHKey(err error) bool {
	var ne *gitnet.NoKeyError
	return errors.As(err, &ne)
}

// IsHostKey reports whether err is an ssh server whose host key is
// unknown or changed.
func IsHostKey(err error) bool {
	var he *gitnet.HostKeyError
	return errors.As(err, &he)
}

// ParseTimeout parses a timeout setting: a Go duration ("45s", "2m") or
// a number of seconds ("30"); "0" or "none" means no limit.
func ParseTimeout(s string) (time.Duration, error) {
	if s == "none" || s == "0" {
		return -1, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && n > 0 && fmt.Sprint(n) == s {
		return time.Duration(n) * time.Second, nil
	}
	return 0, fmt.Errorf("invalid timeout %q: want e.g. 30s, 2m, or 0 for none", s)
}
