#!/usr/bin/env bash
# hostile.sh: run `poison resolve` against hostile servers and hostile
# registries, and print the wall time and peak RSS (/usr/bin/time) of each
# case, so the bounds are figures, not hopes.
#
#   scripts/hostile.sh [ENTRIES]     (default 2000: the served registry)
#
# Network cases (servers on 127.0.0.1, from resolver/internal/regtest):
# a healthy git daemon and git http-backend (the baseline), a pack of a few
# MB holding a 2 GiB all-zero blob served by git daemon, a pack whose blob
# header says 16 bytes over 1 GiB of zeros, an HTTP server
# that sends headers and then nothing, one that hangs up mid-pack, a TCP
# listener that never answers (git:// and ssh://), a port whose connection
# attempts hang, and an --offline resolve of a URL while an online one of
# the same URL and project hangs on that URL's stalled server.
# Timeouts are the defaults (30 s) unless HOSTILE_TIMEOUT=DURATION.
#
# Registry cases (crafted git trees, read in place: zip-bomb pack, ./..
# and .git entries, duplicate trees, objects whose header understates
# their size (a loose object and a packed one holding 1 GiB of zeros under
# a header of 16 bytes, a delta inserting more than it declares), a
# 1,000,000-entry registry) come from the tree side's generator,
# internal/hostile/cmd/hostilerepo.
# HOSTILE_MANY=N changes the size of the large registry (default 1000000),
# HOSTILE_BOMB=BYTES the zero blob (default 2 GiB).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
timeout=${HOSTILE_TIMEOUT:-}
many=${HOSTILE_MANY:-1000000}
tmp=$(mktemp -d)
daemon=
cleanup() {
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null
  [ -n "${SRV_PID:-}" ] && kill "$SRV_PID" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=hostile GIT_AUTHOR_EMAIL=hostile@example.com
export GIT_COMMITTER_NAME=hostile GIT_COMMITTER_EMAIL=hostile@example.com
export POISON_CACHE_DIR=$tmp/cache SSH_AUTH_SOCK=
unset POISON_REGISTRY POISON_LOCK POISON_NIX POISON_TRUSTED_KEYS POISON_OFFLINE POISON_SSH_KEY
[ -n "$timeout" ] && export POISON_STALL_TIMEOUT=$timeout POISON_CONNECT_TIMEOUT=$timeout
mkdir -p "$tmp/home/.ssh"
[ -x /usr/bin/time ] || { echo "hostile.sh: /usr/bin/time is missing (apt-get install time; scripts/setup.sh does)" >&2; exit 1; }

go build -o "$tmp/poison" ./cmd/poison
go build -o "$tmp/hostileserve" ./resolver/internal/regtest/cmd/hostileserve
ssh-keygen -q -t ed25519 -N '' -f "$tmp/key"

echo "generating a $n-entry registry..." >&2
go run ./registry/internal/gen/genregistry "$tmp/work" "$n" >/dev/null
git -C "$tmp/work" init -q -b main
git -C "$tmp/work" add -A
git -C "$tmp/work" commit -q -m "$n entries"
mkdir "$tmp/srv"
git clone -q --bare "$tmp/work" "$tmp/srv/reg.git"

# a zip-bomb served over the network: a ${HOSTILE_BOMB:-2 GiB} all-zero
# blob under entries/ in a pack of a few MB (the tree side's generator)
echo "generating the zip-bomb registry..." >&2
go build -o "$tmp/hostilerepo" ./internal/hostile/cmd/hostilerepo
"$tmp/hostilerepo" "zipbomb${HOSTILE_BOMB:+=$HOSTILE_BOMB}" "$tmp/srv/bomb.git" >/dev/null
# a blob whose header says 16 bytes and whose data holds 1 GiB of zeros:
# git daemon serves it as it is
"$tmp/hostilerepo" packlie "$tmp/srv/lie.git" >/dev/null

# git daemon on a free port
for attempt in 1 2 3 4 5; do
  port=$(( 20000 + RANDOM % 40000 ))
  git daemon --export-all --reuseaddr --base-path="$tmp/srv" --listen=127.0.0.1 --port=$port "$tmp/srv" 2>/dev/null &
  daemon=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break 2; sleep 0.1; done
  kill $daemon 2>/dev/null || true; daemon=
done
[ -n "$daemon" ] || { echo "hostile.sh: git daemon did not start" >&2; exit 1; }

# the hostile servers; their addresses come on stdout, mode switches go in
coproc SRV { "$tmp/hostileserve" "$tmp/srv"; }
while read -r line <&"${SRV[0]}"; do
  case $line in READY=1) break ;; *=*) declare "$line" ;; esac
done
switch() { echo "$1" >&"${SRV[1]}"; read -r ack <&"${SRV[0]}"; [ "$ack" = OK ]; }

rows=()
# run NAME EXPECT DIR ARGS...: time `poison ARGS` in DIR, record a row.
run() {
  local name=$1 expect=$2 dir=$3; shift 3
  mkdir -p "$dir"
  local rc=0
  (cd "$dir" && HOME=$tmp/home /usr/bin/time -f '%M %e' -o "$tmp/time" "$tmp/poison" "$@" >"$tmp/out" 2>"$tmp/err") || rc=$?
  record "$name" "$expect" "$rc"
}
record() {
  local name=$1 expect=$2 rc=$3 rss wall msg
  read -r rss wall < <(tail -1 "$tmp/time")
  msg=$(grep -m1 '^poison: error:' "$tmp/err" | cut -c16-110 || true)
  [ -n "$msg" ] || msg=$(head -1 "$tmp/out" | cut -c1-95)
  rows+=("$(printf '%-34s %-8s %4s %8s %9s  %s' "$name" "$expect" "$rc" "$wall" "$((rss / 1024))" "$msg")")
}
skip() { rows+=("$(printf '%-34s %-8s %4s %8s %9s  %s' "$1" "-" "-" "-" "-" "skipped: $2")"); }

echo "running the network cases..." >&2
run "git daemon (baseline)" ok "$tmp/p1" resolve --registry "git://127.0.0.1:$port/reg.git"
run "git http-backend (baseline)" ok "$tmp/p2" resolve --registry "$GOOD_HTTP/reg.git"
run "http: headers, then silence" fail "$tmp/p3" resolve --registry "$STALL_HTTP/reg.git"
run "http: closes mid-pack" fail "$tmp/p4" resolve --registry "$CUT_HTTP/reg.git"
run "git://: listener never answers" fail "$tmp/p5" resolve --registry "git://$SILENT/reg.git"
run "ssh://: listener never answers" fail "$tmp/p6" resolve --registry "ssh://git@$SILENT/reg.git" --ssh-key "$tmp/key"
run "http: connect hangs" fail "$tmp/p7" resolve --registry "http://$UNREACHABLE/reg.git"
run "git daemon: zip-bomb pack" fail "$tmp/p9" resolve --registry "git://127.0.0.1:$port/bomb.git"
run "git daemon: lying object header" fail "$tmp/p10" resolve --registry "git://127.0.0.1:$port/lie.git"

# the same URL and project: fetched once, then the server stalls; an
# online resolve hangs on it while an offline one runs beside it
url="$SWITCH_HTTP/reg.git"
run "switch: healthy first fetch" ok "$tmp/p8" resolve --registry "$url"
switch stall
{
  rc=0
  (cd "$tmp/p8" && HOME=$tmp/home /usr/bin/time -f '%M %e' -o "$tmp/time.bg" "$tmp/poison" resolve --registry "$url" >"$tmp/out.bg" 2>"$tmp/err.bg") || rc=$?
  echo $rc >"$tmp/rc.bg"
} &
bg=$!
sleep 1
run "--offline beside the stalled fetch" ok "$tmp/p8" resolve --registry "$url" --offline
wait $bg || true
cp "$tmp/time.bg" "$tmp/time"; cp "$tmp/out.bg" "$tmp/out"; cp "$tmp/err.bg" "$tmp/err"
record "online fetch of the stalled URL" fail "$(cat "$tmp/rc.bg")"
switch good

echo "running the registry cases..." >&2
# read in place (a bare repository given as a directory): the tree side
ln -s "$tmp/srv/bomb.git" "$tmp/repo-zipbomb" # made above
for kind in zipbomb dot dotdot dotgit duplicate looselie packlie deltalie "many=$many"; do
  expect=fail; [ "${kind%%=*}" = many ] && expect=ok
  if [ "$kind" != zipbomb ] && ! "$tmp/hostilerepo" "$kind" "$tmp/repo-${kind%%=*}" >/dev/null 2>"$tmp/gen.err"; then
    skip "registry: $kind" "generator failed: $(head -1 "$tmp/gen.err")"
    continue
  fi
  run "registry: $kind" "$expect" "$tmp/r-${kind%%=*}" resolve --registry "$tmp/repo-${kind%%=*}"
done

printf '\n%-34s %-8s %4s %8s %9s  %s\n' "case" "expect" "exit" "wall s" "peak MiB" "first line"
printf '%s\n' "${rows[@]}"
echo
echo "timeouts: connect ${POISON_CONNECT_TIMEOUT:-30s (default)}, stall ${POISON_STALL_TIMEOUT:-30s (default)}; served registry: $n entries"
