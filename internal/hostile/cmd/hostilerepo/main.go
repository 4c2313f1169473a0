// Command hostilerepo writes a crafted registry repository for testing
// poison against hostile input (see package hostile):
//
//	go run ./internal/hostile/cmd/hostilerepo KIND[=SIZE] DIR
//
// DIR becomes a bare git repository whose main branch holds the crafted
// tree; the command prints DIR. Run it without arguments for the kinds.
package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/poison-nix/poison/internal/hostile"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: hostilerepo KIND[=SIZE] DIR\nkinds:")
		var ks []string
		for k := range hostile.Kinds {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			fmt.Fprintf(os.Stderr, "  %-11s %s\n", k, hostile.Kinds[k])
		}
		os.Exit(2)
	}
	kind, sz, _ := strings.Cut(os.Args[1], "=")
	var size int64
	if sz != "" {
		n, err := strconv.ParseInt(sz, 10, 64)
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "hostilerepo: SIZE %q is not a positive integer\n", sz)
			os.Exit(2)
		}
		size = n
	}
	if err := hostile.Build(os.Args[2], kind, size); err != nil {
		fmt.Fprintf(os.Stderr, "hostilerepo: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(os.Args[2])
}
