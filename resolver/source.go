package resolver

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// Kind says how a registry source is read.
type Kind int

const (
	// Remote is a URL (file://, git://, http(s)://, ssh:// or scp-like
	// user@host:path) fetched into the cache.
	Remote Kind = iota + 1
	// LocalRepo is a git repository on this machine (a work tree or a bare
	// repository), read in place at the requested ref.
	LocalRepo
	// LocalDir is a plain directory that is not a git repository, read as
	// it is on disk; the lock records no commit.
	LocalDir
)

// Source is a parsed registry location.
type Source struct {
	Kind Kind
	// URL is what the lock records and every message shows: the remote
	// URL as given less its credentials (RedactURL), or the absolute path
	// of a local directory.
	URL string
	// remote is the URL as given, credentials included: the one to fetch.
	remote string
}

// fetchURL is the URL to fetch from: the one given, with its credentials.
func (s Source) fetchURL() string {
	if s.remote != "" {
		return s.remote
	}
	return s.URL
}

var scpLike = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/]?`) })

// ParseSource interprets a --registry value: a URL, or a directory
// (relative to base).
func ParseSource(spec, base string) (Source, error) {
	if spec == "" {
		return Source{}, errors.New("no registry configured")
	}
	// Messages show the spec without its credentials.
	shown := RedactURL(spec)
	if strings.ContainsAny(spec, "\n\x00") {
		return Source{}, fmt.Errorf("registry %q: contains a control character", shown)
	}
	if i := strings.Index(spec, "://"); i > 0 {
		u, err := url.Parse(spec)
		if err != nil {
			return Source{}, fmt.Errorf("registry URL %q: %w", shown, redactErr(err, spec))
		}
		switch u.Scheme {
		case "file":
			if u.Host != "" && u.Host != "localhost" {
				return Source{}, fmt.Errorf("registry URL %q: file URLs cannot name a host", shown)
			}
			if u.Path == "" {
				return Source{}, fmt.Errorf("registry URL %q: no path", shown)
			}
		case "git", "http", "https", "ssh":
			if u.Host == "" {
				return Source{}, fmt.Errorf("registry URL %q: no host", shown)
			}
		default:
			return Source{}, fmt.Errorf("registry URL %q: unsupported scheme %q (use file, git, http, https or ssh)", shown, u.Scheme)
		}
		return Source{Kind: Remote, URL: shown, remote: spec}, nil
	}
	if scpLike().MatchString(spec) {
		return Source{Kind: Remote, URL: shown, remote: spec}, nil
	}
	dir := spec
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(base, dir)
	}
	dir = filepath.Clean(dir)
	// A spec with credentials (user:password@host:path) is no directory
	// anyone means: name it without them.
	shownDir := dir
	if shown != spec {
		shownDir = shown
	}
	st, err := os.Stat(dir)
	if err != nil {
		return Source{}, fmt.Errorf("registry directory %s: %w", shownDir, unwrapPathError(err))
	}
	if !st.IsDir() {
		return Source{}, fmt.Errorf("registry directory %s: not a directory", shownDir)
	}
	if isGitDir(dir) || isGitDir(filepath.Join(dir, ".git")) {
		return Source{Kind: LocalRepo, URL: dir}, nil
	}
	return Source{Kind: LocalDir, URL: dir}, nil
}

// isGitDir reports whether dir looks like a git directory (bare repository
// or .git).
func isGitDir(dir string) bool {
	for _, p := range []string{"HEAD", "objects", "refs"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			return false
		}
	}
	return true
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
