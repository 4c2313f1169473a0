// Command poison invalidates bad Nix build results by rewriting derivation
// closures with registry-assigned serials. See README.md.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], newEnv())) }
