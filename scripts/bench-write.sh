#!/usr/bin/env bash
# bench-write.sh: writing rewritten .drv files, poison against Nix, in one
# run (issue 14).
#
# Generates a closure of NODES derivations (builder/internal/graphgen,
# benchmark shape: 2-10 KB, 3-15 inputs, depth 40), instantiates it once,
# then takes 2 x ROUNDS different nodes deep in it. In each round one
# node is poisoned for poison and another for Nix, so that both write
# .drv files new to the store, in alternating order:
#   poison   poison rewrite --stdin of all NODES .drv paths as roots
#            (load, rewrite, write through the daemon: what a user waits for)
#   nix      nix-instantiate of the expression with the attribute added
#            (evaluates all NODES and writes the new .drv files)
# The number of new .drv files of each run is what `poison rewrite
# --no-write --explain` counts for its node (and Nix's printed paths must
# equal poison's), so ms per new path compares like with like.
#
# Usage: scripts/bench-write.sh [NODES] [SEED]
# Env: ROUNDS (default 3), BENCH_DIR (default /tmp/poison-bench-write),
#      STORE (poison's --store; default: a private nix-daemon on the system
#      store started here, so that its CPU time is measured alone),
#      NIX_REMOTE for nix-instantiate (unset: Nix's default; as root that is
#      the local store, written in-process, no daemon).
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=${1:-20000}
seed=${2:-1}
rounds=${ROUNDS:-3}
dir=${BENCH_DIR:-/tmp/poison-bench-write}
mkdir -p "$dir"
store=${STORE:-}
daemon_pid=
if [ -z "$store" ]; then
	# A private daemon: the system store, its own socket and process, so
	# /proc/PID/stat's cutime + cstime is the CPU time of the connection
	# workers it reaped (poison's, nobody else's).
	rm -f "$dir/socket"
	NIX_DAEMON_SOCKET_PATH=$dir/socket setsid env -u NIX_REMOTE nix-daemon >"$dir/daemon.log" 2>&1 &
	daemon_pid=$!
	trap 'kill "$daemon_pid" 2>/dev/null || true' EXIT
	for _ in $(seq 100); do [ -S "$dir/socket" ] && break; sleep 0.1; done
	store=unix://$dir/socket
fi
# daemon_cpu: seconds of CPU of the private daemon's reaped workers.
daemon_cpu() {
	[ -n "$daemon_pid" ] || { echo 0; return; }
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); split($0, f, " "); printf "%.2f\n", (f[14] + f[15]) / hz }' "/proc/$daemon_pid/stat"
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
"$dir/graphgen" deep -bench -seed "$seed" -nodes "$nodes" -count $((4 * rounds + 40)) >"$dir/victims"

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

: >"$dir/poison.ms"
: >"$dir/nix.ms"
: >"$dir/poison.cpu"
: >"$dir/nix.cpu"
: >"$dir/daemon.cpu"
: >"$dir/poison.cpums"
: >"$dir/nix.cpums"
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
for r in $(seq 0 $((rounds - 1))); do
	pick
	pv=$v
	pick
	nv=$v
	order="poison nix"
	[ $((r % 2)) -eq 1 ] && order="nix poison"
	for m in $order; do
		if [ "$m" = poison ]; then
			v=$pv
			d0=$(daemon_cpu)
			/usr/bin/time -f "%e %U %S" -o "$dir/run.time" "$dir/poison" rewrite --store "$store" --lock "$dir/$v.lock" --stdin \
				<"$dir/roots" >"$dir/run.out" 2>"$dir/run.err" || { cat "$dir/run.err" >&2; exit 1; }
			# wait until the daemon reaped the worker of the connection
			d1=$d0 last=
			for _ in $(seq 50); do
				d1=$(daemon_cpu)
				[ "$d1" != "$d0" ] && [ "$d1" = "$last" ] && break
				last=$d1
				sleep 0.1
			done
			dcpu=$(awk -v a="$d0" -v b="$d1" 'BEGIN { printf "%.2f", b - a }')
			echo "$dcpu" >>"$dir/daemon.cpu"
		else
			v=$nv
			/usr/bin/time -f "%e %U %S" -o "$dir/run.time" nix-instantiate "$graph" --arg poison "{ $v = 1; }" \
				>"$dir/run.nixout" 2>"$dir/run.err" || { cat "$dir/run.err" >&2; exit 1; }
			sed 's/!.*//' "$dir/run.nixout" >"$dir/run.out"
		fi
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
		# CPU ms per new path, poison's with its daemon worker's
		total=$cpu
		[ "$m" = poison ] && [ -n "$daemon_pid" ] && total=$(awk -v a="$cpu" -v b="$dcpu" 'BEGIN { print a + b }')
		awk -v c="$total" -v n="$n" 'BEGIN { printf "%.3f\n", c * 1000 / n }' >>"$dir/$m.cpums"
		extra=
		[ "$m" = poison ] && [ -n "$daemon_pid" ] && extra=" + daemon $dcpu s cpu"
		printf 'round %d: %-6s poisoned %-6s %5d new .drv  %6.2f s wall  %5.2f s cpu%s  %.3f ms/path  load %s\n' \
			"$r" "$m" "$v" "$n" "$wall" "$cpu" "$extra" "$ms" "$(cut -d' ' -f1 /proc/loadavg)"
	done
done

pm=$(median <"$dir/poison.ms")
nm=$(median <"$dir/nix.ms")
awk -v p="$pm" -v x="$nm" -v pc="$(median <"$dir/poison.cpu")" -v xc="$(median <"$dir/nix.cpu")" -v rounds="$rounds" \
	-v dc="$( [ -s "$dir/daemon.cpu" ] && median <"$dir/daemon.cpu" || echo -1)" \
	-v pcm="$(median <"$dir/poison.cpums")" -v xcm="$(median <"$dir/nix.cpums")" \
	-v nodes="$nodes" -v store="$store" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
	printf "closure             %d derivations (graphgen -bench), %d rounds, poison --store %s\n", nodes, rounds, store
	printf "poison rewrite      %.3f ms per new .drv (median; %.2f CPU-s of poison itself", p, pc
	if (dc >= 0) printf ", %.2f CPU-s of the daemon", dc
	printf ")\n"
	printf "nix-instantiate     %.3f ms per new .drv (median, evaluation included; %.2f CPU-s)\n", x, xc
	printf "poison/nix          %.2f  wall (target <= 0.6)\n", p / x
	if (dc >= 0) printf "CPU per new .drv    poison + its daemon worker %.3f ms, nix-instantiate %.3f ms: %.2f\n", pcm, xcm, pcm / xcm
	printf "load average        %s (2 shared cores: wall times are noisy when it is high)\n", load
}'
exit $status
