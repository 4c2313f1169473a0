#!/usr/bin/env bash
# vendor-hash.sh: print the vendorHash of nix/package.nix for the
# committed tree (HEAD), computed as buildGoModule does ('go mod vendor',
# then the NAR sha256 of the vendor directory), offline from the Go module
# cache. The Go toolchain here must be the one nixpkgs builds with, or
# vendor/modules.txt may differ; on a mismatch Nix prints the right hash.
#
#   nix/vendor-hash.sh           print the hash
#   nix/vendor-hash.sh --check   exit 1 unless flake.nix holds it (for CI)
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive HEAD | tar -x -C "$tmp"
(cd "$tmp" && GOFLAGS=-mod=mod GOPROXY=off go mod vendor)
if [ ! -d "$tmp/vendor" ]; then
  hash=null
else
  hex=$(nix-hash --type sha256 "$tmp/vendor")
  hash="sha256-$(printf '%s' "$hex" | xxd -r -p | base64 -w0)"
fi
if [ "$hash" = null ]; then want="vendorHash = null;"; else want="vendorHash = \"$hash\";"; fi
if [ "${1:-}" = --check ]; then
  if ! grep -qF "$want" flake.nix; then
    echo "vendor-hash: flake.nix: vendorHash is stale, want '$want'; run nix/vendor-hash.sh and update flake.nix" >&2
    exit 1
  fi
  exit 0
fi
echo "$hash"
