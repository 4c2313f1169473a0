// Command genregistry writes a synthetic poison registry for benchmarks:
//
//	go run ./registry/internal/gen/genregistry [-seed N] [-history] DIR COUNT
//
// With -history, DIR becomes a git repository with one commit per entry.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/poison-nix/poison/registry/internal/gen"
)

func main() {
	seed := flag.Uint64("seed", 1, "random seed")
	history := flag.Bool("history", false, "commit each entry separately into a git repository")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: genregistry [-seed N] [-history] DIR COUNT")
		os.Exit(2)
	}
	n, err := strconv.Atoi(flag.Arg(1))
	if err != nil || n < 0 {
		fmt.Fprintf(os.Stderr, "genregistry: COUNT %q is not a non-negative integer\n", flag.Arg(1))
		os.Exit(2)
	}
	if *history {
		err = gen.WriteHistory(context.Background(), flag.Arg(0), *seed, n)
	} else {
		err = gen.Write(flag.Arg(0), *seed, n)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "genregistry: %v\n", err)
		os.Exit(1)
	}
}
