#!/usr/bin/env bash
# `make run`: bring up what exists of the pipeline on this machine and keep it up until Ctrl-C.
#
# Today that is the TimescaleDB cluster (migrated, with a demo tenant and system) and the moto server standing in
# for S3, SQS and DynamoDB. The API twin, the queue poller and the functions arrive with later issues.
# Only what this script started is stopped on exit: a database that was already running stays up.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
moto_port=${MOTO_PORT:-4566}
demo_tenant=${SLUICE_DEMO_TENANT:-demo}
demo_system=${SLUICE_DEMO_SYSTEM:-demo-press-1}

started_db=0
started_moto=0
bash infra/db.sh status >/dev/null 2>&1 || started_db=1
bash infra/moto.sh status >/dev/null 2>&1 || started_moto=1

cleanup() {
  trap - EXIT INT TERM
  echo
  [ "$started_moto" = 1 ] && bash infra/moto.sh stop || true
  [ "$started_db" = 1 ] && bash infra/db.sh stop || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

bash infra/db.sh start
.venv/bin/sluice-migrate up
bash infra/moto.sh start

system_id=$(bash infra/db.sh psql -qtA -v ON_ERROR_STOP=1 -v tenant="$demo_tenant" -v name="$demo_system" <<'SQL'
INSERT INTO systems (tenant_id, name) VALUES (:'tenant', :'name') ON CONFLICT (tenant_id, name) DO NOTHING;
SELECT id FROM systems WHERE tenant_id = :'tenant' AND name = :'name';
SQL
)

cat <<BANNER

Sluice is running (foundation only).
  TimescaleDB   postgresql://postgres@127.0.0.1:5433/sluice
                psql -h 127.0.0.1 -p 5433 -U postgres -d sluice
  moto server   http://127.0.0.1:$moto_port  (S3, SQS, DynamoDB)
  demo system   tenant '$demo_tenant', system '$demo_system' = $system_id

Not yet here: the HTTP API on :3000, the queue poller and the functions (later issues).
Press Ctrl-C to stop what this command started.
BANNER

while true; do
  sleep 1 &
  wait $!
done
