// Command graphgen writes a generated derivation graph (package graphgen)
// and measures the benchmark floor of scripts/bench-rewrite.sh.
//
//	graphgen gen [-seed N] [-nodes N] [-bench] [-depth N] [-inputs MIN-MAX] [-pad MIN-MAX] [-kinds K=W,...] [-attr NAME] [-notwins] [-list] > graph.nix
//	graphgen deep [-seed N] [-nodes N] [-bench] [-count K]   # node(s) deep in the graph to poison
//	graphgen floor < drv-paths     # read every file, sha256 its bytes twice
package main

import (
	"bufio"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/poison-nix/poison/builder/internal/graphgen"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: graphgen gen|floor [flags]")
		return 2
	}
	switch args[0] {
	case "gen":
		return gen(args[1:], stdout, stderr, false)
	case "deep":
		return gen(args[1:], stdout, stderr, true)
	case "floor":
		return floor(args[1:], stdin, stdout, stderr)
	}
	fmt.Fprintf(stderr, "graphgen: unknown command %q (want gen, deep or floor)\n", args[0])
	return 2
}

func gen(args []string, stdout, stderr io.Writer, deep bool) int {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", 1, "random seed")
	nodes := fs.Int("nodes", 300, "number of derivations")
	bench := fs.Bool("bench", false, "benchmark shape (2-10 KB, 3-15 inputs, depth 40, no drvPath references)")
	list := fs.Bool("list", false, "print node attribute, layer, kind and name instead of the expression")
	attr := fs.String("attr", "", "poison attribute (default POISON_SERIAL)")
	noTwins := fs.Bool("notwins", false, "no twin pairs (derivations sharing output paths)")
	count := fs.Int("count", 1, "deep: print this many nodes, most dependents first")
	depth := fs.Int("depth", 0, "number of layers (default: the shape's)")
	inputs := fs.String("inputs", "", "MIN-MAX references of a node (fan-in; default: the shape's)")
	pad := fs.String("pad", "", "MIN-MAX bytes of padding of a node (default: the shape's)")
	kinds := fs.String("kinds", "", "weights of the kinds, e.g. plain=35,multi=20,structured=17,structured-multi=10,fixed-flat=9,fixed-recursive=9 (unnamed kinds weigh 0)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	p := graphgen.Default(*seed, *nodes)
	if *bench {
		p = graphgen.Bench(*seed, *nodes)
	}
	if *depth > 0 {
		p.Depth = *depth
	}
	if err := parseRange(*inputs, &p.MinInputs, &p.MaxInputs); err != nil {
		fmt.Fprintln(stderr, "graphgen: -inputs:", err)
		return 2
	}
	if err := parseRange(*pad, &p.PadMin, &p.PadMax); err != nil {
		fmt.Fprintln(stderr, "graphgen: -pad:", err)
		return 2
	}
	if *kinds != "" {
		p.Kinds = [len(p.Kinds)]int{}
		for _, kv := range strings.Split(*kinds, ",") {
			name, w, ok := strings.Cut(kv, "=")
			k, err := graphgen.ParseKind(strings.TrimSpace(name))
			n, nerr := strconv.Atoi(w)
			if !ok || err != nil || nerr != nil {
				fmt.Fprintf(stderr, "graphgen: -kinds: %q is not KIND=WEIGHT (%v)\n", kv, err)
				return 2
			}
			p.Kinds[k] = n
		}
	}
	if *attr != "" {
		p.Attr = *attr
	}
	p.NoTwins = p.NoTwins || *noTwins
	g, err := graphgen.Generate(p)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if deep && *count > 1 {
		for _, v := range g.Victims(*count) {
			fmt.Fprintf(stdout, "%s %d\n", g.Nodes[v.Node].Attr, v.Downstream)
		}
		return 0
	}
	if deep {
		best, bestN := g.Deep()
		if best < 0 {
			fmt.Fprintln(stderr, "graphgen deep: no input-addressed node deep in the graph")
			return 1
		}
		fmt.Fprintf(stdout, "%s %d\n", g.Nodes[best].Attr, bestN)
		return 0
	}
	if *list {
		for _, n := range g.Nodes {
			fmt.Fprintf(stdout, "%s\t%d\t%s\t%s\t%d refs\n", n.Attr, n.Layer, n.Kind, n.Name, len(n.Refs))
		}
		return 0
	}
	if _, err := stdout.Write(g.Expr()); err != nil {
		fmt.Fprintln(stderr, "graphgen:", err)
		return 1
	}
	return 0
}

// floor reads the paths on stdin (one per line, a "!output" suffix is
// dropped), then times reading every file and hashing its bytes twice with
// SHA-256: sequentially, and with GOMAXPROCS workers. Files are read once
// before timing so both runs see a warm page cache, as poison does.
func floor(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rounds := fs.Int("rounds", 3, "take the best of this many rounds")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var paths []string
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		p, _, _ := strings.Cut(strings.TrimSpace(sc.Text()), "!")
		if p != "" {
			paths = append(paths, p)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(stderr, "graphgen floor: read paths:", err)
		return 1
	}
	var total int64
	for _, p := range paths { // warm the cache, count bytes
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintln(stderr, "graphgen floor:", err)
			return 1
		}
		total += int64(len(b))
	}
	work := func(p string) error {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		h2 := sha256.Sum256(b)
		_, _ = h, h2
		return nil
	}
	// best returns the best wall time of the rounds and the CPU time (user
	// + system, all threads) of that round.
	best := func(f func() error) (wall, cpu time.Duration, err error) {
		for r := 0; r < *rounds; r++ {
			t, c := time.Now(), cpuTime()
			if err := f(); err != nil {
				return 0, 0, err
			}
			if e := time.Since(t); r == 0 || e < wall {
				wall, cpu = e, cpuTime()-c
			}
		}
		return wall, cpu, nil
	}
	seq, seqCPU, err := best(func() error {
		for _, p := range paths {
			if err := work(p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		fmt.Fprintln(stderr, "graphgen floor:", err)
		return 1
	}
	workers := runtime.GOMAXPROCS(0)
	par, parCPU, err := best(func() error {
		ch := make(chan string)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var first error
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := range ch {
					if err := work(p); err != nil {
						mu.Lock()
						if first == nil {
							first = err
						}
						mu.Unlock()
					}
				}
			}()
		}
		for _, p := range paths {
			ch <- p
		}
		close(ch)
		wg.Wait()
		return first
	})
	if err != nil {
		fmt.Fprintln(stderr, "graphgen floor:", err)
		return 1
	}
	fmt.Fprintf(stdout, "files %d bytes %d floor_seq_s %.3f floor_par_s %.3f workers %d seq_cpu_s %.3f par_cpu_s %.3f\n",
		len(paths), total, seq.Seconds(), par.Seconds(), workers, seqCPU.Seconds(), parCPU.Seconds())
	return 0
}

// cpuTime is the user + system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parseRange parses "MIN-MAX" into lo and hi; "" leaves them.
func parseRange(s string, lo, hi *int) error {
	if s == "" {
		return nil
	}
	a, b, ok := strings.Cut(s, "-")
	x, err1 := strconv.Atoi(a)
	y, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("%q is not MIN-MAX", s)
	}
	*lo, *hi = x, y
	return nil
}
