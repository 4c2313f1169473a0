#!/usr/bin/env bash
# vendor-hash.sh: print the vendorHash of nix/package.nix for the
# committed tree (HEAD), computed as buildGoModule does ('go mod vendor',
# then the NAR sha256 of the vendor directory), offline from the Go module
# cache. The Go toolchain here must be the one nixpkgs builds with, or
# vendor/modules.txt may differ; on a mismatch Nix prints the right hash.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive HEAD | tar -x -C "$tmp"
(cd "$tmp" && GOFLAGS=-mod=mod GOPROXY=off go mod vendor)
if [ ! -d "$tmp/vendor" ]; then
  echo "null # no dependencies to vendor"
  exit 0
fi
hex=$(nix-hash --type sha256 "$tmp/vendor")
echo "sha256-$(printf '%s' "$hex" | xxd -r -p | base64 -w0)"
