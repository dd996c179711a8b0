#!/usr/bin/env bash
# The project's own PostgreSQL + TimescaleDB cluster: data under .local/pg, listening on 127.0.0.1:5433.
#
#   infra/db.sh start    install TimescaleDB if missing, create the cluster and database if missing, start it
#   infra/db.sh stop     stop the cluster (a no-op when it is not running)
#   infra/db.sh status   say whether it runs, and where
#   infra/db.sh psql     open psql on the sluice database (extra arguments go to psql)
#
# SLUICE_DB_PORT and SLUICE_DB_HOME (default .local/pg) give a second, separate cluster: `make reliability` kills
# and restarts its own (port 5434, .local/pg-faults) so that a test run on the usual one is never disturbed.
#
# PostgreSQL refuses to run as root, so when this runs as root the cluster belongs to the `postgres` system user.
# That user may be unable to enter the checkout (a clone under root's 0700 home): then the data lives under /var/tmp
# and .local/pg is a symlink to it. Whatever PostgreSQL is handed (data directory, socket directory, log file, the
# paths in postgresql.conf) is the symlink's resolved target, never a path through the checkout.
# Settings favour a developer's machine: trust auth on loopback only, fsync off (never do this in production).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pg_major=${SLUICE_PG_MAJOR:-15}
bin=/usr/lib/postgresql/$pg_major/bin
port=${SLUICE_DB_PORT:-5433}
db=${SLUICE_DB_NAME:-sluice}
local_dir=$root/.local
pg_home=${SLUICE_DB_HOME:-$local_dir/pg}
[[ $pg_home = /* ]] || pg_home=$PWD/$pg_home

# The cluster's paths with every symlink resolved (.local/pg may point to /var/tmp, see prepare_home): what the
# cluster's owner can reach. Set again once prepare_home has made pg_home.
set_paths() {
  home=$pg_home
  if [ -e "$pg_home" ]; then home=$(readlink -f "$pg_home"); fi
  data=$home/data
  sock=$home/run
  logfile=$home/postgres.log
}
set_paths

log() { printf '[db] %s\n' "$*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
  owner=postgres
  # From /, so that PostgreSQL's tools never start in a directory they cannot enter (the checkout, say).
  as_owner() { (cd / && runuser -u "$owner" -- "$@"); }
else
  owner=$(id -un)
  as_owner() { "$@"; }
fi

running() { [ -f "$data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

# The cluster's owner must reach .local/pg. When the checkout sits under a directory that user cannot enter
# (a root-only home, say), keep the data in /var/tmp and leave a symlink, so the cluster is still the project's.
prepare_home() {
  mkdir -p "$local_dir"
  if [ -L "$pg_home" ] && [ ! -e "$pg_home" ]; then
    # The data under /var/tmp is gone (a tmp cleaner, a reboot): start again where the symlink points.
    local target
    target=$(readlink "$pg_home")
    mkdir -p "$target"
    chown "$owner" "$target"
    log "$target was gone; a new cluster is created there"
  fi
  [ -e "$pg_home" ] && return 0
  mkdir -p "$pg_home"
  if [ "$owner" != "$(id -un)" ]; then
    chown "$owner" "$pg_home"
    if ! as_owner test -w "$pg_home"; then
      rmdir "$pg_home"
      local elsewhere
      local seed=$root
      [ "$pg_home" = "$local_dir/pg" ] || seed=$pg_home  # the usual cluster keeps the place it always had
      elsewhere=/var/tmp/sluice-pg-$(printf '%s' "$seed" | sha1sum | cut -c1-12)
      mkdir -p "$elsewhere"
      chown "$owner" "$elsewhere"
      ln -s "$elsewhere" "$pg_home"
      log "$owner cannot reach $pg_home: the cluster data lives in $elsewhere, and $pg_home links to it"
    fi
  fi
}

init_cluster() {
  [ -f "$data/PG_VERSION" ] && return 0
  log "creating cluster in $data"
  as_owner mkdir -p "$data" "$sock"
  as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$home/initdb.log"
  cat >>"$data/postgresql.conf" <<CONF
# --- sluice local settings ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sock'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 100
# A throwaway developer cluster: durability traded for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
}

start() {
  bash "$root/infra/install-timescaledb.sh"
  prepare_home
  set_paths
  init_cluster
  if running; then
    log "already running on 127.0.0.1:$port"
  elif "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
    log "port $port is taken by a PostgreSQL server that is not this checkout's (another checkout's cluster?)."
    log "Stop it, or use another port: SLUICE_DB_PORT=5434 and SLUICE_DB_DSN=postgresql://postgres@127.0.0.1:5434/$db"
    exit 1
  else
    as_owner "$bin/pg_ctl" -D "$data" -l "$logfile" -w -t 60 start >/dev/null \
      || { tail -n 20 "$logfile" >&2; exit 1; }
    log "started on 127.0.0.1:$port (log: $logfile)"
  fi
  if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc "select 1 from pg_database where datname = '$db'" | grep -q 1; then
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db"
    log "created database $db"
  fi
}

stop() {
  if running; then
    as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    log "stopped"
  else
    log "not running"
  fi
}

# Does SLUICE_DB_DSN name this checkout's cluster (127.0.0.1 or localhost on $port)? Unset, it does (the default).
# Both DSN spellings are read: postgresql://user@host:port/db and "host=... port=...".
owns_dsn() {
  local dsn=${SLUICE_DB_DSN:-} host="" dsn_port=5432
  [ -z "$dsn" ] && return 0
  if [[ $dsn =~ ^postgres(ql)?://([^@/]*@)?([^:/?]*)(:([0-9]+))?([/?]|$) ]]; then
    host=${BASH_REMATCH[3]}
    dsn_port=${BASH_REMATCH[5]:-5432}
  else
    [[ $dsn =~ (^|[[:space:]])host=([^[:space:]]*) ]] && host=${BASH_REMATCH[2]}
    [[ $dsn =~ (^|[[:space:]])port=([0-9]+) ]] && dsn_port=${BASH_REMATCH[2]}
  fi
  [[ $host = 127.0.0.1 || $host = localhost ]] && [ "$dsn_port" = "$port" ]
}

# Start the cluster when SLUICE_DB_DSN names it; leave a server of the user's own alone (make test, make run).
ensure() {
  if owns_dsn; then
    start
  else
    log "SLUICE_DB_DSN names a server other than this checkout's cluster (127.0.0.1:$port): using it, starting none"
  fi
}

status() {
  if running; then
    echo "running: postgresql://postgres@127.0.0.1:$port/$db (data: $data)"
  else
    echo "stopped (data: $data)"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  ensure) ensure ;;
  owns-dsn) owns_dsn ;;
  stop) stop ;;
  status) status ;;
  psql) shift; exec "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@" ;;
  *) echo "usage: $0 start|ensure|owns-dsn|stop|status|psql [args]" >&2; exit 2 ;;
esac
