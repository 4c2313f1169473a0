#!/bin/sh
# Figures of poison's own dispatch (--per-derivation --builders), on test
# hosts of this machine (internal/fleettest: a real sshd each, a chroot
# store each, sandbox on; needs root, Nix and OpenSSH):
#
#   spread    64 independent derivations that sleep 1 s each, built on
#             1 machine x 4 slots, then on 2 machines x 4 slots (target:
#             the second takes at most 0.6x the time of the first)
#   overhead  N trivial derivations (default 1000) on 1 machine x 4 slots:
#             Nix's own remote builds (poison's default mode through a
#             private nix-daemon with builders = the machine and max-jobs
#             = 0) against poison --per-derivation --builders, same run
#             (target: poison takes at most 1.2x Nix's time)
#
# Usage: scripts/bench-dispatch.sh [spread|overhead|all] [N]
set -eu
cd "$(dirname "$0")/.."
export NIX_CONFIG="substituters =
require-sigs = false
fsync-metadata = false"
which=${1:-all}
export POISON_BENCH_DISPATCH_N=${2:-1000}
case $which in
spread) pat='BenchmarkDispatchSpread$' ;;
overhead) pat='BenchmarkDispatchOverhead$' ;;
all) pat='BenchmarkDispatch(Spread|Overhead)$' ;;
*) echo "usage: $0 [spread|overhead|all] [N]" >&2; exit 2 ;;
esac
go test ./cmd/poison -run '^$' -bench "$pat" -benchtime 1x -count 1 -timeout 60m |
	grep -E '^(dispatch|Benchmark|ok|FAIL|---)'
