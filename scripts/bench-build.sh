#!/bin/sh
# Benchmark of `poison build` (issue 5): a closure of N trivial
# derivations (testdata/daemon/wide.nix) whose root node is poisoned, so
# all N+1 are rewritten and rebuilt, built three ways through the nix-daemon,
# each on a fresh nonce so nothing is valid yet:
#
#   nix            poison rewrite (writes the .drvs, not timed), then
#                  nix-store --realise of the rewritten top .drv (timed)
#   poison         poison build (timed: rewrite + write + build)
#   per-derivation poison build --per-derivation (timed)
#
# Usage: scripts/bench-build.sh [N [JOBS]]     (defaults: 1000, 2)
# Also: scripts/bench-build.sh write [N]       5000-drv write benchmark
set -eu
cd "$(dirname "$0")/.."
export NIX_CONFIG="substituters =
require-sigs = false"
export NIX_REMOTE=daemon
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/poison" ./cmd/poison
file=testdata/daemon/wide.nix

if [ "${1:-}" = write ]; then
	exec go test ./builder -run '^$' -bench 'BenchmarkWrite/conns=1$' -benchtime 1x -bench-nodes "${2:-5000}"
fi
n=${1:-1000}
jobs=${2:-2}

lockfor() { # nonce → lock poisoning node 0
	w0=$(nix-instantiate "$file" --arg n "$n" --argstr nonce "$1" -A w0 2>/dev/null)
	printf '{"version":1,"registry":{"url":"file:///bench","ref":"main","commit":"abababababababababababababababababababab"},"env":"POISON_SERIAL","derivations":{"%s":1},"outputs":{},"names":{}}\n' "$(basename "$w0")" >"$tmp/$1.lock"
	nix-instantiate "$file" --arg n "$n" --argstr nonce "$1" -A top 2>/dev/null
}

secs() { # run a command, print its wall time in seconds
	start=$(date +%s.%N)
	"$@" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
	end=$(date +%s.%N)
	echo "$end - $start" | bc
}

stamp=$(date +%s%N)
top=$(lockfor "nix-$stamp")
newtop=$("$tmp/poison" rewrite --lock "$tmp/nix-$stamp.lock" "$top" 2>/dev/null)
t_nix=$(secs nix-store --realise -j "$jobs" "$newtop")

top=$(lockfor "poison-$stamp")
t_poison=$(secs "$tmp/poison" build --store daemon --lock "$tmp/poison-$stamp.lock" -j "$jobs" "$top")

top=$(lockfor "perdrv-$stamp")
t_perdrv=$(secs "$tmp/poison" build --store daemon --per-derivation --lock "$tmp/perdrv-$stamp.lock" -j "$jobs" "$top")

echo "derivations built: $((n + 1)), jobs: $jobs"
echo "nix-store --realise (rewritten top):  ${t_nix} s"
echo "poison build:                         ${t_poison} s  ($(echo "scale=2; $t_poison / $t_nix" | bc)x)"
echo "poison build --per-derivation:        ${t_perdrv} s  ($(echo "scale=2; $t_perdrv / $t_nix" | bc)x)"
