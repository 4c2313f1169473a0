package builder

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/poison-nix/poison/registry/lock"
)

// CarriedSerials returns the serials the members of the closure were
// written with: the value of their attribute attr (lock.DefaultEnv when
// empty), in env or, for structured-attrs derivations, in __json, by
// .drv path. Members without the attribute are left out (serial 0). It
// fails, naming the derivation, when a value is not a decimal serial.
//
// Rewrite sets the attribute to the lock's serial, so a derivation whose
// carried serial equals its Poison.Serial was already written poisoned;
// if its rewritten path still differs, it changed through its inputs.
func (c *Closure) CarriedSerials(attr string) (map[string]int, error) {
	if attr == "" {
		attr = lock.DefaultEnv
	}
	out := map[string]int{}
	var scratch []byte
	for i := range c.nodes {
		n := &c.nodes[i]
		s, err := c.attrOf(int32(i), attr, &scratch)
		if err != nil {
			return nil, err
		}
		if !s.present {
			continue
		}
		v := s.value
		if n.structured && strings.HasPrefix(v, `"`) {
			// A JSON string as Nix writes it ("1"); a number stays as is.
			var str string
			if err := json.Unmarshal([]byte(v), &str); err != nil {
				return nil, fmt.Errorf("derivation %s: attribute %s: %v", n.path, attr, err)
			}
			v = str
		}
		serial, err := strconv.Atoi(v)
		if err != nil || serial < 0 {
			return nil, fmt.Errorf("derivation %s: attribute %s is %q, not a serial", n.path, attr, v)
		}
		out[n.path] = serial
	}
	return out, nil
}
