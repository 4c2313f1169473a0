#!/usr/bin/env bash
# bench-write.sh: writing rewritten .drv files, poison against Nix, in one
# run (issue 14).
#
# Generates a closure of NODES derivations (builder/internal/graphgen,
# benchmark shape: 2-10 KB, 3-15 inputs, depth 40), instantiates it once,
# then takes 3 x ROUNDS different nodes deep in it. In each round one node
# is poisoned for each of three runs, so that all write .drv files new to
# the store, in an order that rotates from round to round:
#   poison   poison rewrite --stdin of all NODES .drv paths as roots
#            (load, rewrite, write through the daemon: what a user waits for)
#   nix      nix-instantiate of the expression with the attribute added,
#            on Nix's default store (as root: the local store, written
#            in-process, no daemon)
#   nixd     the same with NIX_REMOTE=daemon: through the daemon, the way
#            every non-root user of a multi-user installation writes, and
#            the way poison must
# Both poison and nixd talk to the same daemon. The number of new .drv
# files of each run is what `poison rewrite --no-write --explain` counts
# for its node (and Nix's printed paths must equal poison's), so ms per new
# path compares like with like.
#
# Usage: scripts/bench-write.sh [NODES] [SEED]
# Env: ROUNDS (default 3), BENCH_DIR (default /tmp/poison-bench-write),
#      STORE (poison's --store and nixd's daemon socket; default: a private
#      nix-daemon on the system store started here, so that its CPU time
#      is measured alone), NIX_REMOTE for the nix run (unset: Nix's
#      default), MODES (default "poison nix nixd").
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=${1:-20000}
seed=${2:-1}
rounds=${ROUNDS:-3}
# shellcheck disable=SC2206
modes=(${MODES:-poison nix nixd})
dir=${BENCH_DIR:-/tmp/poison-bench-write}
mkdir -p "$dir"
store=${STORE:-}
socket=${NIX_DAEMON_SOCKET_PATH:-/nix/var/nix/daemon-socket/socket}
daemon_pid=
if [ -z "$store" ]; then
	# A private daemon: the system store, its own socket and process, so
	# /proc/PID/stat's cutime + cstime is the CPU time of the connection
	# workers it reaped (this script's, nobody else's). Without NIX_REMOTE:
	# with NIX_REMOTE=daemon its workers would connect to a daemon again.
	socket=$dir/socket
	rm -f "$socket"
	NIX_DAEMON_SOCKET_PATH=$socket setsid env -u NIX_REMOTE nix-daemon >"$dir/daemon.log" 2>&1 &
	daemon_pid=$!
	trap 'kill "$daemon_pid" 2>/dev/null || true' EXIT
	for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.1; done
	store=unix://$socket
fi
# daemon_cpu: seconds of CPU of the private daemon's reaped workers.
daemon_cpu() {
	[ -n "$daemon_pid" ] || { echo 0; return; }
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); split($0, f, " "); printf "%.2f\n", (f[14] + f[15]) / hz }' "/proc/$daemon_pid/stat"
}
# wait_daemon_cpu BEFORE: waits until the daemon reaped the worker of the
# last connection, prints the CPU seconds added since BEFORE.
wait_daemon_cpu() {
	local d1=$1 last=
	[ -n "$daemon_pid" ] || { echo 0; return; }
	for _ in $(seq 50); do
		d1=$(daemon_cpu)
		[ "$d1" != "$1" ] && [ "$d1" = "$last" ] && break
		last=$d1
		sleep 0.1
	done
	awk -v a="$1" -v b="$d1" 'BEGIN { printf "%.2f", b - a }'
}
export NIX_CONFIG="substituters =
${NIX_CONFIG:-}"

echo "bench: building poison and graphgen" >&2
go build -o "$dir/poison" ./cmd/poison
go build -o "$dir/graphgen" ./builder/internal/graphgen/cmd/graphgen

graph=$dir/graph-$seed-$nodes.nix
"$dir/graphgen" gen -bench -seed "$seed" -nodes "$nodes" >"$graph"
# Candidates to poison, most dependents first; the loop below takes those
# whose rewritten .drv files are not in the store yet (earlier runs wrote
# some).
"$dir/graphgen" deep -bench -seed "$seed" -nodes "$nodes" -count $((12 * rounds + 150)) >"$dir/victims"

echo "bench: instantiating the clean closure of $nodes derivations" >&2
nix-instantiate "$graph" >"$dir/clean.out" 2>"$dir/inst.err" || { cat "$dir/inst.err" >&2; exit 1; }
sed 's/!.*//' "$dir/clean.out" >"$dir/roots"

lockfor() { # attr -> lock file poisoning it
	local drv
	drv=$(nix-instantiate --eval --readonly-mode -E "(import $graph {}).$1.drvPath" | tr -d '"')
	printf '{"version":1,"registry":{"url":"file:///bench","ref":"main","commit":""},"env":"POISON_SERIAL","derivations":{"%s":1},"outputs":{},"names":{}}\n' \
		"$(basename "$drv")" >"$dir/$1.lock"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

for m in poison nix nixd; do # all: a mode left out must not print an earlier run's figures
	: >"$dir/$m.ms"
	: >"$dir/$m.cpu"
	: >"$dir/$m.dcpu"
	: >"$dir/$m.cpums"
done
mapfile -t candidates < <(cut -d' ' -f1 "$dir/victims")
next_candidate=0
# pick: the next candidate whose rewrite is new to the store; sets $v and
# writes $dir/$v.paths and $dir/$v.count.
pick() {
	local first n
	while [ "$next_candidate" -lt "${#candidates[@]}" ]; do
		v=${candidates[$next_candidate]}
		next_candidate=$((next_candidate + 1))
		lockfor "$v"
		"$dir/poison" rewrite --lock "$dir/$v.lock" --no-write --explain --stdin <"$dir/roots" >"$dir/$v.paths" 2>"$dir/$v.explain" ||
			{ cat "$dir/$v.explain" >&2; exit 1; }
		first=$(awk 'NR == FNR { root[FNR] = $0; next } root[FNR] != $0 { print; exit }' "$dir/roots" "$dir/$v.paths")
		[ -n "$first" ] || continue
		nix-store --check-validity "$first" 2>/dev/null && continue
		n=$(sed -n 's/^poison: \([0-9]*\) of .* rewritten.*/\1/p' "$dir/$v.explain")
		[ -n "$n" ] || { echo "bench: no rewrite count for $v" >&2; cat "$dir/$v.explain" >&2; exit 1; }
		echo "$n" >"$dir/$v.count"
		return 0
	done
	echo "bench: no node left whose rewrite is new to the store; use another SEED" >&2
	exit 1
}
status=0
nm=${#modes[@]}
for r in $(seq 0 $((rounds - 1))); do
	declare -A victim=()
	for m in "${modes[@]}"; do
		pick
		victim[$m]=$v
	done
	# rotate the order: each mode goes first in one round of every nm
	order=()
	for k in $(seq 0 $((nm - 1))); do
		order+=("${modes[$(((k + r) % nm))]}")
	done
	for m in "${order[@]}"; do
		v=${victim[$m]}
		d0=$(daemon_cpu)
		case $m in
		poison)
			/usr/bin/time -f "%e %U %S" -o "$dir/run.time" "$dir/poison" rewrite --store "$store" --lock "$dir/$v.lock" --stdin \
				<"$dir/roots" >"$dir/run.out" 2>"$dir/run.err" || { cat "$dir/run.err" >&2; exit 1; }
			;;
		nix | nixd)
			remote=${NIX_REMOTE:-}
			[ "$m" = nixd ] && remote=daemon
			NIX_REMOTE=$remote NIX_DAEMON_SOCKET_PATH=$socket /usr/bin/time -f "%e %U %S" -o "$dir/run.time" \
				nix-instantiate "$graph" --arg poison "{ $v = 1; }" >"$dir/run.nixout" 2>"$dir/run.err" || { cat "$dir/run.err" >&2; exit 1; }
			sed 's/!.*//' "$dir/run.nixout" >"$dir/run.out"
			;;
		esac
		dcpu=0
		[ "$m" != nix ] && dcpu=$(wait_daemon_cpu "$d0")
		if ! cmp -s "$dir/run.out" "$dir/$v.paths"; then
			echo "bench: MISMATCH: $m's paths for $v differ from poison rewrite --no-write's" >&2
			status=1
		fi
		n=$(cat "$dir/$v.count")
		read -r wall user sys <"$dir/run.time"
		ms=$(awk -v w="$wall" -v n="$n" 'BEGIN { printf "%.3f", w * 1000 / n }')
		cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
		echo "$ms" >>"$dir/$m.ms"
		echo "$cpu" >>"$dir/$m.cpu"
		echo "$dcpu" >>"$dir/$m.dcpu"
		# CPU ms per new path, with the daemon worker's
		awk -v c="$cpu" -v d="$dcpu" -v n="$n" 'BEGIN { printf "%.3f\n", (c + d) * 1000 / n }' >>"$dir/$m.cpums"
		extra=
		[ "$m" != nix ] && [ -n "$daemon_pid" ] && extra=" + daemon $dcpu s cpu"
		printf 'round %d: %-6s poisoned %-6s %5d new .drv  %6.2f s wall  %5.2f s cpu%s  %.3f ms/path  load %s\n' \
			"$r" "$m" "$v" "$n" "$wall" "$cpu" "$extra" "$ms" "$(cut -d' ' -f1 /proc/loadavg)"
	done
done

{
	printf 'closure             %d derivations (graphgen -bench), %d rounds, medians; daemon %s\n' "$nodes" "$rounds" "$store"
	for m in "${modes[@]}"; do
		case $m in
		poison) what="poison rewrite" ;;
		nix) what="nix-instantiate (NIX_REMOTE=${NIX_REMOTE:-}, in-process as root)" ;;
		nixd) what="nix-instantiate NIX_REMOTE=daemon" ;;
		esac
		printf '%-8s %7.3f ms/new .drv wall  %7.3f ms CPU/new .drv (own %s s + daemon %s s)  %s\n' "$m" \
			"$(median <"$dir/$m.ms")" "$(median <"$dir/$m.cpums")" "$(median <"$dir/$m.cpu")" "$(median <"$dir/$m.dcpu")" "$what"
	done
	if [ -s "$dir/poison.ms" ]; then
		for m in nix nixd; do
			[ -s "$dir/$m.ms" ] || continue
			awk -v p="$(median <"$dir/poison.ms")" -v x="$(median <"$dir/$m.ms")" -v pc="$(median <"$dir/poison.cpums")" -v xc="$(median <"$dir/$m.cpums")" -v m="$m" \
				'BEGIN { printf "poison/%-5s %.2f wall (target <= 0.6), %.2f CPU\n", m, p / x, pc / xc }'
		done
	fi
	printf 'load average        %s (2 shared cores: wall times are noisy when it is high)\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
}
exit $status
