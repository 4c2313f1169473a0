package gitnet

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// sshConfig is the part of an OpenSSH client configuration file
// (~/.ssh/config) that reaching a git server needs. Like ssh, the first
// value obtained for a keyword wins, except IdentityFile and the known
// hosts files, which accumulate.
//
// Match blocks cannot be evaluated without running commands or knowing
// ssh's canonicalisation, so their contents are skipped (a Match block
// cannot make the connection less checked: the defaults stay strict).
type sshConfig struct {
	blocks []sshBlock
}

type sshBlock struct {
	patterns []string // Host patterns; nil for the implicit block before the first Host
	match    bool     // a Match block: never applies
	opts     [][2]string
}

// maxSSHConfig bounds the size of one configuration file.
const maxSSHConfig = 1 << 20

// readSSHConfig reads path and the files it includes. A missing file is
// an empty configuration.
func readSSHConfig(path, home string) (*sshConfig, error) {
	c := &sshConfig{}
	if err := c.read(path, home, 0); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *sshConfig) read(path, home string, depth int) error {
	if depth > 16 {
		return fmt.Errorf("%s: Include nested too deeply", path)
	}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSSHConfig+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxSSHConfig {
		return fmt.Errorf("%s: larger than %d bytes", path, maxSSHConfig)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxSSHConfig)
	if len(c.blocks) == 0 {
		c.blocks = append(c.blocks, sshBlock{})
	}
	line := 0
	for sc.Scan() {
		line++
		key, args, ok := splitSSHLine(sc.Text())
		if !ok {
			continue
		}
		switch strings.ToLower(key) {
		case "host":
			c.blocks = append(c.blocks, sshBlock{patterns: args})
		case "match":
			c.blocks = append(c.blocks, sshBlock{match: true})
		case "include":
			for _, a := range args {
				p := expandTilde(a, home)
				if !filepath.IsAbs(p) {
					p = filepath.Join(home, ".ssh", p)
				}
				matches, _ := filepath.Glob(p)
				for _, m := range matches {
					// An included file continues in the current block.
					cur := len(c.blocks) - 1
					sub := &sshConfig{blocks: []sshBlock{{patterns: c.blocks[cur].patterns, match: c.blocks[cur].match}}}
					if err := sub.read(m, home, depth+1); err != nil {
						return err
					}
					c.blocks = append(c.blocks, sub.blocks...)
				}
			}
		default:
			if len(args) == 0 {
				return fmt.Errorf("%s:%d: %s has no value", path, line, key)
			}
			b := &c.blocks[len(c.blocks)-1]
			b.opts = append(b.opts, [2]string{strings.ToLower(key), strings.Join(args, " ")})
		}
	}
	return sc.Err()
}

// splitSSHLine splits "Key value", "Key=value" and quoted arguments.
func splitSSHLine(s string) (string, []string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s[0] == '#' {
		return "", nil, false
	}
	i := strings.IndexAny(s, " \t=")
	if i < 0 {
		return s, nil, true
	}
	key, rest := s[:i], strings.TrimLeft(s[i:], " \t")
	rest = strings.TrimLeft(strings.TrimPrefix(rest, "="), " \t")
	var args []string
	for rest != "" {
		if rest[0] == '"' {
			j := strings.IndexByte(rest[1:], '"')
			if j < 0 {
				args = append(args, rest[1:])
				break
			}
			args = append(args, rest[1:1+j])
			rest = strings.TrimLeft(rest[2+j:], " \t")
			continue
		}
		j := strings.IndexAny(rest, " \t")
		if j < 0 {
			args = append(args, rest)
			break
		}
		args = append(args, rest[:j])
		rest = strings.TrimLeft(rest[j:], " \t")
	}
	return key, args, true
}

// applies reports whether block b applies to host (the name as given).
func (b *sshBlock) applies(host string) bool {
	if b.match {
		return false
	}
	if b.patterns == nil {
		return true
	}
	ok := false
	for _, p := range b.patterns {
		neg := strings.HasPrefix(p, "!")
		for _, alt := range strings.Split(strings.TrimPrefix(p, "!"), ",") {
			if m, _ := filepath.Match(alt, host); m {
				if neg {
					return false
				}
				ok = true
			}
		}
	}
	return ok
}

// get returns the first value of key for host, or "".
func (c *sshConfig) get(host, key string) string {
	for i := range c.blocks {
		b := &c.blocks[i]
		if !b.applies(host) {
			continue
		}
		for _, o := range b.opts {
			if o[0] == key {
				return o[1]
			}
		}
	}
	return ""
}

// getAll returns every value of key for host, in order.
func (c *sshConfig) getAll(host, key string) []string {
	var out []string
	for i := range c.blocks {
		b := &c.blocks[i]
		if !b.applies(host) {
			continue
		}
		for _, o := range b.opts {
			if o[0] == key {
				out = append(out, o[1])
			}
		}
	}
	return out
}

// expandTilde replaces a leading ~/ by home.
func expandTilde(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(home, p[2:])
	}
	return p
}

// expandTokens expands the % tokens ssh expands in IdentityFile and
// known hosts file names: %d home, %h remote host, %p port, %r remote user,
// %u local user, %%.
func expandTokens(p string, t map[byte]string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+1 < len(p) {
			if v, ok := t[p[i+1]]; ok {
				b.WriteString(v)
				i++
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}
