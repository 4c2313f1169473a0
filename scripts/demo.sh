#!/usr/bin/env bash
# demo.sh: the whole story on a fresh machine. Builds a small graph
# (zlib <- openssl <- curl <- app, zlib <- docs <- app), files a registry
# entry poisoning openssl, resolves the registry into poison.lock and runs
# `poison build`: openssl, curl and app rebuild, zlib and docs do not.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
POISON_SETUP_MODERN_NIX=0 ./scripts/setup.sh >/dev/null
export NIX_CONFIG="substituters =
${NIX_CONFIG:-}"

work=$(mktemp -d /tmp/poison-demo-XXXXXX)
go build -o "$work/poison" ./cmd/poison
poison() { "$work/poison" "$@"; }
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# The builders run as nixbld users: the log must be writable by them. Its
# path is part of every derivation, so each demo run builds a fresh graph.
chmod 755 "$work"
log=$work/builds.log
: > "$log" && chmod 666 "$log"
graph=$repo/testdata/demo/graph.nix
inst() { nix-instantiate "$graph" --argstr log "$log" "$@" 2>/dev/null; }

step "Build the graph once, as usual (nothing of it may be cached yet)"
app=$(inst -A app)
nix-store --realise "$app" 2>/dev/null | sed 's/^/  /' 
echo "builders that ran:"; sed 's/^/  /' "$log"; : > "$log"

step "Create a registry and file an entry: openssl was built on a faulty board"
poison init "$work/registry"
openssl=$(inst -A openssl)
entry=$(poison add --registry "$work/registry" --author "Jane Doe <jane@example.com>" \
  --ticket HW-1234 --reason "openssl built on board rev B (FPU erratum HW-1234)" "$openssl")
sed 's/^/  /' "$entry"
git -C "$work/registry" add -A
git -C "$work/registry" -c user.name=demo -c user.email=demo@example.com commit -qm "poison openssl (HW-1234)"
poison lint --registry "$work/registry"

step "poison resolve: fetch the registry, pin its commit, write poison.lock"
cd "$work"
poison resolve --registry "file://$work/registry" --lock poison.lock --nix poison.nix
cat poison.lock

step "poison build --dry-run: what will rebuild, and why"
poison build --dry-run "$app"

step "poison build: only the poisoned node and its dependents rebuild"
new=$(poison build --print-out-paths "$app")
echo "new app output: $new"
echo "builders that ran:"; sed 's/^/  /' "$log"
if grep -q zlib "$log" || grep -q docs "$log"; then echo "unexpected rebuild" >&2; exit 1; fi

step "Nix agrees: the graph with POISON_SERIAL = \"1\" added to openssl by hand"
nixdrv=$(inst -A app --arg poison '{ "openssl-3.0.13" = 1; }')
ours=$(poison rewrite --no-write "$app")
echo "  poison rewrite:   $ours"
echo "  nix-instantiate:  $nixdrv"
[ "$ours" = "$nixdrv" ] && echo "  identical" || { echo "  DIFFERENT" >&2; exit 1; }
echo
echo "demo files are in $work"
