package graphgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Paths are the store paths Nix computed for one node.
type Paths struct {
	Drv  string            `json:"drv"`
	Outs map[string]string `json:"outs"` // output name → output path
}

// EvalExpr returns the Nix expression that maps every node of the graph in
// file to its Paths, with poison (a Nix attrset literal) applied.
func EvalExpr(file, poison string) string {
	if poison == "" {
		poison = "{ }"
	}
	return `builtins.mapAttrs (n: d: { drv = d.drvPath; outs = builtins.listToAttrs (map (o: { name = o; value = d.${o}.outPath; }) (d.outputs or [ "out" ])); }) (import ` +
		strconv.Quote(file) + ` { poison = ` + poison + `; })`
}

// Eval evaluates the graph expression in file with poison (a Nix attrset
// literal, "" for none) and returns every node's paths, keyed by attribute.
// With write, Nix also writes every .drv file to the store
// (--read-write-mode); otherwise the store is not touched. env is appended
// to the process environment (NIX_CONFIG).
func Eval(ctx context.Context, env []string, file, poison string, write bool) (map[string]Paths, error) {
	args := []string{"--eval", "--strict", "--json"}
	if write {
		args = append(args, "--read-write-mode")
	} else {
		args = append(args, "--readonly-mode")
	}
	args = append(args, "-E", EvalExpr(file, poison))
	cmd := exec.CommandContext(ctx, "nix-instantiate", args...)
	cmd.Env = append(cmd.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nix-instantiate %s with poison %s: %v: %s", file, poison, err, lastLines(stderr.String(), 12))
	}
	var m map[string]Paths
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, fmt.Errorf("nix-instantiate %s: decode output: %w", file, err)
	}
	return m, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
