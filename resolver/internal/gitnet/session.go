package gitnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// pipeSession speaks the git pack protocol (version 0/1, as git daemon
// and git-upload-pack over SSH speak by default) over a pair of streams:
// a git:// TCP connection, or an SSH session running git-upload-pack. It
// implements transport.UploadPackSession.
type pipeSession struct {
	r       io.Reader
	w       io.WriteCloser
	stderr  *tailBuffer // what the server wrote on stderr (SSH), if any
	closeFn func() error

	advRefs  *packp.AdvRefs
	packRun  bool
	closeOne sync.Once
	closeErr error
}

var _ transport.UploadPackSession = (*pipeSession)(nil)

func (s *pipeSession) AdvertisedReferences() (*packp.AdvRefs, error) {
	return s.AdvertisedReferencesContext(context.Background())
}

// AdvertisedReferencesContext reads the server's reference advertisement.
func (s *pipeSession) AdvertisedReferencesContext(ctx context.Context) (*packp.AdvRefs, error) {
	if s.advRefs != nil {
		return s.advRefs, nil
	}
	ar := packp.NewAdvRefs()
	if err := ar.Decode(s.r); err != nil {
		return nil, s.advError(err)
	}
	if ar.IsEmpty() {
		return nil, transport.ErrEmptyRemoteRepository
	}
	transport.FilterUnsupportedCapabilities(ar.Capabilities)
	s.advRefs = ar
	return ar, nil
}

// advError explains a failure to read the advertisement: the server's
// own words when it sent an error line or wrote to stderr.
func (s *pipeSession) advError(err error) error {
	var el *pktline.ErrorLine
	if errors.As(err, &el) {
		return serverError(el.Text)
	}
	var ud *packp.ErrUnexpectedData
	if errors.As(err, &ud) {
		return serverError(string(ud.Data))
	}
	if errors.Is(err, packp.ErrEmptyAdvRefs) {
		return transport.ErrEmptyRemoteRepository
	}
	if errors.Is(err, packp.ErrEmptyInput) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		// The server hung up without a word on the protocol stream: git
		// daemon does so for an unknown repository, sshd after
		// git-upload-pack failed (its reason is on stderr).
		if s.stderr != nil {
			if msg := s.stderr.waitString(); msg != "" {
				return serverError(msg)
			}
		}
		return fmt.Errorf("the server closed the connection without listing any reference (no such repository, or access denied): %w", transport.ErrRepositoryNotFound)
	}
	return err
}

// serverError turns a server's message into an error, recognising the
// wordings of "no such repository".
func serverError(msg string) error {
	msg = strings.TrimSpace(msg)
	for _, s := range []string{"Repository not found", "repository does not exist", "does not appear to be a git repository",
		"no such repository", "access denied", "could not be found", "not a git repository"} {
		if strings.Contains(strings.ToLower(msg), strings.ToLower(s)) {
			return fmt.Errorf("server says %q: %w", msg, transport.ErrRepositoryNotFound)
		}
	}
	return fmt.Errorf("server says %q", msg)
}

// UploadPack sends the wants and haves and returns the server's response,
// from which the pack is read.
func (s *pipeSession) UploadPack(ctx context.Context, req *packp.UploadPackRequest) (*packp.UploadPackResponse, error) {
	if req.IsEmpty() {
		return nil, transport.ErrEmptyUploadPackRequest
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if _, err := s.AdvertisedReferencesContext(ctx); err != nil {
		return nil, err
	}
	s.packRun = true
	if err := req.UploadRequest.Encode(s.w); err != nil {
		return nil, fmt.Errorf("send wants: %w", err)
	}
	if err := req.UploadHaves.Encode(s.w, true); err != nil {
		return nil, fmt.Errorf("send haves: %w", err)
	}
	if err := pktline.NewEncoder(s.w).Encodef("done\n"); err != nil {
		return nil, fmt.Errorf("send done: %w", err)
	}
	res := packp.NewUploadPackResponse(req)
	if err := res.Decode(io.NopCloser(s.r)); err != nil {
		if s.stderr != nil {
			if msg := s.stderr.waitString(); msg != "" {
				return nil, serverError(msg)
			}
		}
		return nil, fmt.Errorf("read the server's response: %w", err)
	}
	return res, nil
}

// Close ends the session: a flush packet tells a server that was only
// asked for its references that we are done.
func (s *pipeSession) Close() error {
	s.closeOne.Do(func() {
		if !s.packRun && s.advRefs != nil {
			s.w.Write(pktline.FlushPkt)
		}
		s.w.Close()
		s.closeErr = s.closeFn()
	})
	return s.closeErr
}

// tailBuffer keeps the first bytes a server writes to stderr (bounded:
// a hostile server may write without end) and says when the stream ended.
type tailBuffer struct {
	mu   sync.Mutex
	buf  []byte
	done chan struct{}
}

const maxStderr = 4096

func newTailBuffer(r io.Reader) *tailBuffer {
	t := &tailBuffer{done: make(chan struct{})}
	go func() {
		defer close(t.done)
		br := bufio.NewReader(r)
		chunk := make([]byte, 1024)
		for {
			n, err := br.Read(chunk)
			t.mu.Lock()
			if room := maxStderr - len(t.buf); room > 0 {
				t.buf = append(t.buf, chunk[:min(n, room)]...)
			}
			t.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return t
}

// waitString waits for the end of the stream (the server's exit closes it)
// and returns what was written, on one line.
func (t *tailBuffer) waitString() string {
	select {
	case <-t.done:
	case <-time.After(5 * time.Second):
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var lines []string
	for _, l := range strings.Split(string(t.buf), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}
