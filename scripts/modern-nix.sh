#!/bin/bash
# modern-nix.sh [DIR]: run Debian trixie's Nix (nix-bin 2.26) beside the system Nix
# without installing it. Everything lives under DIR (default /tmp/modern-nix):
#   DIR/apt    private apt sources, lists, cache and status (system apt untouched)
#   DIR/root   nix-bin plus its shared-library closure, unpacked with dpkg -x
#   DIR/etc    nix.conf used by the wrappers
#   DIR/store  chroot store (logical store dir stays /nix/store)
#   DIR/bin    wrappers nix, nix-instantiate, nix-store, ... (printed on success)
# Binaries run through trixie's own ld.so; --argv0 selects the Nix personality.
# The wrappers pin the chroot store: as root, Nix 2.26 opens /nix/var/nix/db
# read-write even under --readonly-mode and would migrate an older Nix's database.
#
# From the team's design notes (tools/modern-nix.sh); in the repo so that CI
# (scripts/setup.sh) can run it. Changes: a clear message on failure, a lock
# on DIR, checks of the tools and keyring it needs. Idempotent: once DIR/root
# is complete nothing is downloaded again; the wrappers are rewritten.
# A cold run downloads about 37 MB (trixie's package lists and 59 .debs) and
# takes 17-25 s on a 2-core machine; DIR then holds about 120 MB plus the store.
set -euo pipefail
trap 'echo "modern-nix.sh: failed at line $LINENO: $BASH_COMMAND (rerun to retry; DIR/root is used only once complete)" >&2' ERR
die() { echo "modern-nix.sh: $*" >&2; exit 1; }
DIR=${1:-/tmp/modern-nix}
for c in apt-get apt-cache dpkg flock; do
  command -v "$c" >/dev/null 2>&1 || die "needs $c (a Debian system)"
done
mkdir -p "$DIR" || die "cannot create $DIR"
DIR=$(cd "$DIR" && pwd)
ROOT=$DIR/root A=$DIR/apt ARCH=$(dpkg --print-architecture)
# One run at a time per DIR (setup.sh and a developer may both run it).
exec 9>"$DIR/.lock"
flock 9

if [ ! -e "$ROOT/.complete" ]; then
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -r "$keyring" ] || die "no $keyring to verify trixie's archive (apt-get install debian-archive-keyring)"
  mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/debs"
  : > "$A/status"
  # the same Debian mirror the system uses, trixie instead of the system's release
  mirror=$(sed -n 's/^URIs: *\([^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null)
  [ -n "$mirror" ] || die "no Debian mirror found in the apt sources (/etc/apt/sources.list.d/*.sources, /etc/apt/sources.list)"
  echo "deb [signed-by=$keyring] $mirror trixie main" > "$A/sources.list"
  APT=(-o Dir::Etc::SourceList="$A/sources.list" -o Dir::Etc::SourceParts=/dev/null
       -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
       -o Dir::State::Lists="$A/lists" -o Dir::State::Status="$A/status"
       -o Dir::Cache="$A/cache" -o APT::Architecture="$ARCH" -o APT::Architectures="$ARCH"
       -o APT::Sandbox::User="$(id -un)")
  apt-get "${APT[@]}" -qq update || die "apt-get update of trixie from $mirror failed"
  # nix-bin and the recursive closure of its library dependencies; the perl,
  # curl and xz tools it also depends on are not needed to evaluate or build.
  libs=$(apt-cache "${APT[@]}" depends nix-bin |
         awk '$1 == "Depends:" && $2 ~ /^lib/ && $2 !~ /-perl$/ {print $2}')
  [ -n "$libs" ] || die "trixie's nix-bin lists no library dependencies (is nix-bin in trixie main on $mirror?)"
  pkgs=$(apt-cache "${APT[@]}" depends --recurse --no-recommends --no-suggests \
           --no-conflicts --no-breaks --no-replaces --no-enhances $libs |
         grep -E '^(lib|zlib)' | sort -u)
  (cd "$A/debs" && rm -f ./*.deb && apt-get "${APT[@]}" -qq download nix-bin $pkgs) ||
    die "apt-get download of nix-bin and its libraries from $mirror failed"
  rm -rf "$ROOT"
  for d in "$A"/debs/*.deb; do dpkg -x "$d" "$ROOT"; done
  touch "$ROOT/.complete"
fi

LDSO=("$ROOT"/usr/lib/*-linux-gnu*/ld-linux*.so.[0-9])
[ ${#LDSO[@]} = 1 ] && [ -x "${LDSO[0]}" ] || die "no single ld.so under $ROOT/usr/lib (remove $ROOT to unpack again)"
LDSO=${LDSO[0]}
LIB=$(dirname "$LDSO")
# Every library must come from DIR/root, never from the host.
if "$LDSO" --library-path "$LIB" --list "$ROOT/usr/bin/nix" |
     grep -E '=>' | grep -v -F "=> $ROOT/"; then
  die "libraries above resolve outside $ROOT"
fi

mkdir -p "$DIR/etc" "$DIR/bin" "$DIR/store"
cat > "$DIR/etc/nix.conf" <<EOF
store = $DIR/store
sandbox = false
substituters =
build-users-group =
build-hook = $DIR/bin/nix __build-remote
experimental-features = ca-derivations impure-derivations nix-command
EOF
for p in "$ROOT"/usr/bin/nix*; do
  p=$(basename "$p")
  cat > "$DIR/bin/$p" <<EOF
#!/bin/sh
# trixie Nix as '$p' with its own libraries and configuration (see modern-nix.sh)
unset NIX_CONFIG NIX_REMOTE NIX_STORE_DIR NIX_STATE_DIR NIX_LOG_DIR NIX_DATA_DIR
export NIX_CONF_DIR="$DIR/etc" NIX_USER_CONF_FILES=/dev/null NIX_BIN_DIR="$DIR/bin" XDG_CACHE_HOME="$DIR/cache"
exec "$LDSO" --library-path "$LIB" --argv0 "$p" "$ROOT/usr/bin/nix" "\$@"
EOF
  chmod +x "$DIR/bin/$p"
done
"$DIR/bin/nix-instantiate" --version >/dev/null || die "$DIR/bin/nix-instantiate does not run (remove $ROOT/.complete to unpack again)"
echo "$DIR/bin"
