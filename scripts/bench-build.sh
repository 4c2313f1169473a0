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
# Usage: [ROUNDS=R] [ORDER="poison nix perdrv"] scripts/bench-build.sh [N [JOBS]]
#        (defaults: 1 round, 1000 derivations, 2 jobs; ORDER is round 0's order)
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

run_mode() { # mode → wall seconds of one fresh build
	nonce="$1-$(date +%s%N)"
	top=$(lockfor "$nonce")
	case $1 in
	nix)
		newtop=$("$tmp/poison" rewrite --lock "$tmp/$nonce.lock" "$top" 2>/dev/null)
		secs nix-store --realise -j "$jobs" "$newtop" ;;
	poison)
		secs "$tmp/poison" build --store daemon --lock "$tmp/$nonce.lock" -j "$jobs" "$top" ;;
	perdrv)
		secs "$tmp/poison" build --store daemon --per-derivation --lock "$tmp/$nonce.lock" -j "$jobs" "$top" ;;
	esac
}

# ROUNDS rounds, the order rotated each round so that load from other
# processes does not favour one mode.
rounds=${ROUNDS:-1}
t_nix=0 t_poison=0 t_perdrv=0
r=0
while [ "$r" -lt "$rounds" ]; do
	case $((r % 3)) in
	0) order=${ORDER:-nix poison perdrv} ;;
	1) order="poison perdrv nix" ;;
	2) order="perdrv nix poison" ;;
	esac
	for m in $order; do
		t=$(run_mode "$m")
		echo "round $r: $m $t s" >&2
		eval "t_$m=\$(echo \"\$t_$m + $t\" | bc)"
	done
	r=$((r + 1))
done

echo "derivations built per run: $((n + 1)), jobs: $jobs, rounds: $rounds (total wall time per mode)"
echo "nix-store --realise (rewritten top):  ${t_nix} s"
ratio() { [ "$t_nix" != 0 ] && echo "scale=2; $1 / $t_nix" | bc; }
[ "$t_poison" = 0 ] || echo "poison build:                         ${t_poison} s  ($(ratio "$t_poison")x)"
[ "$t_perdrv" = 0 ] || echo "poison build --per-derivation:        ${t_perdrv} s  ($(ratio "$t_perdrv")x)"
