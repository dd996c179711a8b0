#!/usr/bin/env bash
# `make run`: the whole pipeline on this machine until Ctrl-C.
#
# Starts the project's TimescaleDB cluster (migrated) and the moto server standing in for S3, SQS, DynamoDB and
# Secrets Manager, then `sluice serve`: template.yaml's resources, the demo tenant's system, the HTTP API twin on
# :3000, the poller feeding LoadWorkerFunction and the schedules (tools/sluice_tools/local/).
# Only what this script started is stopped on exit: a database or moto server that was already running stays up.
#
# Settings (environment): SLUICE_HTTP_PORT (3000), MOTO_PORT (4566), SLUICE_STACK_NAME (sluice-local),
# SLUICE_LOCAL_VISIBILITY_TIMEOUT (the template's; set a few seconds to watch retries and the DLQ quickly),
# SLUICE_LOCAL_ENV_VARS (a sam-style env vars file whose values replace the template's, as `sluice serve --env-vars`).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
moto_port=${MOTO_PORT:-4566}
export MOTO_PORT=$moto_port

started_db=0
started_moto=0
# A SLUICE_DB_DSN naming a server of the user's own is used as it is; only the project's cluster is started here.
if bash infra/db.sh owns-dsn; then bash infra/db.sh status >/dev/null 2>&1 || started_db=1; fi
bash infra/moto.sh status >/dev/null 2>&1 || started_moto=1

cleanup() {
  trap - EXIT INT TERM
  [ "$started_moto" = 1 ] && bash infra/moto.sh stop || true
  [ "$started_db" = 1 ] && bash infra/db.sh stop || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash infra/db.sh ensure
.venv/bin/sluice-migrate up
bash infra/moto.sh start

serve=(.venv/bin/sluice serve --endpoint-url "http://127.0.0.1:$moto_port" --port "${SLUICE_HTTP_PORT:-3000}"
  --stack-name "${SLUICE_STACK_NAME:-sluice-local}")
[ -n "${SLUICE_LOCAL_VISIBILITY_TIMEOUT:-}" ] && serve+=(--visibility-timeout "$SLUICE_LOCAL_VISIBILITY_TIMEOUT")
[ -n "${SLUICE_LOCAL_ENV_VARS:-}" ] && serve+=(--env-vars "$SLUICE_LOCAL_ENV_VARS")
# Not exec: this shell stays to stop the database and moto once the twin has stopped. Ctrl-C (or a TERM) is passed
# on to `sluice serve`, which stops its part (HTTP API, pollers, function environments) before this script goes on.
"${serve[@]}" &
serve_pid=$!
trap 'kill -INT "$serve_pid" 2>/dev/null || true' INT TERM
status=0
while kill -0 "$serve_pid" 2>/dev/null; do
  wait "$serve_pid" && status=0 || status=$?
done
exit "$status"
