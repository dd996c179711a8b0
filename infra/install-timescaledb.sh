#!/usr/bin/env bash
# Install the TimescaleDB extension into the system's PostgreSQL 15 when it is missing.
#
# TimescaleDB is not packaged for Debian bookworm, but its source package is in trixie. We fetch that source
# with a private apt configuration (the system's sources, lists and cache stay untouched), build the
# Apache-licensed part against PostgreSQL 15 and install it into PostgreSQL's extension directories.
# Safe to run twice: it does nothing when the extension is already installed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pg_major=${SLUICE_PG_MAJOR:-15}
pg_config=/usr/lib/postgresql/$pg_major/bin/pg_config
work=$root/.local/timescaledb-build
suite=${SLUICE_TIMESCALEDB_SUITE:-trixie}

log() { printf '[timescaledb] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root (or sudo) for: $*"; exit 1
  fi
}

missing_debs() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || printf '%s ' "$pkg"
  done
}

installed() {
  [ -x "$pg_config" ] && [ -f "$("$pg_config" --sharedir)/extension/timescaledb.control" ]
}

if installed; then
  log "already installed: $(grep default_version "$("$pg_config" --sharedir)/extension/timescaledb.control")"
  exit 0
fi

need=$(missing_debs "postgresql-$pg_major" "postgresql-server-dev-$pg_major" cmake build-essential dpkg-dev libssl-dev)
if [ -n "$need" ]; then
  log "installing Debian packages: $need"
  as_root apt-get update -qq
  # shellcheck disable=SC2086  # $need is a word list on purpose
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi

# The URIs of the system's own Debian mirror, read from its deb822 sources file.
sources_file=/etc/apt/sources.list.d/debian.sources
if [ -f "$sources_file" ]; then
  uri=$(awk '/^URIs:/ {print $2; exit}' "$sources_file")
else
  uri=$(awk '$1 == "deb" && $2 !~ /^\[/ {print $2; exit}' /etc/apt/sources.list)
fi
[ -n "${uri:-}" ] || { log "cannot find the Debian mirror in $sources_file or /etc/apt/sources.list"; exit 1; }

rm -rf "$work"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
printf 'deb-src %s %s main\n' "$uri" "$suite" >"$work/sources.list"
apt_private=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=/dev/null
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)

log "fetching the timescaledb source package from $uri $suite"
apt-get "${apt_private[@]}" -qq update
(cd "$work/src" && apt-get "${apt_private[@]}" -qq source --download-only timescaledb)
dsc=$(ls "$work"/src/timescaledb_*.dsc)
(cd "$work/src" && dpkg-source --no-check -x "$dsc" tree >/dev/null)

log "building $(basename "$dsc" .dsc) (Apache-licensed part) against PostgreSQL $pg_major"
cd "$work/src/tree"
./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
  -DPG_CONFIG="$pg_config" >"$work/bootstrap.log" 2>&1 || { tail -n 30 "$work/bootstrap.log"; exit 1; }
make -C build -j"$(nproc)" >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log"; exit 1; }
as_root make -C build install >"$work/install.log" 2>&1 || { tail -n 30 "$work/install.log"; exit 1; }

installed || { log "build finished but timescaledb.control is not in $("$pg_config" --sharedir)/extension"; exit 1; }
log "installed"
