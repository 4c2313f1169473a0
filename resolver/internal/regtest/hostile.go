package regtest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Mode is how a Hostile server answers.
type Mode int32

const (
	// Good serves the repositories faithfully (git http-backend).
	Good Mode = iota
	// Stall sends the response headers of every request and then
	// nothing, keeping the connection open.
	Stall
	// CutPack serves the reference listing, then closes the connection
	// in the middle of the pack.
	CutPack
)

// Hostile is a smart-HTTP git server on 127.0.0.1 that misbehaves on
// demand: it serves the repositories under a root faithfully (Good),
// stalls after the headers (Stall) or hangs up in the middle of a pack
// (CutPack). It needs no testing.TB, so scripts can run it too.
type Hostile struct {
	URL     string // http://127.0.0.1:PORT
	mode    atomic.Int32
	srv     *http.Server
	l       net.Listener
	stopped chan struct{}
	stop    sync.Once
}

// SetMode changes how the server answers from the next request on.
func (h *Hostile) SetMode(m Mode) { h.mode.Store(int32(m)) }

// Repo is the URL of repository name.
func (h *Hostile) Repo(name string) string { return h.URL + "/" + name }

// cutAfter is how many bytes of a pack response CutPack sends.
const cutAfter = 300

// StartHostile serves root (repositories served as in StartHTTP).
func StartHostile(root string) (*Hostile, error) {
	execPath, err := GitE("", "--exec-path")
	if err != nil {
		return nil, fmt.Errorf("git --exec-path: %v", err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(execPath, "git-http-backend"),
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1"},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &Hostile{URL: "http://" + l.Addr().String(), l: l, stopped: make(chan struct{})}
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch Mode(h.mode.Load()) {
		case Stall:
			w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-h.stopped:
			}
		case CutPack:
			if r.Method == http.MethodPost {
				backend.ServeHTTP(&cutWriter{ResponseWriter: w, left: cutAfter}, r)
				return
			}
			backend.ServeHTTP(w, r)
		default:
			backend.ServeHTTP(w, r)
		}
	})}
	go h.srv.Serve(l)
	return h, nil
}

// Close stops the server and ends the stalled requests.
func (h *Hostile) Close() {
	h.stop.Do(func() {
		close(h.stopped)
		h.srv.Close()
	})
}

// cutWriter passes the first left bytes of a response and then aborts
// the connection (net/http closes it without ending the response).
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) >= c.left {
		c.ResponseWriter.Write(p[:c.left])
		c.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	c.left -= len(p)
	return c.ResponseWriter.Write(p)
}

// Silent is a TCP listener on 127.0.0.1 that accepts connections and
// never sends a byte: a git:// or ssh:// server that does not answer.
type Silent struct {
	Addr  string // 127.0.0.1:PORT
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

// StartSilent starts a Silent listener.
func StartSilent() (*Silent, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Silent{Addr: l.Addr().String(), l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	return s, nil
}

// Close closes the listener and every connection.
func (s *Silent) Close() {
	s.l.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// Unreachable is a TCP port on 127.0.0.1 whose connection attempts
// neither succeed nor fail: a listening socket whose accept queue is
// full, so the kernel drops further SYNs as a firewalled host does.
type Unreachable struct {
	Addr  string
	fd    int
	conns []net.Conn
}

// StartUnreachable makes an Unreachable port.
func StartUnreachable() (*Unreachable, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	if err := syscall.Listen(fd, 0); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	u := &Unreachable{Addr: fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port), fd: fd}
	// Fill the accept queue until a connection attempt hangs.
	for i := 0; i < 64; i++ {
		c, err := net.DialTimeout("tcp", u.Addr, 300*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return u, nil
			}
			u.Close()
			return nil, err
		}
		u.conns = append(u.conns, c)
	}
	u.Close()
	return nil, errors.New("the accept queue never filled")
}

// Close releases the port.
func (u *Unreachable) Close() {
	for _, c := range u.conns {
		c.Close()
	}
	syscall.Close(u.fd)
}

// MakeBig writes a registry of n generated entries into a new bare
// repository dir (for long fetches).
func MakeBig(dir string, n int) error {
	work := dir + ".work"
	if err := WriteMany(work, n); err != nil {
		return err
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "big"}} {
		if out, err := GitE(work, args...); err != nil {
			return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := GitE("", "clone", "-q", "--bare", work, dir); err != nil {
		return fmt.Errorf("git clone: %v: %s", err, out)
	}
	return os.RemoveAll(work)
}
