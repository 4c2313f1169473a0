package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/poison-nix/poison/provenance"
	"github.com/poison-nix/poison/registry"
)

// builtOnOptions are the flags of 'poison add --built-on HOST': one entry
// naming every derivation HOST built in a window, read from build journals.
type builtOnOptions struct {
	host         string
	since, until string
	journals     stringsFlag

	// filled by load: the builds, by .drv path, with their outputs.
	builds map[string][]string
}

func (b *builtOnOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&b.host, "built-on", "", "poison every derivation host `NAME` (or machine id) built in --since..--until, read from --journal")
	fs.StringVar(&b.since, "since", "", "with --built-on: builds that ended at or after `T` (RFC 3339, a date, or an age: 7d, 36h)")
	fs.StringVar(&b.until, "until", "", "with --built-on: builds that ended before `T` (default: now)")
	fs.Var(&b.journals, "journal", "with --built-on: a build journal `FILE` (repeatable; default: $POISON_JOURNAL, else "+defaultJournal+")")
}

// active reports whether --built-on or one of its flags was given.
func (b *builtOnOptions) active() bool {
	return b.host != "" || b.since != "" || b.until != "" || len(b.journals) > 0
}

// load reads the journals and returns the .drv paths HOST built in the
// window, sorted. Unlike 'poison provenance', an unreadable journal line
// is an error: it may be a build of HOST, and an entry missing it would
// leave that build trusted.
func (b *builtOnOptions) load(ctx context.Context, e *env) ([]string, error) {
	if b.host == "" {
		return nil, usageErrorf("add: --since, --until and --journal go with --built-on HOST")
	}
	if b.since == "" {
		return nil, usageErrorf("add --built-on: --since T is required (RFC 3339, a date, or an age such as 7d)")
	}
	since, until, err := parseWindow(e, b.since, b.until)
	if err != nil {
		return nil, err
	}
	if until.IsZero() {
		until = e.now()
	}
	files, err := journalPaths(e, b.journals)
	if err != nil {
		return nil, err
	}
	b.builds = map[string][]string{}
	onBad := func(le *provenance.LineError) error {
		return withHint(fmt.Errorf("add --built-on: %w", le),
			"a journal line that cannot be read may be a build of this host; repair or remove it ('poison provenance' lists the readable ones)")
	}
	err = readJournals(ctx, e, files, provenance.Filter{Host: b.host, Since: since, Until: until}, onBad, func(en *provenance.Entry) error {
		outs := b.builds[en.Drv]
		for _, o := range en.Outputs {
			if !slices.Contains(outs, o) {
				outs = append(outs, o)
			}
		}
		b.builds[en.Drv] = outs
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(b.builds) == 0 {
		return nil, withHint(fmt.Errorf("add --built-on %s: no builds of this host in %s between %s and %s",
			b.host, strings.Join(files, ", "), since.UTC().Format(time.RFC3339), until.UTC().Format(time.RFC3339)),
			"check the host name and the window with 'poison provenance --host HOST --journal FILE'")
	}
	drvs := make([]string, 0, len(b.builds))
	for d := range b.builds {
		drvs = append(drvs, d)
		sort.Strings(b.builds[d])
	}
	sort.Strings(drvs)
	return drvs, nil
}

// inspect resolves a journalled .drv through local (the store: canonical
// paths, serial attributes removed) and falls back to the outputs the
// journal recorded when the .drv is not in the local store (it was built
// on another machine and never copied here).
func (b *builtOnOptions) inspect(e *env, local registry.InspectFunc) registry.InspectFunc {
	return func(ctx context.Context, p string) (string, []string, error) {
		if local != nil {
			drv, outs, err := local(ctx, p)
			if err == nil || !errors.Is(err, errNotInStore) {
				return drv, outs, err
			}
		}
		outs, ok := b.builds[p]
		if !ok {
			return "", nil, fmt.Errorf("%w (and no journal recorded it)", errNotInStore)
		}
		fmt.Fprintf(e.stderr, "poison: warning: %s is not in the local store: recorded as the journal has it, with %d output(s)\n", p, len(outs))
		return p, outs, nil
	}
}

// addBuiltOn turns --built-on into the entry's paths and default group.
func addBuiltOn(ctx context.Context, e *env, o *addOptions) error {
	if len(o.add.Paths) > 0 {
		return usageErrorf("add --built-on takes no PATH arguments (got %q): the journals name the derivations", o.add.Paths[0])
	}
	if o.add.NoVerify {
		return usageErrorf("add --built-on records the outputs the journals name; --no-verify does not apply")
	}
	if strings.TrimSpace(o.add.Reason) == "" {
		return usageErrorf("add: --reason is required: say what went wrong")
	}
	drvs, err := o.builtOn.load(ctx, e)
	if err != nil {
		return err
	}
	o.add.Paths = drvs
	if o.add.Group == "" {
		o.add.Group = o.builtOn.host
	}
	return nil
}
