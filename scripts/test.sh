#!/usr/bin/env bash
# test.sh: set up this machine (scripts/setup.sh) and run the whole test
# suite against the real Nix. Tests that need Nix fail, never skip, here.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export POISON_REQUIRE_NIX=1
# Nix 2.26 as setup.sh unpacked it (scripts/modern-nix.sh): the tests against
# a modern Nix run, and fail if it is missing.
export POISON_MODERN_NIX=${POISON_MODERN_NIX_DIR:-/var/cache/poison-modern-nix}/bin
export NIX_CONFIG="substituters =
${NIX_CONFIG:-}"
go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted" >&2; exit 1; fi
go test -count=1 -timeout 20m "$@" ./...
