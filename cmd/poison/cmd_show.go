package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/poison-nix/poison/builder"
	"github.com/poison-nix/poison/builder/daemon"
	"github.com/poison-nix/poison/internal/settings"
	"github.com/poison-nix/poison/registry/lock"
	"github.com/poison-nix/poison/resolver"
)

// maxCauses bounds the poisoned dependencies show details.
const maxCauses = 20

func showCommand() command {
	return command{
		name:    "show",
		summary: "show the serial of a derivation, output or name, the entries behind it, or the poisoned dependencies that change it",
		usage: "[--lock FILE] [--max-age DURATION] [--store URI] [--json] DRV|OUTPUT|RESULT-LINK|NAME\n" +
			"              [--max-entries N] [--max-tree-depth N] [--max-entry-size SIZE] [--max-tree-size SIZE] [--max-registry-bytes SIZE]",
		setup: func(fs *flag.FlagSet) runFunc {
			sf := settings.Register(fs, append([]string{"lock", "max-age"}, settings.LimitSettings...)...)
			asJSON := fs.Bool("json", false, "print one JSON document instead of text")
			store := fs.String("store", "auto", "store `URI` asked for the derivation of an output path (daemon, unix://PATH, auto, ssh-ng://HOST)")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usageErrorf("show takes one DRV, OUTPUT or NAME")
				}
				s, err := loadSettings(e, sf)
				if err != nil {
					return err
				}
				l, err := readLock(e, "show", s)
				if err != nil {
					return err
				}
				return runShow(ctx, e, s, l, *store, args[0], *asJSON)
			}
		},
	}
}

// shown is what show found about its argument.
type shown struct {
	*resolver.Shown
	builtBy string          // the deriver of an output path, when shown through it
	causes  []showCauseJSON // poisoned dependencies that change a derivation
}

func runShow(ctx context.Context, e *env, s settings.Settings, l *lock.File, store, arg string, asJSON bool) error {
	storeDir := l.Store()
	sa, err := parseStoreArg(e, storeDir, arg)
	if err != nil {
		return withHint(fmt.Errorf("show: %w", err), "pass a .drv path, an output path, a result link, a HASH-NAME base name or a derivation name")
	}
	cache := resolver.Cache{Dir: s.CacheDir}
	so := resolver.ShowOptions{Now: e.now(), Limits: registryLimits(s)}
	key := sa.Name
	var sh shown
	if sa.Path != "" {
		key = sa.Path
		base := path.Base(sa.Path)
		onDisk := exists(sa.Path)
		if strings.HasSuffix(base, ".drv") {
			if !onDisk && l.Derivations[base] == 0 {
				return withHint(fmt.Errorf("show: %s is not in the store and the lock does not name it", sa.Path), "check the path (a typo?), or instantiate the derivation first")
			}
		} else if l.Outputs[base] == 0 {
			// An output the lock does not name itself: judge it by the
			// derivation that built it.
			drv, err := deriverOf(ctx, e, store, storeDir, sa.Path)
			switch {
			case err != nil && !onDisk:
				return withHint(fmt.Errorf("show: %s is not in the store and the lock does not name it", sa.Path), "check the path (a typo?)")
			case err != nil:
				return withHint(fmt.Errorf("show: %s: %w", sa.Path, err), "pass its .drv path instead")
			}
			key, sh.builtBy = drv, sa.Path
		}
	}
	res, err := resolver.Show(ctx, cache, l, key, so)
	if res == nil {
		return fmt.Errorf("show: %w", err)
	}
	sh.Shown = res
	entriesErr := err
	if sh.Kind == "derivation" && sh.Serial == 0 {
		drv := key
		if !strings.HasPrefix(drv, "/") {
			drv = storeDir + "/" + drv
		}
		sh.causes, err = poisonedCauses(ctx, cache, so, l, drv, e)
		if err != nil {
			fmt.Fprintf(e.stderr, "poison: warning: show: cannot tell whether a dependency of %s is poisoned: %v\n", drv, err)
		}
	}
	if asJSON {
		if entriesErr != nil {
			return withHint(fmt.Errorf("show: entries: %w", entriesErr), "the lock alone gives the serial; run 'poison resolve' to fetch the registry commit it pins")
		}
		return writeReport(e.stdout, true, showJSON(sh), nil)
	}
	if sh.builtBy != "" {
		fmt.Fprintf(e.stdout, "output %s: built by %s\n", path.Base(sh.builtBy), sh.Key)
	}
	fmt.Fprintf(e.stdout, "%s %s: serial %d\n", sh.Kind, sh.Key, sh.Serial)
	switch {
	case entriesErr != nil && len(sh.causes) == 0:
	case len(sh.Entries) > 0:
		writeShownEntries(e.stdout, sh.Entries, "")
	case len(sh.causes) > 0:
		fmt.Fprintf(e.stdout, "not poisoned itself, but rewritten because it depends on %d poisoned derivation%s:\n", len(sh.causes), plural(len(sh.causes), "", "s"))
		for _, c := range sh.causes {
			fmt.Fprintf(e.stdout, "\npoisoned %s: serial %d (lock %s)\n  drv  %s\n", c.Name, c.Serial, strings.Join(c.Entries, ", "), c.DrvPath)
			writeShownEntries(e.stdout, c.entries, "  ")
		}
	default:
		fmt.Fprintf(e.stdout, "no entry names it\n")
	}
	if entriesErr != nil {
		return withHint(fmt.Errorf("show: entries: %w", entriesErr), "the serials above come from the lock alone")
	}
	return nil
}

func writeShownEntries(w io.Writer, ents []resolver.ShownEntry, indent string) {
	for _, en := range ents {
		commit := en.Commit
		if commit == "" {
			commit = "(unknown)"
		}
		fmt.Fprintf(w, "\n%sentry   %s\n", indent, en.File)
		fmt.Fprintf(w, "%scommit  %s\n", indent, commit)
		fmt.Fprintf(w, "%sdate    %s\n", indent, en.Date.Format("2006-01-02"))
		fmt.Fprintf(w, "%sauthor  %s\n", indent, en.Author)
		fmt.Fprintf(w, "%sreason  %q\n", indent, en.Reason)
		if en.Group != "" {
			fmt.Fprintf(w, "%sgroup   %s\n", indent, en.Group)
		}
		if en.Ticket != "" {
			fmt.Fprintf(w, "%sticket  %s\n", indent, en.Ticket)
		}
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// deriverOf asks the store which derivation built output path p.
func deriverOf(ctx context.Context, e *env, store, storeDir, p string) (string, error) {
	conn, err := daemon.Dial(ctx, store, daemon.Options{StoreDir: storeDir, SocketPath: e.getenv("NIX_DAEMON_SOCKET_PATH"), SSHOpts: strings.Fields(e.getenv("NIX_SSHOPTS"))})
	if err != nil {
		return "", fmt.Errorf("connect to store %s to find its derivation: %w", store, err)
	}
	defer conn.Close()
	info, err := conn.QueryPathInfo(ctx, p)
	if errors.Is(err, daemon.ErrNotValid) {
		return "", errors.New("not valid in the store")
	}
	if err != nil {
		return "", err
	}
	if info.Deriver == "" {
		return "", errors.New("the store records no derivation for it")
	}
	return info.Deriver, nil
}

// poisonedCauses rewrites the closure of drv with the lock and returns
// the poisoned derivations in it (upstream of drv), with their entries.
// It returns nothing when the .drv is not on this machine.
func poisonedCauses(ctx context.Context, cache resolver.Cache, so resolver.ShowOptions, l *lock.File, drv string, e *env) ([]showCauseJSON, error) {
	if !exists(drv) {
		return nil, nil
	}
	c, err := builder.LoadClosure(ctx, builder.LoadOptions{StoreDir: l.Store()}, []string{drv})
	if err != nil {
		return nil, err
	}
	res, err := builder.Rewrite(ctx, c, builder.Options{Lock: l, NoATerm: true})
	if err != nil {
		return nil, err
	}
	var out []showCauseJSON
	for _, p := range res.Poisoned {
		if p.DrvPath == drv {
			continue
		}
		if len(out) == maxCauses {
			fmt.Fprintf(e.stderr, "poison: note: show: %d poisoned dependencies; the first %d are shown\n", len(res.Poisoned), maxCauses)
			break
		}
		cj := showCauseJSON{DrvPath: p.DrvPath, Name: p.Name, Serial: p.Serial, Entries: append([]string{}, p.Entries...), Files: []string{}}
		if sh, err := resolver.Show(ctx, cache, l, p.DrvPath, so); err == nil {
			cj.entries = sh.Entries
			for _, en := range sh.Entries {
				cj.Files = append(cj.Files, en.File)
			}
		}
		out = append(out, cj)
	}
	return out, nil
}

// shownJSON is `poison show --json` (docs/json.md).
type shownJSON struct {
	Kind    string           `json:"kind"` // derivation, output or name
	Key     string           `json:"key"`
	Path    string           `json:"path,omitempty"` // the output path shown through its derivation
	Serial  int              `json:"serial"`
	Entries []shownEntryJSON `json:"entries"`
	Causes  []showCauseJSON  `json:"causes"` // poisoned dependencies that change it
}

type shownEntryJSON struct {
	File   string `json:"file"`
	Commit string `json:"commit"` // "" when unknown
	Date   string `json:"date"`   // YYYY-MM-DD
	Author string `json:"author"`
	Reason string `json:"reason"`
	Group  string `json:"group,omitempty"`
	Ticket string `json:"ticket,omitempty"`
}

// showCauseJSON is one poisoned dependency of a shown derivation.
type showCauseJSON struct {
	DrvPath string   `json:"drvPath"`
	Name    string   `json:"name"`
	Serial  int      `json:"serial"`
	Entries []string `json:"entries"` // lock keys
	Files   []string `json:"files"`   // registry entry files
	entries []resolver.ShownEntry
}

func showJSON(sh shown) shownJSON {
	j := shownJSON{Kind: sh.Kind, Key: sh.Key, Path: sh.builtBy, Serial: sh.Serial, Entries: []shownEntryJSON{}, Causes: []showCauseJSON{}}
	for _, en := range sh.Entries {
		j.Entries = append(j.Entries, shownEntryJSON{File: en.File, Commit: en.Commit, Date: en.Date.Format("2006-01-02"),
			Author: en.Author, Reason: en.Reason, Group: en.Group, Ticket: en.Ticket})
	}
	j.Causes = append(j.Causes, sh.causes...)
	return j
}
