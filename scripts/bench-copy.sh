#!/usr/bin/env bash
# Benchmark of `poison copy` against `nix copy` (issue 12): copy a closure
# of N paths (testdata/copy/closure.nix: text files, every tenth 256 KiB,
# the others 1-8 KiB; 2,000 paths are 60 MB) from this machine's store to
# an EMPTY ssh-ng store, both tools in the same run, alternating which goes
# first. The ssh-ng store is a real OpenSSH server on 127.0.0.1 whose key
# runs `nix-daemon --stdio --store local?root=DIR`, DIR fresh for each copy.
#
#   poison   poison copy --to ssh-ng://root@127.0.0.1 ROOT
#   nix      nix copy    --to ssh-ng://root@127.0.0.1 ROOT
#
# Both check signatures (the paths are content-addressed) and log in with
# the same NIX_SSHOPTS. Each copy is checked: the destination then holds
# the whole closure.
#
# After each copy the destination is removed and the file system synced,
# so that no copy pays for writing back or deleting the one before.
#
# Usage: [ROUNDS=R] scripts/bench-copy.sh [N]     (defaults: 9 rounds, 2000)
# Needs root (the chroot stores), OpenSSH and Nix. Prints seconds per copy,
# paths/s, MB/s, the load, and the median throughput ratio poison/nix.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
rounds=${ROUNDS:-9}
export NIX_CONFIG="substituters ="
unset NIX_REMOTE
tmp=$(mktemp -d)
sshd_pid=
cleanup() {
	[ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/poison" ./cmd/poison

root=$(nix-instantiate --eval --read-write-mode testdata/copy/closure.nix --arg n "$n" --argstr seed "bench-$(date +%s%N)" | tr -d '"')
count=$(nix-store --query --requisites "$root" | wc -l)
bytes=$(nix-store --query --requisites "$root" | xargs nix-store --query --size | paste -sd+ | bc)
echo "closure: $count paths, $bytes NAR bytes, root $root"

# sshd on a free port, its key forced to serve the store named in $tmp/store.
ssh-keygen -q -t ed25519 -N '' -f "$tmp/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$tmp/client_key"
cat >"$tmp/serve" <<EOF
#!/bin/sh
exec nix-daemon --stdio --store "local?root=\$(cat $tmp/store)"
EOF
chmod +x "$tmp/serve"
echo "command=\"$tmp/serve\",restrict $(cat "$tmp/client_key.pub")" >"$tmp/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p /run/sshd
cat >"$tmp/sshd_config" <<EOF
ListenAddress 127.0.0.1:$port
HostKey $tmp/host_key
PidFile $tmp/sshd.pid
AuthorizedKeysFile $tmp/authorized_keys
AllowUsers $(id -un)
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
EOF
/usr/sbin/sshd -D -e -f "$tmp/sshd_config" 2>"$tmp/sshd.log" &
sshd_pid=$!
echo "[127.0.0.1]:$port $(cat "$tmp/host_key.pub")" >"$tmp/known_hosts"
export NIX_SSHOPTS="-F /dev/null -p $port -i $tmp/client_key -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=$tmp/known_hosts -o StrictHostKeyChecking=yes -o LogLevel=ERROR"
for _ in $(seq 50); do
	ssh $NIX_SSHOPTS "$(id -un)@127.0.0.1" true </dev/null 2>/dev/null && break
	sleep 0.1
done
uri="ssh-ng://$(id -un)@127.0.0.1"

one() { # tool → seconds of one copy into a fresh empty store
	dst=$(mktemp -d "$tmp/store.XXXXXX")
	echo "$dst" >"$tmp/store"
	start=$(date +%s.%N)
	case $1 in
	poison) "$tmp/poison" copy --to "$uri" "$root" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; } ;;
	nix) nix --extra-experimental-features nix-command copy --to "$uri" "$root" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; } ;;
	esac
	end=$(date +%s.%N)
	got=$(nix-store --store "local?root=$dst" --query --requisites "$root" | wc -l)
	[ "$got" = "$count" ] || { echo "$1: destination holds $got of $count paths" >&2; exit 1; }
	rm -rf "$dst"
	sync
	echo "$end - $start" | bc
}

echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$tmp/poison.times"
: >"$tmp/nix.times"
for r in $(seq "$rounds"); do
	if [ $((r % 2)) = 1 ]; then order="poison nix"; else order="nix poison"; fi
	for tool in $order; do
		s=$(one "$tool")
		echo "$s" >>"$tmp/$tool.times"
		printf 'round %d %-6s %6.2f s  %7.0f paths/s  %6.1f MB/s  load %s\n' "$r" "$tool" "$s" "$(echo "$count / $s" | bc -l)" "$(echo "$bytes / $s / 1000000" | bc -l)" "$(cut -d' ' -f1 /proc/loadavg)"
	done
done
median() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
p=$(median "$tmp/poison.times")
x=$(median "$tmp/nix.times")
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'median: poison %.2f s, nix copy %.2f s; throughput poison/nix = %.2fx\n' "$p" "$x" "$(echo "$x / $p" | bc -l)"
