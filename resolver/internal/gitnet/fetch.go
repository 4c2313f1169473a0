// Package gitnet fetches a git repository's branches and tags into a
// go-git storer over git://, http(s)://, ssh:// and file:// with bounded
// waits: a connect timeout, and a stall timeout on every read and write
// (no byte for that long ends the fetch), on every transport.
//
// Nothing here is global: each fetch builds its own HTTP client, dialer
// and SSH client from its Config (go-git's client.InstallProtocol, which
// would change every fetch of the process, is not used).
package gitnet

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/file"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// Defaults a user does not notice on a healthy server.
const (
	DefaultConnectTimeout = 30 * time.Second
	DefaultStallTimeout   = 30 * time.Second
	// DefaultMaxReceive bounds the bytes one fetch may receive.
	DefaultMaxReceive = 4 << 30
)

// Config configures one fetch.
type Config struct {
	// ConnectTimeout bounds establishing a connection (TCP, and the TLS
	// handshake); 0 means DefaultConnectTimeout, negative none.
	ConnectTimeout time.Duration
	// StallTimeout bounds every wait for the server to send or take a
	// byte; 0 means DefaultStallTimeout, negative none.
	StallTimeout time.Duration
	// MaxReceive bounds the bytes received; 0 means DefaultMaxReceive.
	MaxReceive int64
	// MaxObject bounds the size of each object of the pack (checked
	// before the pack is unpacked); 0 means DefaultMaxObject.
	MaxObject int64
	// TempDir receives the pack while it is checked ("" : the system's
	// temporary directory); the clone's directory keeps it on one disk.
	TempDir string
	// TLS, when set, configures https (tests: a private CA).
	TLS *tls.Config
	// SSH says how ssh endpoints are reached.
	SSH SSH
	// Auth, when set, authenticates instead of what the URL or SSH
	// configuration give.
	Auth transport.AuthMethod
	// Progress, when set, receives a progress line (redrawn with \r)
	// while a fetch takes longer than a second; Label names the fetch.
	Progress io.Writer
	Label    string
}

func (c *Config) timeouts() (connect, stall time.Duration) {
	connect, stall = c.ConnectTimeout, c.StallTimeout
	if connect == 0 {
		connect = DefaultConnectTimeout
	}
	if stall == 0 {
		stall = DefaultStallTimeout
	}
	return max(connect, 0), max(stall, 0)
}

// Result is what a fetch found and stored.
type Result struct {
	// Head is the branch the remote HEAD points to ("" when the server
	// does not say).
	Head string
	// Refs are the fetched references under their local names
	// (refs/remotes/origin/BRANCH, refs/tags/TAG).
	Refs map[plumbing.ReferenceName]plumbing.Hash
	// Fetched is set when a pack was received (some reference was new).
	Fetched bool
	// Received is the number of bytes read from the network.
	Received int64
}

// RemoteError is a failure on the server's side of a fetch: it could not
// be reached, refused, stalled, or sent something unusable. Errors not
// wrapped in one concern the local repository.
type RemoteError struct{ Err error }

func (e *RemoteError) Error() string { return e.Err.Error() }
func (e *RemoteError) Unwrap() error { return e.Err }

// TooLargeError is a server that sent more than Config.MaxReceive bytes.
type TooLargeError struct{ Max int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the server sent more than %d bytes", e.Max)
}

// Fetch brings the branches (as refs/remotes/origin/*) and tags of the
// repository at url into st, pruning the ones the remote no longer has.
// It lists the remote references first and asks for a pack only when one
// of them is new, so an up-to-date fetch costs one round trip.
func Fetch(ctx context.Context, st storer.Storer, url string, c Config) (res *Result, err error) {
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return nil, err
	}
	w := &watch{}
	connect, stall := c.timeouts()
	d := &dialer{connect: connect, stall: stall, w: w}
	maxRecv := c.MaxReceive
	if maxRecv == 0 {
		maxRecv = DefaultMaxReceive
	}
	stopProgress := startProgress(c.Progress, c.Label, w)
	defer stopProgress()
	defer func() {
		// Transports rewrap (or swallow) the error of a stalled read:
		// the watch knows.
		if err != nil && ctx.Err() == nil {
			var te *TimeoutError
			if st := w.stalledErr(); st != nil {
				err = &RemoteError{st}
			} else if errors.As(err, &te) {
				err = &RemoteError{te} // without the transport's wrapping ("Get URL: ...")
			} else if strings.Contains(err.Error(), "TLS handshake timeout") {
				err = &RemoteError{&TimeoutError{After: connect, Addr: ep.Host}}
			}
		}
		if res != nil {
			res.Received = w.received.Load()
		}
	}()

	sess, err := c.open(ctx, ep, d, maxRecv)
	if err != nil {
		return nil, &RemoteError{err}
	}
	defer func() {
		if cerr := sess.Close(); err == nil && cerr != nil && ep.Protocol == "file" {
			err = cerr
		}
	}()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		if errors.Is(err, transport.ErrEmptyRemoteRepository) {
			return nil, &RemoteError{errors.New("the remote repository is empty")}
		}
		return nil, &RemoteError{err}
	}
	remote, err := ar.AllReferences()
	if err != nil {
		return nil, &RemoteError{err}
	}
	res = &Result{Refs: map[plumbing.ReferenceName]plumbing.Hash{}}
	for name, ref := range remote {
		switch {
		case name == plumbing.HEAD:
			if ref.Type() == plumbing.SymbolicReference {
				res.Head = ref.Target().Short()
			}
		case ref.Type() != plumbing.HashReference:
		case name.IsBranch():
			res.Refs[plumbing.NewRemoteReferenceName("origin", name.Short())] = ref.Hash()
		case name.IsTag():
			res.Refs[name] = ref.Hash()
		}
	}
	wants, haves, err := wantsAndHaves(st, res.Refs)
	if err != nil {
		return nil, err
	}
	if len(wants) > 0 {
		maxObject := c.MaxObject
		if maxObject == 0 {
			maxObject = DefaultMaxObject
		}
		if err := fetchPack(ctx, st, sess, ar, wants, haves, c.Progress != nil, c.TempDir, maxObject, ep.Protocol == "file"); err != nil {
			return nil, &RemoteError{err}
		}
		for _, h := range wants {
			if st.HasEncodedObject(h) != nil {
				return nil, &RemoteError{fmt.Errorf("the server's pack lacks object %s that it advertised", h)}
			}
		}
		res.Fetched = true
	}
	if err := updateRefs(st, res.Refs); err != nil {
		return nil, err
	}
	return res, nil
}

// open starts an upload-pack session with the endpoint's server.
func (c *Config) open(ctx context.Context, ep *transport.Endpoint, d *dialer, maxRecv int64) (transport.UploadPackSession, error) {
	switch ep.Protocol {
	case "git":
		if c.Auth != nil {
			return nil, transport.ErrInvalidAuthMethod
		}
		port := ep.Port
		if port <= 0 {
			port = 9418
		}
		addr := net.JoinHostPort(ep.Host, strconv.Itoa(port))
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		host := ep.Host
		if ep.Port > 0 && ep.Port != 9418 {
			host = addr
		}
		req := packp.GitProtoRequest{RequestCommand: transport.UploadPackServiceName, Pathname: ep.Path, Host: host}
		if err := req.Encode(conn); err != nil {
			conn.Close()
			return nil, err
		}
		return &pipeSession{
			r:       bufio.NewReaderSize(&capReader{r: conn, max: maxRecv}, 64<<10),
			w:       nopWriteCloser{conn},
			closeFn: conn.Close,
		}, nil
	case "ssh":
		s, err := c.sshSession(ctx, ep, d)
		if err != nil {
			return nil, err
		}
		s.r = bufio.NewReaderSize(&capReader{r: s.r, max: maxRecv}, 64<<10)
		return s, nil
	case "http", "https":
		connect, _ := c.timeouts()
		var tlsConf *tls.Config
		if c.TLS != nil {
			tlsConf = c.TLS.Clone()
		}
		tr := &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         d.DialContext,
			TLSClientConfig:     tlsConf,
			TLSHandshakeTimeout: connect,
			// One fetch makes two requests; an idle pooled connection
			// would only count as a stall.
			DisableKeepAlives: true,
		}
		hc := &http.Client{Transport: &capTransport{rt: tr, max: maxRecv}}
		return githttp.NewClient(hc).NewUploadPackSession(ep, c.Auth)
	case "file":
		return file.DefaultClient.NewUploadPackSession(ep, c.Auth)
	}
	return nil, fmt.Errorf("unsupported protocol %q", ep.Protocol)
}

// wantsAndHaves lists the advertised objects st lacks, and the local tips
// st has (so the server sends only what is new).
func wantsAndHaves(st storer.Storer, refs map[plumbing.ReferenceName]plumbing.Hash) (wants, haves []plumbing.Hash, err error) {
	seen := map[plumbing.Hash]bool{}
	for _, h := range refs {
		if !seen[h] && st.HasEncodedObject(h) != nil {
			wants = append(wants, h)
		}
		seen[h] = true
	}
	iter, err := st.IterReferences()
	if err != nil {
		return nil, nil, err
	}
	have := map[plumbing.Hash]bool{}
	err = iter.ForEach(func(r *plumbing.Reference) error {
		if r.Type() == plumbing.HashReference && !have[r.Hash()] && st.HasEncodedObject(r.Hash()) == nil {
			have[r.Hash()] = true
			haves = append(haves, r.Hash())
		}
		return nil
	})
	return wants, haves, err
}

// fetchPack asks for wants and stores the pack the server sends.
func fetchPack(ctx context.Context, st storer.Storer, sess transport.UploadPackSession, ar *packp.AdvRefs, wants, haves []plumbing.Hash, progress bool, tmpDir string, maxObject int64, local bool) error {
	req := packp.NewUploadPackRequestFromCapabilities(ar.Capabilities)
	req.Wants, req.Haves = wants, haves
	if !progress && ar.Capabilities.Supports(capability.NoProgress) {
		// Without progress the server still sends keep-alive packets
		// while it prepares a large pack.
		req.Capabilities.Set(capability.NoProgress)
	}
	resp, err := sess.UploadPack(ctx, req)
	if err != nil {
		return err
	}
	defer resp.Close()
	var r io.Reader = resp
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		r = sideband.NewDemuxer(sideband.Sideband64k, resp)
	case req.Capabilities.Supports(capability.Sideband):
		r = sideband.NewDemuxer(sideband.Sideband, resp)
	}
	if err := storePack(st, r, tmpDir, maxObject); err != nil {
		if local {
			// A local git-upload-pack blocks writing what was not read,
			// and closing the session waits for it to exit.
			io.Copy(io.Discard, r)
		}
		var te *ObjectTooLargeError
		if errors.As(err, &te) {
			return err
		}
		return fmt.Errorf("receive pack: %w", err)
	}
	return nil
}

// updateRefs sets the local references to the fetched ones and removes
// the branches and tags the remote no longer has.
func updateRefs(st storer.Storer, refs map[plumbing.ReferenceName]plumbing.Hash) error {
	iter, err := st.IterReferences()
	if err != nil {
		return err
	}
	var stale []plumbing.ReferenceName
	iter.ForEach(func(r *plumbing.Reference) error {
		n := r.Name()
		if (n.IsRemote() || n.IsTag()) && refs[n].IsZero() {
			stale = append(stale, n)
		}
		return nil
	})
	for _, n := range stale {
		if err := st.RemoveReference(n); err != nil {
			return fmt.Errorf("prune %s: %w", n, err)
		}
	}
	for n, h := range refs {
		if err := st.SetReference(plumbing.NewHashReference(n, h)); err != nil {
			return fmt.Errorf("update %s: %w", n, err)
		}
	}
	return nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// capReader fails once more than max bytes were read.
type capReader struct {
	r    io.Reader
	n    int64
	max  int64
	body io.Closer
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, &TooLargeError{Max: c.max}
	}
	return n, err
}

func (c *capReader) Close() error {
	if c.body != nil {
		return c.body.Close()
	}
	return nil
}

// capTransport bounds the bytes of every response body.
type capTransport struct {
	rt  http.RoundTripper
	max int64
}

func (t *capTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &capReader{r: resp.Body, max: t.max, body: resp.Body}
	return resp, nil
}
