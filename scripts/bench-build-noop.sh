#!/usr/bin/env bash
# bench-build-noop.sh: `poison build` of an already-built closure with
# nothing in it poisoned, against `nix-build` of the same expression, in
# one run (issue 14). What a user pays for poison on every build that has
# nothing to rebuild.
#
# The closure is testdata/daemon/wide.nix with N trivial derivations (and
# its top), built once first. The lock poisons one derivation that is not
# in the closure (a registry always holds something). Then, in alternating
# order, ROUNDS times each:
#   nix      nix-build --no-out-link -A top (evaluate, write nothing new,
#            build nothing)
#   poison   poison build --no-link -f wide.nix -A top (evaluate through
#            nix-instantiate, load and check the closure, write nothing,
#            ask the daemon to build: all valid)
#
# Before the rounds poison builds once untimed, with an empty closure
# cache (POISON_CACHE_DIR=BENCH_DIR/cache): that build reads the closure
# and records it, as a user's first build of the expression does; its
# time is printed. The rounds then measure the builds after it, which
# read the record instead (POISON_CLOSURE_CACHE=0 measures without).
#
# Usage: scripts/bench-build-noop.sh [N]     (default 1000)
# Env: ROUNDS (default 11), BENCH_DIR (default /tmp/poison-bench-noop),
#      POISON (the poison binary to measure; default: built from this tree).
# Wall times are taken with the shell's microsecond clock (EPOCHREALTIME).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-1000}
rounds=${ROUNDS:-11}
dir=${BENCH_DIR:-/tmp/poison-bench-noop}
mkdir -p "$dir"
export NIX_CONFIG="substituters =
${NIX_CONFIG:-}"
file=$PWD/testdata/daemon/wide.nix
nonce=noop-$n
poison=${POISON:-$dir/poison}
[ -n "${POISON:-}" ] || go build -o "$dir/poison" ./cmd/poison

echo "bench: building the closure of $((n + 1)) derivations once" >&2
nix-build --no-out-link "$file" -A top --arg n "$n" --argstr nonce "$nonce" >"$dir/built" 2>"$dir/build.err" ||
	{ cat "$dir/build.err" >&2; exit 1; }
cat >"$dir/poison.lock" <<'EOF'
{"version":1,"registry":{"url":"file:///bench","ref":"main","commit":""},"env":"POISON_SERIAL","derivations":{"00000000000000000000000000000000-elsewhere.drv":1},"outputs":{},"names":{}}
EOF

export POISON_CACHE_DIR=$dir/cache
rm -rf "$dir/cache/closures"
poisoncmd=("$poison" build --no-link --lock "$dir/poison.lock" --max-age 0 --print-out-paths -f "$file" -A top --arg n "$n" --argstr nonce "$nonce")
t0=$EPOCHREALTIME
"${poisoncmd[@]}" >"$dir/run.out" 2>"$dir/run.err" || { cat "$dir/run.err" >&2; exit 1; }
t1=$EPOCHREALTIME
cmp -s "$dir/run.out" "$dir/built" || { echo "bench: poison printed $(cat "$dir/run.out"), want $(cat "$dir/built")" >&2; exit 1; }
first=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
: >"$dir/nix.s"
: >"$dir/poison.s"
for r in $(seq 0 $((rounds - 1))); do
	order="nix poison"
	[ $((r % 2)) -eq 1 ] && order="poison nix"
	for m in $order; do
		if [ "$m" = nix ]; then
			cmd=(nix-build --no-out-link "$file" -A top --arg n "$n" --argstr nonce "$nonce")
		else
			cmd=("${poisoncmd[@]}")
		fi
		t0=$EPOCHREALTIME
		"${cmd[@]}" >"$dir/run.out" 2>"$dir/run.err" || { cat "$dir/run.err" >&2; exit 1; }
		t1=$EPOCHREALTIME
		if ! cmp -s "$dir/run.out" "$dir/built"; then
			echo "bench: $m printed $(cat "$dir/run.out"), want $(cat "$dir/built")" >&2
			exit 1
		fi
		t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
		echo "$t" >>"$dir/$m.s"
		printf 'round %d: %-6s %7.4f s  load %s\n' "$r" "$m" "$t" "$(cut -d' ' -f1 /proc/loadavg)"
	done
done
awk -v p="$(median <"$dir/poison.s")" -v x="$(median <"$dir/nix.s")" -v n="$n" -v rounds="$rounds" -v first="$first" \
	-v load="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
	printf "closure        %d derivations, all built, nothing poisoned; %d rounds, medians\n", n + 1, rounds
	printf "nix-build      %.4f s\n", x
	printf "poison build   %.4f s\n", p
	printf "poison/nix     %.2f  (target <= 1.1)\n", p / x
	printf "first poison build (reads and records the closure; not in the medians) %.4f s\n", first
	printf "load average   %s (2 shared cores: wall times are noisy when it is high)\n", load
}'
