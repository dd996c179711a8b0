#!/usr/bin/env bash
# `make run`: bring up what exists of the pipeline on this machine and keep it up until Ctrl-C.
#
# Today that is the TimescaleDB cluster (migrated, with a demo tenant and system) and the moto server standing in
# for S3, SQS and DynamoDB, holding template.yaml's bucket (with its notifications), queues and tables. The API
# twin, the queue poller and the functions arrive with later issues.
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
# moto accepts any credentials; boto3 refuses to sign without some.
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
resources=$(.venv/bin/python -m sluice.local.resources --endpoint-url "http://localhost:$moto_port" \
  --stack-name "${SLUICE_STACK_NAME:-sluice-local}")
resource() { sed -n "s/^$1=//p" <<<"$resources"; }

system_id=$(bash infra/db.sh psql -qtA -v ON_ERROR_STOP=1 -v tenant="$demo_tenant" -v name="$demo_system" <<'SQL'
INSERT INTO systems (tenant_id, name) VALUES (:'tenant', :'name') ON CONFLICT (tenant_id, name) DO NOTHING;
SELECT id FROM systems WHERE tenant_id = :'tenant' AND name = :'name';
SQL
)

cat <<BANNER

Sluice is running (database and local AWS; no functions served yet).
  TimescaleDB   postgresql://postgres@127.0.0.1:5433/sluice
                psql -h 127.0.0.1 -p 5433 -U postgres -d sluice
  moto server   http://127.0.0.1:$moto_port  (S3, SQS, DynamoDB), with template.yaml's resources:
    bucket      $(resource BatchBucket)
    queue       $(resource IngestQueue)
    dead letters $(resource IngestDeadLetterQueue)
    tables      $(resource JobsTable), $(resource RateLimitTable), $(resource IdempotencyTable)
  a drop        aws --endpoint-url http://localhost:$moto_port s3 cp tests/data/drops/sample.csv \
                    s3://$(resource BatchBucket)/drops/$demo_tenant/sample.csv
                (its S3 event waits on the queue: the poller that feeds the worker comes with the local-runtime issue)
  demo system   tenant '$demo_tenant', system '$demo_system' = $system_id

Not yet here: the HTTP API on :3000 and the queue poller that invokes the worker (the local-runtime issue).
Press Ctrl-C to stop what this command started.
BANNER

while true; do
  sleep 1 &
  wait $!
done
