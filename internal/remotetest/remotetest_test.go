package remotetest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/internal/remotetest"
)

// TestHost: a host serves its own store over ssh-ng (poison's client) and
// ssh (nix-copy-closure), builds in its sandbox where /marker names it,
// and Drop cuts the sessions.
func TestHost(t *testing.T) {
	h := remotetest.Start(t, "h1", remotetest.Options{SystemFeatures: []string{"kvm", "big"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := daemon.Dial(ctx, h.URI("ssh-ng"), daemon.Options{SSHOpts: h.SSH.SSHOpts()})
	if err != nil {
		t.Fatalf("dial %s: %v\nsshd: %s", h.URI("ssh-ng"), err, h.SSH.Log())
	}
	defer c.Close()

	// A derivation whose builder reads the marker.
	dir := t.TempDir()
	file := filepath.Join(dir, "m.nix")
	nonce := fmt.Sprint(time.Now().UnixNano())
	if err := os.WriteFile(file, []byte(`derivation { name = "marker"; system = builtins.currentSystem; nonce = "`+nonce+`";
  builder = "/bin/sh"; args = [ "-c" "read m < /marker; echo \"$m\" > $out" ]; }`), 0o644); err != nil {
		t.Fatal(err)
	}
	drv := nixtest.Output(t, "nix-instantiate", file)
	content, err := os.ReadFile(drv)
	if err != nil {
		t.Fatal(err)
	}
	if h.Valid(t, drv) {
		t.Fatalf("%s valid on a fresh host", drv)
	}
	p, err := c.AddText(ctx, daemon.Text{Name: strings.SplitN(filepath.Base(drv), "-", 2)[1], Content: content})
	if err != nil || p != drv {
		t.Fatalf("AddText = %q, %v; want %s", p, err, drv)
	}
	if !h.Valid(t, drv) {
		t.Fatalf("%s not valid on the host after AddText", drv)
	}
	res, err := c.BuildPathsWithResults(ctx, []string{drv + "!out"}, daemon.BuildNormal)
	if err != nil || len(res) != 1 || res[0].Status != daemon.Built {
		t.Fatalf("build on the host: %+v, %v", res, err)
	}
	out := res[0].BuiltOutputs["out"]
	if got := h.Read(t, out); got != h.Marker+"\n" {
		t.Errorf("output %s holds %q, want the marker %q", out, got, h.Marker)
	}
	if ok, _ := c.IsValidPath(ctx, out); !ok {
		t.Errorf("output not valid through ssh-ng")
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("output %s appeared in this machine's store", out)
	}
	if feats := h.Nix(t, "nix", "--extra-experimental-features", "nix-command", "show-config"); !strings.Contains(feats, "system-features = big kvm") &&
		!strings.Contains(feats, "system-features = kvm big") {
		t.Errorf("host system-features not set: %s", grep(feats, "system-features"))
	}

	// ssh:// (nix-store --serve --write) reaches the same store.
	src := nixtest.Output(t, "nix-store", "--add", file)
	cmd := nixtest.Command("nix-copy-closure", "--to", h.SSH.User+"@"+h.SSH.Host, src)
	cmd.Env = append(cmd.Env, "NIX_SSHOPTS="+h.NixSSHOpts())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nix-copy-closure: %v: %s", err, out)
	}
	if !h.Valid(t, src) {
		t.Errorf("%s not valid on the host after nix-copy-closure", src)
	}
	cmds := h.Commands(t)
	if !slices.ContainsFunc(cmds, func(s string) bool { return strings.Contains(s, "nix-daemon") }) ||
		!slices.ContainsFunc(cmds, func(s string) bool { return strings.Contains(s, "nix-store --serve --write") }) {
		t.Errorf("host commands %q, want nix-daemon and nix-store --serve --write", cmds)
	}

	// Drop breaks the open session.
	h.Drop()
	if _, err := c.IsValidPath(ctx, drv); err == nil {
		t.Errorf("IsValidPath after Drop succeeded")
	}
}

func grep(s, w string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, w) {
			return l
		}
	}
	return ""
}
