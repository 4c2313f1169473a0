// Command hostileserve runs the misbehaving servers of the resolver's
// hostile-server tests on 127.0.0.1 for scripts/hostile.sh: it serves the
// repositories under ROOT faithfully (git http-backend), stalling after
// the headers, and hanging up mid-pack, plus a TCP listener that never
// answers and a port whose connection attempts hang. It prints one
// NAME=VALUE line per server and runs until its standard input closes.
// SWITCH_HTTP serves faithfully until a line "stall", "cut" or "good" on
// standard input switches it (the same URL, first fetched, then hostile);
// each switch is acknowledged with a line "OK".
//
//	hostileserve ROOT
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/poison-nix/poison/resolver/internal/regtest"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: hostileserve ROOT")
		os.Exit(2)
	}
	root := os.Args[1]
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "hostileserve:", err)
		os.Exit(1)
	}
	servers := map[string]regtest.Mode{"GOOD_HTTP": regtest.Good, "STALL_HTTP": regtest.Stall, "CUT_HTTP": regtest.CutPack}
	for _, name := range []string{"GOOD_HTTP", "STALL_HTTP", "CUT_HTTP"} {
		h, err := regtest.StartHostile(root)
		if err != nil {
			fail(err)
		}
		defer h.Close()
		h.SetMode(servers[name])
		fmt.Printf("%s=%s\n", name, h.URL)
	}
	s, err := regtest.StartSilent()
	if err != nil {
		fail(err)
	}
	defer s.Close()
	fmt.Printf("SILENT=%s\n", s.Addr)
	u, err := regtest.StartUnreachable()
	if err != nil {
		fail(err)
	}
	defer u.Close()
	fmt.Printf("UNREACHABLE=%s\n", u.Addr)
	sw, err := regtest.StartHostile(root)
	if err != nil {
		fail(err)
	}
	defer sw.Close()
	fmt.Printf("SWITCH_HTTP=%s\n", sw.URL)
	fmt.Println("READY=1")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch strings.TrimSpace(sc.Text()) {
		case "good":
			sw.SetMode(regtest.Good)
		case "stall":
			sw.SetMode(regtest.Stall)
		case "cut":
			sw.SetMode(regtest.CutPack)
		default:
			fmt.Println("ERR unknown mode")
			continue
		}
		fmt.Println("OK")
	}
}
