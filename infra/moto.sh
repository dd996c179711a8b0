#!/usr/bin/env bash
# A moto server standing in for S3, SQS, DynamoDB and Secrets Manager (the local database secret) on 127.0.0.1:4566
# (MOTO_PORT to change it).
#
#   infra/moto.sh start    start it in the background (a no-op when it already answers)
#   infra/moto.sh stop     stop the one this script started
#   infra/moto.sh status   say whether it answers
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
host=127.0.0.1
port=${MOTO_PORT:-4566}
state=$root/.local/moto
pidfile=$state/moto-$port.pid
logfile=$state/moto-$port.log
server=$root/.venv/bin/moto_server

log() { printf '[moto] %s\n' "$*" >&2; }

answers() { curl -fsS -o /dev/null "http://$host:$port/moto-api/" 2>/dev/null; }

start() {
  if answers; then
    log "already running on http://$host:$port"
    return 0
  fi
  [ -x "$server" ] || { log "$server is missing: run 'make venv' first"; exit 1; }
  mkdir -p "$state"
  nohup "$server" -H "$host" -p "$port" >"$logfile" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    if answers; then
      log "started on http://$host:$port (pid $(cat "$pidfile"), log: $logfile)"
      return 0
    fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || break
    sleep 0.1
  done
  log "moto server did not come up on $host:$port"
  tail -n 20 "$logfile" >&2 || true
  exit 1
}

stop() {
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$pidfile"
    log "stopped"
  else
    rm -f "$pidfile"
    log "not running"
  fi
}

status() {
  if answers; then echo "running: http://$host:$port"; else echo "stopped"; return 3; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
