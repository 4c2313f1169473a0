#!/usr/bin/env bash
# bench-resolve.sh: time `poison resolve` on a generated registry served by
# a local git daemon, next to plain git clone / git fetch of the same
# repository (the floor), in one run.
#
#   scripts/bench-resolve.sh [ENTRIES]      (default 100000)
#
# Targets (issue 4): cold resolve <= 10 s, warm resolve (no new commit)
# <= 1 s, resolve after one new commit <= 1.5 s.
set -euo pipefail
cd "$(dirname "$0")/.."
# BENCH_DIR=DIR keeps the generated registry in DIR and reuses it next time.
n=${1:-100000}
keep=${BENCH_DIR:-}
tmp=${keep:-$(mktemp -d)}
mkdir -p "$tmp"
daemon=
cleanup() { [ -n "$daemon" ] && kill "$daemon" 2>/dev/null; [ -n "$keep" ] || rm -rf "$tmp"; }
trap cleanup EXIT
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com

# POISON_BIN: use this poison binary instead of building one.
if [ -n "${POISON_BIN:-}" ]; then cp "$POISON_BIN" "$tmp/poison"; else go build -o "$tmp/poison" ./cmd/poison; fi
rm -rf "$tmp/cache" "$tmp/floor.git" "$tmp/poison.lock"
if [ ! -d "$tmp/srv/reg.git" ]; then
  echo "generating a $n-entry registry..." >&2
  rm -rf "$tmp/work" "$tmp/srv"
  go run ./registry/internal/gen/genregistry "$tmp/work" "$n"
  git -C "$tmp/work" init -q -b main
  git -C "$tmp/work" add -A
  git -C "$tmp/work" commit -q -m "$n entries"
  mkdir "$tmp/srv"
  git clone -q --bare "$tmp/work" "$tmp/srv/reg.git"
  git -C "$tmp/srv/reg.git" gc -q
fi

for attempt in 1 2 3 4 5; do
  port=$(( 20000 + RANDOM % 40000 ))
  git daemon --export-all --reuseaddr --base-path="$tmp/srv" --listen=127.0.0.1 --port="$port" "$tmp/srv" 2>"$tmp/daemon.log" &
  daemon=$!
  for _ in $(seq 50); do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then break 2; fi
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.1
  done
  kill "$daemon" 2>/dev/null || true; daemon=
done
[ -n "$daemon" ] || { echo "git daemon did not start" >&2; exit 1; }
url=git://127.0.0.1:$port/reg.git

# timeit LABEL CMD...: prints LABEL, wall-clock seconds, CPU seconds
# (user+sys: on a loaded machine the fairer figure) and peak RSS
# (/usr/bin/time).
[ -x /usr/bin/time ] || { echo "bench-resolve.sh: /usr/bin/time is missing (apt-get install time; scripts/setup.sh does)" >&2; exit 1; }
timeit() {
  if ! /usr/bin/time -f '%e %U %S %M' -o "$tmp/time" "${@:2}" >/dev/null 2>"$tmp/err"; then
    cat "$tmp/err" "$tmp/time" >&2
    exit 1
  fi
  read -r real user sys rss < <(tail -1 "$tmp/time")
  printf '%-40s %7.2f s wall  %7.2f s cpu  %5d MiB peak\n' "$1" "$real" "$(echo "$user + $sys" | bc)" "$((rss / 1024))"
}
export POISON_CACHE_DIR=$tmp/cache
resolve=("$tmp/poison" resolve --registry "$url" --lock "$tmp/poison.lock") # /usr/bin/time runs no shell function
newcommit() {
  local i=$1-$RANDOM
  mkdir -p "$tmp/work/entries/2026/12"
  cat > "$tmp/work/entries/2026/12/bench-$i.toml" <<TOML
reason = "bench incident $i"
author = "Bench <bench@example.com>"
date = 2026-11-20

[[derivation]]
path = "/nix/store/$(printf '%032d' "$RANDOM")-bench-$i.drv"
TOML
  git -C "$tmp/work" add -A
  git -C "$tmp/work" commit -q -m "bench $i"
  git -C "$tmp/work" push -q "$tmp/srv/reg.git" main
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo "registry: $n entries, $(du -sh "$tmp/srv/reg.git" | cut -f1) packed, served at $url"
timeit "floor: git clone --bare (cold)"          git clone -q --bare "$url" "$tmp/floor.git"
timeit "poison resolve (cold)"                   "${resolve[@]}"
timeit "floor: git fetch (nothing new)"          git -C "$tmp/floor.git" fetch -q "$url" "+refs/heads/*:refs/heads/*"
timeit "poison resolve (warm, nothing new)"      "${resolve[@]}"
newcommit 1
timeit "floor: git fetch (one new commit)"       git -C "$tmp/floor.git" fetch -q "$url" "+refs/heads/*:refs/heads/*"
timeit "poison resolve (one new commit)"         "${resolve[@]}"
timeit "poison resolve --offline"                "$tmp/poison" resolve --offline --registry "$url" --lock "$tmp/poison.lock"
grep -q "bench-" "$tmp/poison.lock" && echo "lock: $(wc -c < "$tmp/poison.lock") bytes, new entry present"
