package builder_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/daemontest"
	"github.com/poison-nix/poison/internal/nixtest"
	"github.com/poison-nix/poison/registry/lock"
)

// TestAudit builds the graph a ── b ── c ── top (and a ── d ── top) with
// the real daemon, then audits the runtime closure of top's output under
// locks that poison different nodes: the poisoned node's output is
// "poisoned", what was built against it "dependent" with the cause named,
// the rest clean. A path added without a deriver is undetermined, a path
// the store does not have a failure.
func TestAudit(t *testing.T) {
	d := daemontest.Start(t)
	g := daemontest.Instantiate(t, daemontest.WorldDir(t), daemontest.GraphArgs{})
	ctx := daemontest.Context(t, time.Minute)
	p := daemon.NewPool(d.URI(), offlineOpts(), 2)
	defer p.Close()
	rep, err := builder.Build(ctx, builder.DaemonStore(p), []string{g.Drvs["top"]}, builder.BuildOptions{Jobs: 2})
	if err != nil || rep.Failed() {
		t.Fatalf("build: %+v, %v", rep, err)
	}
	top := rep.Roots[0].Outputs["out"]
	outOf := func(node string) string {
		return strings.TrimSuffix(nixtest.Output(t, "nix-store", "--query", "--outputs", g.Drvs[node]), "\n")
	}
	note := filepath.Join(t.TempDir(), "note.txt")
	os.WriteFile(note, []byte("no deriver "+t.Name()+time.Now().String()), 0o644)
	added := nixtest.Output(t, "nix-store", "--add", note)

	conn, err := daemon.Dial(ctx, d.URI(), offlineOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, c := range []struct {
		name      string
		poison    []string // nodes whose .drv the lock poisons
		poisoned  []string
		dependent map[string][]string // node → causes
	}{
		{name: "nothing poisoned"},
		{name: "b", poison: []string{"b"}, poisoned: []string{"b"}, dependent: map[string][]string{"c": {"b"}, "top": {"b"}}},
		{name: "a and d", poison: []string{"a", "d"}, poisoned: []string{"a", "d"},
			dependent: map[string][]string{"b": {"a"}, "c": {"a"}, "top": {"a", "d"}}},
		{name: "top only", poison: []string{"top"}, poisoned: []string{"top"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			lk := lock.New(lock.Source{}, lock.DefaultEnv)
			for _, n := range c.poison {
				lk.Derivations[filepath.Base(g.Drvs[n])] = 1
			}
			missing := "/nix/store/00000000000000000000000000000000-missing"
			ar, err := builder.Audit(ctx, conn, []string{top, added, missing}, builder.AuditOptions{Lock: lk, StoreDir: "/nix/store"})
			if err != nil {
				t.Fatal(err)
			}
			if ar.Total != 6 {
				t.Errorf("closure of %d paths, want 6 (five outputs and the added file)", ar.Total)
			}
			var poisoned []string
			dependent := map[string][]string{}
			for _, ap := range ar.Paths {
				node := ""
				for n := range g.Drvs {
					if outOf(n) == ap.Path {
						node = n
					}
				}
				if node == "" {
					t.Fatalf("stale path %s is no output of the graph", ap.Path)
				}
				if ap.DrvPath != g.Drvs[node] || ap.NewDrvPath == ap.DrvPath || !ap.Rebuilds || ap.NewPath == ap.Path {
					t.Errorf("%s: %+v", node, ap)
				}
				switch ap.Status {
				case builder.AuditPoisoned:
					poisoned = append(poisoned, node)
					if ap.Serial != 1 || ap.BuiltSerial != 0 || len(ap.Entries) != 1 || ap.Entries[0] != "derivations/"+filepath.Base(g.Drvs[node]) {
						t.Errorf("%s: serial %d, built %d, entries %v", node, ap.Serial, ap.BuiltSerial, ap.Entries)
					}
				case builder.AuditDependent:
					dependent[node] = ap.Causes
				default:
					t.Errorf("%s: status %q", node, ap.Status)
				}
			}
			slices.Sort(poisoned)
			if strings.Join(poisoned, " ") != strings.Join(c.poison, " ") {
				t.Errorf("poisoned %v, want %v", poisoned, c.poisoned)
			}
			if len(dependent) != len(c.dependent) {
				t.Errorf("dependent %v, want %v", dependent, c.dependent)
			}
			for n, causes := range c.dependent {
				if strings.Join(dependent[n], " ") != strings.Join(causes, " ") {
					t.Errorf("%s depends on poisoned %v, want %v", n, dependent[n], causes)
				}
			}
			if len(ar.Undetermined) != 1 || ar.Undetermined[0].Path != added || !strings.Contains(ar.Undetermined[0].Reason, "no deriver") {
				t.Errorf("undetermined %+v, want %s without a deriver", ar.Undetermined, added)
			}
			if len(ar.Failures) != 1 || ar.Failures[0].Path != missing || !strings.Contains(ar.Failures[0].Err.Error(), "not valid") {
				t.Errorf("failures %+v, want %s not valid", ar.Failures, missing)
			}
		})
	}

	// A store that breaks: the audit stops with ErrAuditQuery.
	d.Kill()
	lk := lock.New(lock.Source{}, lock.DefaultEnv)
	if _, err := builder.Audit(ctx, conn, []string{top}, builder.AuditOptions{Lock: lk, StoreDir: "/nix/store"}); !errors.Is(err, builder.ErrAuditQuery) {
		t.Errorf("audit against a dead daemon: %v, want ErrAuditQuery", err)
	}
}
