#!/usr/bin/env bash
# bench-rewrite.sh: the figures of issue 3, measured in one run.
#
# Generates a closure of NODES derivations (default 20,000; 2-10 KB each,
# 3-15 inputs, depth 40, multi-output, structured attrs, fixed-output; see
# builder/internal/graphgen), instantiates it once (timed: a cold
# nix-instantiate the first time a seed is used), poisons one node deep in
# it, then measures:
#   (a) poison rewrite --no-write --stdin of all NODES .drv paths as roots,
#       wall time and peak RSS (/usr/bin/time -v), after one untimed run
#       (its time printed);
#   (b) the floor: reading every .drv file and SHA-256 hashing its bytes
#       twice, in-process (graphgen floor; sequential and on all cores);
#   (c) nix-instantiate --readonly-mode of the same expression with the
#       attribute added.
# and checks that (a) prints exactly the paths (c) prints.
#
# Usage: scripts/bench-rewrite.sh [NODES] [SEED]
# Env: BENCH_DIR (work directory, default /tmp/poison-bench), REPEAT (runs of
# (a) and (c), best taken and medians shown, default 3), SHAPE (the graph's
# shape, default bench):
#   bench       depth 40, 3-15 inputs, 1.5-5.5 KB padding, the default mix
#               (35% plain, 20% multi-output, 17% structured, 10% structured
#               multi-output, 18% fixed-output)
#   wide        depth 8, 10-40 inputs (high fan-in), 0.3-1.5 KB padding
#   deep        depth 400, 1-4 inputs, 2-8 KB padding, 60% multi-output,
#               45% structured
#   structured  the bench shape with 75% structured derivations
# GRAPH_ARGS adds graphgen gen flags of your own (-depth, -inputs, -pad, -kinds).
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=${1:-20000}
seed=${2:-1}
repeat=${REPEAT:-3}
dir=${BENCH_DIR:-/tmp/poison-bench}
mkdir -p "$dir"
export NIX_CONFIG="substituters =
${NIX_CONFIG:-}"

if [ ! -x /usr/bin/time ]; then
  echo "bench: /usr/bin/time is missing (apt-get install -y time)" >&2
  exit 1
fi

echo "bench: building poison and graphgen"
go build -o "$dir/poison" ./cmd/poison
go build -o "$dir/graphgen" ./builder/internal/graphgen/cmd/graphgen

shape=${SHAPE:-bench}
case $shape in
  bench) shape_args=() ;;
  wide) shape_args=(-depth 8 -inputs 10-40 -pad 300-1500) ;;
  deep) shape_args=(-depth 400 -inputs 1-4 -pad 2000-8000
    -kinds plain=10,multi=35,structured=20,structured-multi=25,fixed-flat=5,fixed-recursive=5) ;;
  structured) shape_args=(-kinds plain=5,multi=5,structured=45,structured-multi=30,fixed-flat=8,fixed-recursive=7) ;;
  *) echo "bench: unknown SHAPE $shape (bench, wide, deep, structured)" >&2; exit 1 ;;
esac
# shellcheck disable=SC2206
gen_args=(-bench -seed "$seed" -nodes "$nodes" "${shape_args[@]}" ${GRAPH_ARGS:-})
graph=$dir/graph-$shape-$seed-$nodes$(printf '%s' "${GRAPH_ARGS:-}" | tr -c 'A-Za-z0-9=,-' '_').nix
"$dir/graphgen" gen "${gen_args[@]}" >"$graph"
read -r victim downstream < <("$dir/graphgen" deep "${gen_args[@]}")
echo "bench: $nodes derivations (shape $shape, seed $seed, $(du -h "$graph" | cut -f1) of Nix), poisoning $victim ($downstream nodes downstream)"

# Instantiate once, writing the clean closure (cold the first time).
/usr/bin/time -f "%e" -o "$dir/inst.time" nix-instantiate "$graph" >"$dir/clean.out" 2>"$dir/inst.err" ||
  { cat "$dir/inst.err" >&2; exit 1; }
sed 's/!.*//' "$dir/clean.out" >"$dir/roots"
[ "$(wc -l <"$dir/roots")" -eq "$nodes" ] || { echo "bench: nix-instantiate printed $(wc -l <"$dir/roots") paths, want $nodes" >&2; exit 1; }

# The lock: the canonical .drv of the victim, serial 1.
victim_drv=$(nix-instantiate --eval --readonly-mode -E "(import $graph {}).$victim.drvPath" | tr -d '"')
cat >"$dir/poison.lock" <<EOF
{
  "version": 1,
  "registry": {
    "url": "file:///bench",
    "ref": "main",
    "commit": ""
  },
  "env": "POISON_SERIAL",
  "derivations": {
    "$(basename "$victim_drv")": 1
  },
  "outputs": {},
  "names": {}
}
EOF

best() { sort -n | head -1; }
# median wall time of a times file (one "wall cpu" line per run)
median() { sort -n | awk '{ w[NR] = $1 } END { print (NR % 2 ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2) }'; }

# (a) poison rewrite. One untimed run first: on a virtual machine whose
# host takes back memory left unused for a few seconds, the first run after
# an idle spell pays for fresh pages (0.4-2 s more here); its time is
# printed, not counted, as the floor's first read is not.
/usr/bin/time -f "%e %U %S" -o "$dir/warmup.time" "$dir/poison" rewrite --lock "$dir/poison.lock" --no-write --stdin \
  <"$dir/roots" >/dev/null 2>"$dir/poison.err" || { cat "$dir/poison.err" >&2; exit 1; }
read -r warm_s warm_cpu < <(awk '{ print $1, $2 + $3 }' "$dir/warmup.time")
: >"$dir/poison.times"
: >"$dir/poison.rss"
for _ in $(seq "$repeat"); do
  /usr/bin/time -v -o "$dir/poison.tv" "$dir/poison" rewrite --lock "$dir/poison.lock" --no-write --stdin \
    <"$dir/roots" >"$dir/poison.out" 2>"$dir/poison.err" || { cat "$dir/poison.err" "$dir/poison.tv" >&2; exit 1; }
  # wall and CPU (user + system) seconds of this run
  awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + p[i] }
    /User time/ { u = $2 } /System time/ { s = $2 } END { print w, u + s }' "$dir/poison.tv" >>"$dir/poison.times"
  awk -F': ' '/Maximum resident set size/ { print $2 }' "$dir/poison.tv" >>"$dir/poison.rss"
done
read -r poison_s poison_cpu < <(best <"$dir/poison.times")
poison_med=$(median <"$dir/poison.times")
poison_rss_kb=$(sort -n "$dir/poison.rss" | tail -1)

# (b) the floor
read -r _ files _ bytes _ floor_seq _ floor_par _ workers _ floor_seq_cpu _ floor_par_cpu < <("$dir/graphgen" floor -rounds "$repeat" <"$dir/roots")

# (c) nix-instantiate --readonly-mode with the attribute added
: >"$dir/nix.times"
for _ in $(seq "$repeat"); do
  /usr/bin/time -f "%e %U %S" -o "$dir/nix.time" nix-instantiate --readonly-mode "$graph" --arg poison "{ $victim = 1; }" \
    >"$dir/nix.out" 2>"$dir/nix.err" || { cat "$dir/nix.err" >&2; exit 1; }
  awk '{ print $1, $2 + $3 }' "$dir/nix.time" >>"$dir/nix.times"
done
read -r nix_s nix_cpu < <(best <"$dir/nix.times")
nix_med=$(median <"$dir/nix.times")
# How much of (c) is parsing the expression and building the attribute set
# (no derivation evaluated): a generated expression is far cheaper per
# derivation than nixpkgs, so this share flatters nothing.
/usr/bin/time -f "%e %U %S" -o "$dir/parse.time" nix-instantiate --eval --readonly-mode \
  -E "builtins.length (builtins.attrNames (import $graph {}))" >/dev/null 2>"$dir/parse.err" || { cat "$dir/parse.err" >&2; exit 1; }
read -r parse_s parse_cpu < <(awk '{ print $1, $2 + $3 }' "$dir/parse.time")

# Correctness of (a) against (c).
sed 's/!.*//' "$dir/nix.out" >"$dir/nix.paths"
changed=$(paste -d' ' "$dir/roots" "$dir/nix.paths" | awk '$1 != $2' | wc -l)
if ! cmp -s "$dir/poison.out" "$dir/nix.paths"; then
  wrong=$(paste -d' ' "$dir/poison.out" "$dir/nix.paths" | awk '$1 != $2' | wc -l)
  echo "bench: MISMATCH: poison rewrite and nix-instantiate differ on $wrong of $nodes paths (see $dir/poison.out, $dir/nix.paths)" >&2
  status=1
else
  echo "bench: poison rewrite output equals nix-instantiate's ($changed of $nodes .drv paths changed)"
  status=0
fi

awk -v files="$files" -v bytes="$bytes" -v inst="$(cut -d' ' -f1 "$dir/inst.time")" \
  -v p="$poison_s" -v pc="$poison_cpu" -v rss="$poison_rss_kb" -v pm="$poison_med" -v xm="$nix_med" -v runs="$repeat" \
  -v fs="$floor_seq" -v fp="$floor_par" -v fsc="$floor_seq_cpu" -v fpc="$floor_par_cpu" -v w="$workers" \
  -v warm="$warm_s" -v warmc="$warm_cpu" -v x="$nix_s" -v xc="$nix_cpu" -v parse="$parse_s" -v parsec="$parse_cpu" \
  -v load="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
  printf "closure            %d derivations, %.1f MB, %.1f KB average\n", files, bytes / 1e6, bytes / files / 1024
  printf "nix-instantiate    %.2f s wall (writing the clean closure)\n", inst
  printf "                   wall s   cpu s (user+sys)\n"
  printf "(a) poison rewrite %7.3f %7.3f  peak RSS %.0f MB (--no-write --stdin)\n", p, pc, rss / 1024
  printf "    untimed first  %7.3f %7.3f  (the run before them, not counted)\n", warm, warmc
  printf "(b) floor, %d cores %7.3f %7.3f  (read + sha256 twice, in-process)\n", w, fp, fpc
  printf "(b) floor, 1 core  %7.3f %7.3f\n", fs, fsc
  printf "(c) nix readonly   %7.3f %7.3f  (nix-instantiate --readonly-mode with the attribute)\n", x, xc
  printf "    of which parse %7.3f %7.3f  (parse the expression, list the attributes)\n", parse, parsec
  printf "poison/floor       wall %.2f (1-core floor %.2f)  cpu %.2f  target <= 2\n", p / fp, p / fs, pc / fpc
  printf "nix/poison         wall %.1f  cpu %.1f  (without parsing: wall %.1f)  target >= 3\n", x / p, xc / pc, (x - parse) / p
  printf "medians of %d runs  poison %.3f s, nix %.3f s: poison/floor %.2f (1-core floor %.2f), nix/poison %.1f (wall; the lines above take the best run)\n", runs, pm, xm, pm / fp, pm / fs, xm / pm
  printf "peak RSS           %.0f MB  target <= 300\n", rss / 1024
  printf "load average       %s (2 shared cores: wall times are noisy when it is high)\n", load
}'
exit $status
