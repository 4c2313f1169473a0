package builder

// Member is one derivation of a closure as a lock names it: its .drv path
// and its output paths (those known before it is built).
type Member struct {
	DrvPath string
	Outputs []string
}

// Members lists the derivations of the closure, the roots first, each
// with the paths a lock is matched against, when those are the
// derivations' own paths. Rewrite matches a lock against the paths each
// derivation has without the attribute attr; when none carries it, they
// are its own. ok is false when some derivation carries attr (or has an
// output named attr, which Rewrite refuses): a lock could then change the
// closure without naming any of its paths.
func (c *Closure) Members(attr string) (ms []Member, ok bool) {
	var scratch []byte
	ms = make([]Member, len(c.nodes))
	for i := range c.nodes {
		s, err := c.attrOf(int32(i), attr, &scratch)
		if err != nil || s.present {
			return nil, false
		}
		n := &c.nodes[i]
		m := Member{DrvPath: n.path, Outputs: make([]string, 0, len(n.drv.Outputs))}
		for _, o := range n.drv.Outputs {
			if o.Path != "" {
				m.Outputs = append(m.Outputs, o.Path)
			}
		}
		ms[i] = m
	}
	return ms, true
}
