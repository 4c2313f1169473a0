#!/usr/bin/env bash
# setup.sh: make this Debian machine ready to build and test poison.
# Installs nix-bin and git when missing, downloads Go modules, and starts a
# nix-daemon by hand (there is no systemd here). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nix-instantiate >/dev/null 2>&1 || need_apt+=(nix-bin)
command -v git >/dev/null 2>&1 || need_apt+=(git)
[ -x /usr/bin/time ] || need_apt+=(time)   # peak RSS in the benchmarks
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)   # ssh-ng tests run their own sshd
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)   # ssh, ssh-keygen
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  # Start no services while installing (openssh-server would start a system
  # sshd on port 22): the tests start what they need, bound to 127.0.0.1.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 0755 "$policy"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  [ -z "$policy" ] || rm -f "$policy"
fi

if ! command -v go >/dev/null 2>&1; then
  [ -x /usr/local/go/bin/go ] && export PATH=/usr/local/go/bin:$PATH
fi
go mod download

# A nix-daemon listening on the default socket. Debian's Nix points at a
# public binary cache this network cannot reach: keep substitution off.
sock=/nix/var/nix/daemon-socket/socket
if [ "$(id -u)" = 0 ]; then
  if ! grep -q '^substituters *= *$' /etc/nix/nix.conf 2>/dev/null; then
    printf '\n# poison setup: no network to a binary cache here\nsubstituters =\n' >> /etc/nix/nix.conf
  fi
  if ! pgrep -x nix-daemon >/dev/null 2>&1; then
    rm -f "$sock"
    mkdir -p /nix/var/log
    nohup nix-daemon >/nix/var/log/poison-nix-daemon.log 2>&1 &
    for _ in $(seq 1 50); do [ -S "$sock" ] && break; sleep 0.1; done
  fi
  [ -S "$sock" ] || { echo "setup: nix-daemon did not start (see /nix/var/log/poison-nix-daemon.log)" >&2; exit 1; }
fi
# Nix 2.26 (Debian trixie's nix-bin) beside the system Nix, for the tests
# against a modern Nix: unpacked by scripts/modern-nix.sh into a private
# directory with its own chroot store (no system change; ~37 MB the first
# time, nothing after). scripts/test.sh sets POISON_MODERN_NIX to its bin.
# POISON_SETUP_MODERN_NIX=0 skips it (the demo does not need it).
if [ "${POISON_SETUP_MODERN_NIX:-1}" != 0 ]; then
  modern=${POISON_MODERN_NIX_DIR:-/var/cache/poison-modern-nix}
  ./scripts/modern-nix.sh "$modern" >/dev/null
  echo "setup: $("$modern/bin/nix-instantiate" --version) in $modern"
fi
echo "setup: $(nix-instantiate --version), $(go version | cut -d' ' -f3), daemon socket $sock"
