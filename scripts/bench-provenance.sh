#!/usr/bin/env bash
# bench-provenance.sh: the figures of the build journal and the cache
# quarantine (issue 13), each measured in one run.
#
#   hook        N trivial builds (default 200, -j 1) through each of three
#               private nix-daemons: no post-build-hook, /bin/true as the
#               hook (what Nix's running of any hook costs), poison's hook;
#               in 4 interleaved rounds: total wall time and the ratios.
#               Then N more builds through a daemon
#               whose hook is timed around the poison process (bash
#               $EPOCHREALTIME, no extra fork): per-build cost, median and p99.
#               The hook is the script 'poison hooks install --post-build'
#               writes, running the small poison-journal-hook binary.
#   provenance  a 1,000,000-line journal (awk-generated, 7 hosts):
#               'poison provenance' filtered (--host --since), full text
#               listing and full --json listing, to /dev/null.
#   quarantine  a 10,000-narinfo file cache with 500 poisoned outputs (250
#               by output path, 250 by Deriver): 'poison quarantine', then
#               '--restore'; a tree hash (paths, modes, contents) before and
#               after must be equal.
#
# Usage: scripts/bench-provenance.sh [hook|provenance|quarantine]... (default: all)
# Env: N (hook builds, default 200), BENCH_DIR (default /tmp/poison-bench-prov).
# Needs root (private nix-daemons on the system store) for 'hook'.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
dir=${BENCH_DIR:-/tmp/poison-bench-prov}
n=${N:-200}
mkdir -p "$dir"
go build -o "$dir/poison" ./cmd/poison
go build -o "$dir/poison-journal-hook" ./cmd/poison-journal-hook
poison=$dir/poison
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(hook provenance quarantine)

now_ms() { local t=$EPOCHREALTIME; echo $(( ${t/./} / 1000 )); }

# timed CMD...: runs CMD (stdout, stderr as given) and sets $took to its
# wall and CPU time: on a loaded machine the CPU time is the steadier figure.
timed() {
	local TIMEFORMAT='%R %U %S'
	{ time "$@" 2>&5; } 5>&2 2>"$dir/time.out"
	took=$(awk '{printf "%.2f s wall, %.2f CPU-s", $1, $2 + $3}' "$dir/time.out")
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_daemon NAME HOOK: a nix-daemon on $dir/NAME.socket (HOOK "" = none).
start_daemon() {
	local sock=$dir/$1.socket conf="substituters =" # POISON_JOURNAL passes through to the hook
	[ -z "$2" ] || conf="$conf
post-build-hook = $2"
	rm -f "$sock"
	NIX_CONFIG=$conf NIX_DAEMON_SOCKET_PATH=$sock setsid nix-daemon >"$dir/$1.log" 2>&1 &
	pids+=($!)
	eval "pid_$1=$!"
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
	sleep 0.2
}

# cpu_ms PID: CPU time (user + system) of the processes PID reaped: a
# nix-daemon's connection workers with their builders and hooks.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); split($0, f, " "); printf "%d\n", (f[14] + f[15]) * 1000 / hz }' "/proc/$1/stat"; }

# build NAME: instantiate N fresh trivial derivations, build them -j 1
# through daemon NAME; print the wall milliseconds and add the CPU
# milliseconds of the daemon's workers (builds and hooks) to cpu_NAME.
build() {
	local drvs t0 t1 c0 c1 pid
	pid=$(eval "echo \$pid_$1")
	drvs=$(NIX_CONFIG="substituters =" nix-instantiate testdata/provenance/wide.nix --argstr nonce "$1-$RANDOM-$(date +%s%N)" --arg n "$n" --argstr sleep 0 2>/dev/null)
	c0=$(cpu_ms "$pid")
	t0=$(now_ms)
	NIX_REMOTE=unix://$dir/$1.socket NIX_CONFIG="substituters =" nix-store --realise -j 1 $drvs >/dev/null 2>"$dir/$1.build.log"
	t1=$(now_ms)
	sleep 0.3 # the connection worker exits and is reaped
	c1=$(cpu_ms "$pid")
	echo $((c1 - c0)) >>"$dir/$1.cpu"
	echo $((t1 - t0))
}

# cpu_total NAME: the CPU milliseconds of daemon NAME's builds so far.
cpu_total() { awk '{s += $1} END {print s + 0}' "$dir/$1.cpu" 2>/dev/null || echo 0; }

hook() {
	local rounds=4 per=$((n / 4))
	echo "== post-build-hook: $((rounds * per)) trivial builds per configuration, -j 1, in $rounds interleaved rounds (Nix $(nix --version | awk '{print $3}'))"
	rm -f "$dir/journal.jsonl"* "$dir/direct.jsonl"* "$dir/timed.jsonl"*
	"$poison" hooks install --post-build "$dir/hook" --poison "$poison" --journal "$dir/journal.jsonl" --force >/dev/null
	grep -q poison-journal-hook "$dir/hook" || { echo "the hook script does not run poison-journal-hook"; exit 1; }
	cat >"$dir/timed-hook" <<-EOS
	#!/bin/bash
	TIMEFORMAT='%R %U %S'
	{ time '$dir/poison-journal-hook' --journal '$dir/timed.jsonl' 2>/dev/null; } 2>>'$dir/hook-times'
	EOS
	chmod +x "$dir/timed-hook"
	rm -f "$dir"/*.cpu
	start_daemon plain ""
	start_daemon noop /bin/true
	start_daemon hooked "$dir/hook"
	POISON_JOURNAL=$dir/direct.jsonl start_daemon direct "$dir/poison-journal-hook"
	start_daemon timed "$dir/timed-hook"
	local plain=0 noop=0 hooked=0 direct=0 a b c d saved=$n
	n=$per
	for round in $(seq $rounds); do
		case $((round % 3)) in
		1) a=$(build plain); b=$(build noop); c=$(build hooked); d=$(build direct) ;;
		2) d=$(build direct); c=$(build hooked); a=$(build plain); b=$(build noop) ;;
		3) b=$(build noop); d=$(build direct); c=$(build hooked); a=$(build plain) ;;
		0) c=$(build hooked); a=$(build plain); d=$(build direct); b=$(build noop) ;;
		esac
		echo "round $round ($per builds each): no hook ${a} ms, hook /bin/true ${b} ms, poison's hook script ${c} ms, poison-journal-hook direct ${d} ms"
		plain=$((plain + a)); noop=$((noop + b)); hooked=$((hooked + c)); direct=$((direct + d))
	done
	local builds=$((rounds * (per + 1)))
	echo "total ($builds builds each): no hook ${plain} ms, /bin/true hook ${noop} ms, poison's hook script ${hooked} ms, poison-journal-hook direct ${direct} ms"
	echo "ratio direct / no hook: $(awk -v a="$direct" -v b="$plain" 'BEGIN{printf "%.3f", a/b}')x; direct / /bin/true hook: $(awk -v a="$direct" -v b="$noop" 'BEGIN{printf "%.3f", a/b}')x"
	echo "ratio poison's hook / no hook: $(awk -v a="$hooked" -v b="$plain" 'BEGIN{printf "%.3f", a/b}')x; /bin/true hook / no hook: $(awk -v a="$noop" -v b="$plain" 'BEGIN{printf "%.3f", a/b}')x; poison's hook / /bin/true hook: $(awk -v a="$hooked" -v b="$noop" 'BEGIN{printf "%.3f", a/b}')x"
	echo "per build: Nix running any hook $(awk -v a="$noop" -v b="$plain" -v k="$builds" 'BEGIN{printf "%.2f", (a-b)/k}') ms, poison's hook over /bin/true $(awk -v a="$hooked" -v b="$noop" -v k="$builds" 'BEGIN{printf "%.2f", (a-b)/k}') ms"
	local cp cn ch cd
	cp=$(cpu_total plain); cn=$(cpu_total noop); ch=$(cpu_total hooked); cd=$(cpu_total direct)
	echo "CPU time of the daemons' workers (builds + hooks): no hook ${cp} ms, /bin/true hook ${cn} ms, poison's hook script ${ch} ms, poison-journal-hook direct ${cd} ms"
	echo "CPU ratio: script / no hook $(awk -v a="$ch" -v b="$cp" 'BEGIN{printf "%.3f", a/b}')x, direct / no hook $(awk -v a="$cd" -v b="$cp" 'BEGIN{printf "%.3f", a/b}')x, /bin/true hook / no hook $(awk -v a="$cn" -v b="$cp" 'BEGIN{printf "%.3f", a/b}')x; poison's CPU per build: script $(awk -v a="$ch" -v b="$cn" -v k="$builds" 'BEGIN{printf "%.2f", (a-b)/k}') ms, direct $(awk -v a="$cd" -v b="$cn" -v k="$builds" 'BEGIN{printf "%.2f", (a-b)/k}') ms over /bin/true"
	echo "journal lines: script $(wc -l <"$dir/journal.jsonl"), direct $(wc -l <"$dir/direct.jsonl") (want $builds each)"
	n=$saved
	rm -f "$dir/hook-times"
	build timed >/dev/null
	sort -n <(awk '{printf "%.3f\n", $1 * 1000}' "$dir/hook-times") >"$dir/hook-ms"
	sort -n <(awk '{printf "%.3f\n", ($2 + $3) * 1000}' "$dir/hook-times") >"$dir/hook-cpu"
	awk '{v[NR]=$1} END{m=v[int((NR+1)/2)]; p=v[int(NR*0.99+0.999)]; printf "hook process (poison-journal-hook, %d builds), wall: median %.2f ms, p99 %.2f ms, max %.2f ms\n", NR, m, p, v[NR]}' "$dir/hook-ms"
	awk '{v[NR]=$1} END{m=v[int((NR+1)/2)]; p=v[int(NR*0.99+0.999)]; printf "hook process CPU (user + sys): median %.2f ms, p99 %.2f ms\n", m, p}' "$dir/hook-cpu"
	# For scale: what starting any process costs on this machine right now.
	local t0 t1
	t0=$(now_ms); for _ in $(seq 100); do /bin/true; done; t1=$(now_ms)
	echo "process start baseline: /bin/true $(awk -v d=$((t1 - t0)) 'BEGIN{printf "%.2f", d/100}') ms each; load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

provenance() {
	local j=$dir/big.jsonl
	if [ ! -s "$j" ] || [ "$(wc -l <"$j")" -ne 1000000 ]; then
		awk 'BEGIN{
			a="0123456789abcdfghijklmnpqrsvwxyz"
			for (i = 0; i < 1000000; i++) {
				h = ""; x = i
				for (k = 0; k < 32; k++) { h = h substr(a, x % 32 + 1, 1); x = int(x / 32) + k }
				t = 1764576000 + i * 2
				printf "{\"v\":1,\"drv\":\"/nix/store/%s-pkg-%d.drv\",\"outputs\":[\"/nix/store/%s-pkg-%d\"],\"host\":\"board%d\",\"machineId\":\"0123456789abcdef0123456789abcde%d\",\"system\":\"aarch64-linux\",\"start\":\"%s\",\"startSource\":\"build-log\",\"end\":\"%s\",\"nix\":\"2.8.0\"}\n", h, i, h, i, i % 7, i % 7, strftime("%Y-%m-%dT%H:%M:%SZ", t - 1, 1), strftime("%Y-%m-%dT%H:%M:%SZ", t, 1)
			}
		}' >"$j"
	fi
	echo "== poison provenance over $(wc -l <"$j") lines ($(du -m "$j" | cut -f1) MB)"
	for args in "--host board3 --since 2025-12-10T00:00:00Z --until 2025-12-20T00:00:00Z" "" "--json"; do
		timed "$poison" provenance --journal "$j" $args >"$dir/out"
		echo "provenance ${args:-(everything, text)}: $took, $(wc -l <"$dir/out") builds listed"
	done
	echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

treehash() { (cd "$1" && find . -printf '%p %M\n' | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16; }

quarantine() {
	local c=$dir/cache
	rm -rf "$c" && mkdir -p "$c/nar"
	printf 'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n' >"$c/nix-cache-info"
	awk -v dir="$c" -v lockf="$dir/poison.lock" 'BEGIN{
		a="0123456789abcdfghijklmnpqrsvwxyz"
		for (i = 0; i < 10000; i++) {
			h = "1"; d = "2"; x = i
			for (k = 1; k < 32; k++) { c = substr(a, x % 32 + 1, 1); h = h c; d = d c; x = int(x / 32) }
			f = dir "/" h ".narinfo"
			printf "StorePath: /nix/store/%s-pkg-%d\nURL: nar/%s.nar.xz\nCompression: xz\nNarHash: sha256:0000000000000000000000000000000000000000000000000000\nNarSize: 120\nReferences: \nDeriver: %s-pkg-%d.drv\nSig: cache-1:abc==\n", h, i, h, d, i > f
			close(f)
			if (i % 20 == 0) { if (i % 40 == 0) outs = outs sprintf("%s\"%s-pkg-%d\": 1", (outs == "" ? "" : ", "), h, i); else drvs = drvs sprintf("%s\"%s-pkg-%d.drv\": 1", (drvs == "" ? "" : ", "), d, i) }
		}
		printf "{\"version\": 1, \"registry\": {\"url\": \"file:///registry\", \"ref\": \"main\", \"commit\": \"%s\"}, \"env\": \"POISON_SERIAL\", \"derivations\": {%s}, \"outputs\": {%s}, \"names\": {}}\n", "cccccccccccccccccccccccccccccccccccccccc", drvs, outs > lockf
	}'
	echo "== poison quarantine: $(ls "$c" | grep -c narinfo) narinfos"
	before=$(treehash "$c")
	timed "$poison" quarantine --cache "file://$c" --lock "$dir/poison.lock" --max-age 0 >"$dir/moved" 2>"$dir/q.err"
	echo "quarantine: $took, $(wc -l <"$dir/moved") narinfos moved ($(grep -c ': output' "$dir/moved") by output path, $(grep -c ': deriver' "$dir/moved") by deriver)"
	timed "$poison" quarantine --cache "file://$c" --restore >"$dir/restored" 2>>"$dir/q.err"
	after=$(treehash "$c")
	echo "restore: $took, $(wc -l <"$dir/restored") narinfos restored; tree hash before $before, after $after: $([ "$before" = "$after" ] && echo identical || echo DIFFERENT)"
	echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
	[ "$before" = "$after" ]
}

for p in "${parts[@]}"; do "$p"; done
