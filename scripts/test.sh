#!/usr/bin/env bash
# test.sh: set up this machine (scripts/setup.sh) and run the whole test
# suite against the real Nix. Tests that need Nix fail, never skip, here.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export POISON_REQUIRE_NIX=1
export NIX_CONFIG="substituters =
${NIX_CONFIG:-}"
go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted" >&2; exit 1; fi
go test -count=1 -timeout 20m "$@" ./...
