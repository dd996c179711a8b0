"""End to end through `make run`'s stack: infra/run.sh started by the test session on free ports, with its own
database, driven by real clients: HTTP for the API, the AWS CLI for drops, psycopg for what landed.

The tests run in file order against one stack; the last one stops it the way Ctrl-C does and checks that
everything it started has gone.
"""

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sluice.adapters.outbox import enqueue
from sluice.domain.webhooks import Announcement, new_secret
from sluice_tools.local.template import load_template

from ..paths import REPO_ROOT
from ..stack_harness import SENSOR, SYSTEM, RunningStack, eventually, finished_job, http, now_text, running_stack, token
from ..webhook_receiver import WebhookReceiver

STACK = "sluice-e2e"

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def stack(server_dsn: str) -> Iterator[RunningStack]:
    with running_stack(server_dsn, STACK) as running:
        yield running


def test_make_run_gets_ready_and_prints_what_a_newcomer_needs(stack: RunningStack) -> None:
    output = stack.output()
    names = stack.names()
    assert f"HTTP API      {stack.api}" in output
    assert names.ref("BatchBucket") in output
    assert f"= {SYSTEM}" in output
    assert ".venv/bin/sluice token --tenant demo" in output
    assert "s3 cp tests/data/drops/sample.csv" in output
    health = http("GET", f"{stack.api}/health")
    assert (health.status, health.body["status"]) == (200, "ok")


def test_the_twin_authorizes_before_any_function_runs(stack: RunningStack) -> None:
    no_token = http("GET", f"{stack.api}/api/v1/jobs")
    wrong_scope = http("GET", f"{stack.api}/api/v1/jobs", token(stack, scope="ingest:write"))
    forged = http("GET", f"{stack.api}/api/v1/jobs", token(stack) + "x")
    unknown = http("GET", f"{stack.api}/api/v1/nothing-here", token(stack))

    assert (no_token.status, no_token.body) == (401, {"message": "Unauthorized"})
    assert "www-authenticate" in no_token.headers
    assert (wrong_scope.status, wrong_scope.body) == (403, {"message": "Forbidden"})
    assert forged.status == 401
    assert (unknown.status, unknown.body) == (404, {"message": "Not Found"})
    served = [line for line in stack.lines if line.startswith("GET /api/v1/jobs ->")]
    assert served
    assert all("-> twin 40" in line for line in served)  # answered by the twin, no function invoked


def test_a_batch_lands_with_exact_counts_and_a_review_replays_its_quarantined_reading(stack: RunningStack) -> None:
    bearer = token(stack)
    readings = [
        {"sensor_id": SENSOR, "timestamp": now_text(-n), "value": 200.0 + n, "unit": "bar", "quality": 95}
        for n in range(1, 9)
    ]
    readings.append({"sensor_id": SENSOR, "timestamp": now_text(-20), "value": 812.5, "unit": "bar", "quality": 95})
    readings.append({"sensor_id": SENSOR, "timestamp": now_text(-21), "value": 10.0, "unit": "psi", "quality": 95})

    accepted = http("POST", f"{stack.api}/api/v1/data/ingest", bearer, {"system_id": SYSTEM, "readings": readings})

    assert accepted.status == 202, accepted.body
    job_id = accepted.body["job_id"]
    assert accepted.body["status_url"] == f"{stack.api}/api/v1/jobs/{job_id}"
    job = finished_job(stack, bearer, job_id)
    assert job["status"] == "completed", job
    assert (job["total_readings"], job["inserted_readings"], job["quarantined_readings"]) == (10, 8, 2)

    listed = http("GET", f"{stack.api}/api/v1/quarantine?job_id={job_id}", bearer)
    assert listed.status == 200
    reasons = {item["reason"]: item for item in listed.body["items"]}
    assert set(reasons) == {"out_of_range", "invalid_unit"}

    row_id = reasons["out_of_range"]["id"]
    fix = {"action": "fix", "value": 212.5, "notes": "gauge misread"}
    reviewed = http("POST", f"{stack.api}/api/v1/quarantine/{row_id}/review", bearer, fix)

    assert reviewed.status == 200, reviewed.body
    with psycopg.connect(stack.dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM readings WHERE job_id = %s", (job_id,)).fetchone()
        replayed = conn.execute("SELECT value FROM readings WHERE job_id = %s AND value = 212.5", (job_id,)).fetchone()
    assert stored == (9,)
    assert replayed == (212.5,)
    after = http("GET", f"{stack.api}/api/v1/jobs/{job_id}", bearer).body
    assert (after["reviewed_readings"], after["replayed_readings"]) == (1, 1)


def test_a_system_registered_with_its_id_through_the_api_takes_its_devices_readings(stack: RunningStack) -> None:
    # Given a device that sends its own system id, unknown so far: its first batch is quarantined as system_not_found
    bearer = token(stack)
    device_system = str(uuid.uuid4())
    sensor = str(uuid.uuid4())

    def batch(offsets: range) -> dict[str, Any]:
        readings = [
            {"sensor_id": sensor, "timestamp": now_text(-n), "value": 100.0 + n, "unit": "bar", "quality": 95}
            for n in offsets
        ]
        return {"system_id": device_system, "readings": readings}

    early = http("POST", f"{stack.api}/api/v1/data/ingest", bearer, batch(range(30, 32)))
    assert early.status == 202, early.body
    assert finished_job(stack, bearer, early.body["job_id"])["quarantined_readings"] == 2

    # When the tenant registers that id through the API (twice: a retry after a timeout), then the device sends more
    registered = http("POST", f"{stack.api}/api/v1/systems", bearer, {"name": "press-e2e", "id": device_system})
    again = http("POST", f"{stack.api}/api/v1/systems", bearer, {"name": "press-e2e", "id": device_system})
    later = batch(range(1, 4))
    accepted = http("POST", f"{stack.api}/api/v1/data/ingest", bearer, later)
    assert accepted.status == 202, accepted.body
    done = finished_job(stack, bearer, accepted.body["job_id"])

    # Then the registration was made once, the new batch lands, and the early readings can be approved into readings
    assert (registered.status, again.status) == (201, 200), (registered.body, again.body)
    assert registered.body["id"] == again.body["id"] == device_system
    assert registered.body["pending_quarantine"] == 2
    assert (done["status"], done["inserted_readings"], done["quarantined_readings"]) == ("completed", 3, 0), done
    rows = http("GET", f"{stack.api}/api/v1/quarantine?job_id={early.body['job_id']}", bearer).body["items"]
    assert {row["reason"] for row in rows} == {"system_not_found"}
    approved = http(
        "POST", f"{stack.api}/api/v1/quarantine/review", bearer, {"action": "approve", "ids": [r["id"] for r in rows]}
    )
    assert (approved.status, approved.body["reviewed"]) == (200, 2), approved.body
    shown = http("GET", f"{stack.api}/api/v1/systems/{device_system}", bearer)
    assert shown.status == 200, shown.body
    assert (shown.body["readings_24h"], shown.body["pending_quarantine"]) == (5, 0)
    assert shown.body["last_reading_at"] == later["readings"][0]["timestamp"]
    with psycopg.connect(stack.dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM readings WHERE system_id = %s", (device_system,)).fetchone()
    assert stored == (5,)
    # Another tenant neither sees the system nor can take its id
    other = token(stack, tenant="e2e-other")
    assert http("GET", f"{stack.api}/api/v1/systems/{device_system}", other).status == 404
    taken = http("POST", f"{stack.api}/api/v1/systems", other, {"name": "mine", "id": device_system})
    assert (taken.status, taken.body["error"]["code"]) == (409, "system_id_taken")


def test_sluice_systems_import_registers_a_csv_through_the_api_idempotently(
    stack: RunningStack, tmp_path: Path
) -> None:
    # Given a CSV of three systems, one of whose ids is the demo system's under another name, and a row that is no id
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    csv_file = tmp_path / "systems.csv"
    csv_file.write_text(
        f'id,name\n{first},import-press-1\n{second},"import press 2, hall B"\n,import-pump-3\n'
        f"{SYSTEM},not-press-17\nnot-a-uuid,import-press-5\n",
        encoding="utf-8",
    )

    # When it is imported twice, with the local stack's token
    imported = stack.sluice("systems", "import", str(csv_file), "--api", stack.api)
    again = stack.sluice("systems", "import", str(csv_file), "--api", stack.api)

    # Then each row says what became of it, the second run creates nothing, and both exit 1 for the bad rows
    assert imported.returncode == 1, imported.stderr
    outcomes = [line.split()[:3] for line in imported.stdout.splitlines()[:-1]]
    assert [outcome[:3] for outcome in outcomes] == [
        ["line", "2:", "created"],
        ["line", "3:", "created"],
        ["line", "4:", "created"],
        ["line", "5:", "system_id_taken"],
        ["line", "6:", "invalid"],
    ]
    assert imported.stdout.splitlines()[-1] == "5 row(s): 3 created, 1 invalid, 1 system_id_taken"
    assert again.returncode == 1
    assert again.stdout.splitlines()[-1] == "5 row(s): 3 exists, 1 invalid, 1 system_id_taken"
    with psycopg.connect(stack.dsn) as conn:
        registered = conn.execute(
            "SELECT id::text, name FROM systems WHERE tenant_id = 'demo' AND name LIKE 'import%%' ORDER BY name"
        ).fetchall()
    assert [name for _, name in registered] == ["import press 2, hall B", "import-press-1", "import-pump-3"]
    assert {first, second} <= {system_id for system_id, _ in registered}


def test_sluice_systems_add_with_a_taken_id_is_an_error_not_another_id(stack: RunningStack) -> None:
    taken = stack.sluice("systems", "add", "--tenant", "e2e-other", "--name", "press-17", "--id", SYSTEM)
    chosen = str(uuid.uuid4())
    added = stack.sluice("systems", "add", "--tenant", "e2e-other", "--name", "press-x", "--id", chosen)

    assert taken.returncode == 1
    assert f"system_id_taken: system id {SYSTEM} is registered already" in taken.stderr
    assert taken.stdout == ""
    assert (added.returncode, added.stdout.strip()) == (0, chosen)


def test_a_drop_through_the_aws_cli_becomes_a_completed_job(stack: RunningStack, tmp_path: Path) -> None:
    bearer = token(stack)
    rows = [f"{SYSTEM},{SENSOR},{now_text(-100 - n)},{150 + n},bar,96" for n in range(50)]
    rows.append(f"{SYSTEM},{SENSOR},{now_text(-200)},9000,bar,96")  # out of range
    drop = tmp_path / "press-17 export.csv.gz"
    drop.write_bytes(gzip.compress(("system_id,sensor_id,timestamp,value,unit,quality\n" + "\n".join(rows)).encode()))
    bucket = stack.names().ref("BatchBucket")

    copied = stack.aws("s3", "cp", str(drop), f"s3://{bucket}/drops/demo/")

    assert copied.returncode == 0, copied.stderr

    def drop_job() -> dict[str, Any] | None:
        listing = http("GET", f"{stack.api}/api/v1/jobs?source=drop", bearer).body
        done = [job for job in listing["items"] if job["status"] in {"completed", "failed"}]
        return done[0] if done else None

    job = eventually(drop_job, what="the drop's job")
    assert job["status"] == "completed", job
    assert (job["total_readings"], job["inserted_readings"], job["quarantined_readings"]) == (51, 50, 1)


UPLOAD_SENSOR = "9e4f5061-7283-4d94-be05-c6d7e8f90a1b"  # its readings repeat no other test's


def curl_form(form: dict[str, Any], path: Path) -> subprocess.CompletedProcess[str]:
    """POST a file with an upload form as the docs say to: ``curl -F`` for each field, then the file."""
    fields = [argument for name, value in form["fields"].items() for argument in ("--form-string", f"{name}={value}")]
    return subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *fields, "-F", f"file=@{path}", form["url"]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ingest_queue_idle(stack: RunningStack) -> bool:
    """Nothing waiting on IngestQueue and nothing in flight."""
    attributes = stack.sqs().get_queue_attributes(
        QueueUrl=stack.names().ref("IngestQueue"),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(value == "0" for value in attributes.values())


def test_an_upload_of_a_100k_row_csv_gz_posted_with_curl_completes_its_own_job_exactly_once(
    stack: RunningStack, tmp_path: Path
) -> None:
    bearer = token(stack)
    start = time.time() - 3 * 86_400
    rows = [
        f"{SYSTEM},{UPLOAD_SENSOR},{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(start + n))},{100 + n % 50},bar,96"
        for n in range(100_000)
    ]
    rows[-1] = rows[-1].replace(",bar,", ",psi,")  # one reading quarantined: the counts must say so
    path = tmp_path / "press-17 history.csv.gz"
    path.write_bytes(gzip.compress(("system_id,sensor_id,timestamp,value,unit,quality\n" + "\n".join(rows)).encode()))
    size = path.stat().st_size

    created = http("POST", f"{stack.api}/api/v1/uploads", bearer, {"filename": path.name, "size": size})

    assert created.status == 201, created.body
    job_id = created.body["job_id"]
    assert created.body["upload"]["url"] == f"{stack.moto}/{stack.names().ref('BatchBucket')}"
    waiting = http("GET", f"{stack.api}/api/v1/jobs?status=awaiting_upload&source=upload", bearer).body
    assert job_id in [item["job_id"] for item in waiting["items"]]
    posted = curl_form(created.body["upload"], path)
    assert (posted.returncode, posted.stdout) == (0, "204"), posted.stderr

    def finished() -> dict[str, Any] | None:
        found: dict[str, Any] = http("GET", f"{stack.api}/api/v1/jobs/{job_id}", bearer).body
        return found if found["status"] in {"completed", "failed"} else None

    job = eventually(finished, timeout_s=180, what="the upload's job")
    assert job["status"] == "completed", job
    assert (job["total_readings"], job["inserted_readings"], job["quarantined_readings"]) == (100_000, 99_999, 1)
    assert (job["source"], job["filename"], job["size"]) == ("upload", path.name, size)

    # The same form POSTed again (a second version of the key) and the first S3 event delivered again: the
    # second version is not loaded and the completed job stays as it was.
    again = curl_form(created.body["upload"], path)
    assert again.stdout == "204", again.stderr
    key = created.body["upload"]["fields"]["key"]
    first = stack.s3().list_object_versions(Bucket=stack.names().ref("BatchBucket"), Prefix=key)["Versions"][-1]
    duplicate = {
        "Records": [
            {
                "eventName": "ObjectCreated:Post",
                "s3": {
                    "bucket": {"name": stack.names().ref("BatchBucket")},
                    "object": {"key": key, "size": size, "eTag": first["ETag"].strip('"')},
                },
            }
        ]
    }
    stack.sqs().send_message(QueueUrl=stack.names().ref("IngestQueue"), MessageBody=json.dumps(duplicate))
    eventually(lambda: True if ingest_queue_idle(stack) else None, what="IngestQueue to drain")
    time.sleep(1)
    after = http("GET", f"{stack.api}/api/v1/jobs/{job_id}", bearer).body
    assert after == job
    with psycopg.connect(stack.dsn) as conn:
        counted = conn.execute("SELECT count(*) FROM readings WHERE job_id = %s", (job_id,)).fetchone()
    assert counted == (99_999,)


def test_an_upload_never_made_is_failed_by_maintenance_after_its_form_expired(stack: RunningStack) -> None:
    bearer = token(stack)
    created = http("POST", f"{stack.api}/api/v1/uploads", bearer, {"filename": "never.ndjson", "size": 10})
    job_id = created.body["job_id"]
    expired = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 3600))
    stack.dynamodb().update_item(  # as if its form had expired an hour ago
        TableName=stack.names().ref("JobsTable"),
        Key={"job_id": {"S": job_id}},
        UpdateExpression="SET created_at = :at, upload_expires_at = :at",
        ExpressionAttributeValues={":at": {"S": expired}},
    )

    invoked = stack.invoke("MaintenanceFunction", "maintenance-schedule.json")

    assert invoked.returncode == 0, invoked.stderr
    assert job_id in json.loads(invoked.stdout)["uploads"]["failed_jobs"]
    job = http("GET", f"{stack.api}/api/v1/jobs/{job_id}", bearer).body
    assert job["status"] == "failed"
    assert job["error_message"].startswith("No file was uploaded before the upload form expired at ")


def test_a_file_that_fails_five_times_is_parked_in_the_dlq_and_its_job_failed(stack: RunningStack) -> None:
    # A database that refuses this tenant's loads, as an operator's half-applied change might: every attempt fails.
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO systems (tenant_id, name) VALUES ('e2e-refused', 'press-9')")
        conn.execute(
            """CREATE FUNCTION refuse_load() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'loads of tenant % are refused', NEW.tenant_id; END $$"""
        )
        conn.execute(
            "CREATE TRIGGER refuse_load BEFORE INSERT ON ingest_ledger FOR EACH ROW"
            " WHEN (NEW.tenant_id = 'e2e-refused') EXECUTE FUNCTION refuse_load()"
        )
    names = stack.names()
    sqs = stack.sqs()
    bucket = names.ref("BatchBucket")
    try:
        stack.s3().put_object(
            Bucket=bucket,
            Key="drops/e2e-refused/refused.csv",
            Body=f"system_id,sensor_id,timestamp,value,unit,quality\n"
            f"{SYSTEM},{SENSOR},{now_text()},100,bar,99\n".encode(),
        )

        def parked() -> list[Any] | None:
            answer = sqs.receive_message(QueueUrl=names.ref("IngestDeadLetterQueue"), WaitTimeSeconds=1)
            return answer.get("Messages") or None

        messages = eventually(parked, timeout_s=90, what="the message in the dead-letter queue")
    finally:
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse_load ON ingest_ledger")
            conn.execute("DROP FUNCTION refuse_load()")

    assert "drops%2Fe2e-refused%2Frefused.csv" in messages[0]["Body"]  # S3 events URL-encode keys
    jobs = http("GET", f"{stack.api}/api/v1/jobs", token(stack, tenant="e2e-refused")).body["items"]
    assert [job["status"] for job in jobs] == ["failed"]
    assert "could not be loaded after 5 attempts" in jobs[0]["error_message"]
    assert "dead-letter queue" in jobs[0]["error_message"]
    assert re.search(r"Quote error id [0-9a-f]{16} to support\.$", jobs[0]["error_message"])
    assert "are refused" not in jobs[0]["error_message"]  # the database's error is in the worker's log only
    attempts = [line for line in stack.lines if line.startswith("LoadWorkerFunction <-") and "returned" in line]
    assert len(attempts) >= 5


def test_an_object_put_straight_under_incoming_is_not_loaded_and_makes_no_job(stack: RunningStack) -> None:
    # Given a batch written into the bucket with S3 credentials, around the API (no job record)
    forged_job = str(uuid.uuid4())
    key = f"incoming/demo/{time.strftime('%Y/%m/%d', time.gmtime())}/{forged_job}.json"
    reading = {"sensor_id": SENSOR, "timestamp": now_text(-40), "value": 1.0, "unit": "bar", "quality": 95}
    body = json.dumps({"system_id": SYSTEM, "readings": [reading]}).encode()
    stack.s3().put_object(Bucket=stack.names().ref("BatchBucket"), Key=key, Body=body)
    queue = stack.names().ref("IngestQueue")

    def drained() -> bool | None:
        attributes = stack.sqs().get_queue_attributes(
            QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return True if set(attributes.values()) == {"0"} else None

    # When the worker has taken its S3 event off IngestQueue
    eventually(drained, what="IngestQueue drained")

    # Then no job exists for it and nothing of it was stored
    assert http("GET", f"{stack.api}/api/v1/jobs/{forged_job}", token(stack)).status == 404
    with psycopg.connect(stack.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM readings WHERE job_id = %s", (forged_job,)).fetchone() == (0,)


EVENTS_OF = {
    "IngestApiFunction": ["ingest-api-post.json", "ingest-api-post-gzip.json", "ingest-api-upload.json"],
    "LoadWorkerFunction": ["load-worker-sqs-s3-incoming.json", "load-worker-sqs-s3-drop.json"],
    "JobStatusFunction": ["job-status-get.json", "job-status-list.json"],
    "QuarantineFunction": ["quarantine-list.json", "quarantine-review.json", "quarantine-review-bulk.json"],
    "SystemsFunction": ["systems-register.json", "systems-list.json", "systems-get.json", "systems-rename.json"],
    "ReadingsFunction": ["readings-list.json", "readings-sensors.json"],
    "AlertsFunction": [
        "alerts-rule-create.json",
        "alerts-alarms-list.json",
        "alerts-acknowledge.json",
        "alerts-webhook-create.json",
    ],
    "HealthFunction": ["health.json", "health-deep.json"],
    "ConsoleFunction": ["console-get.json"],
    "MaintenanceFunction": ["maintenance-schedule.json"],
    "AlertEvaluatorFunction": ["alert-evaluator-schedule.json"],
    "JobEventsFunction": ["job-events-stream.json"],
    "WebhookDispatcherFunction": ["webhook-dispatcher-schedule.json"],
}
# Functions the template creates only under a condition the local stack's defaults leave off: their events are run
# in-process by their own tests (tests/integration/test_token_claims.py).
EVENTS_OF_FUNCTIONS_NOT_LOCAL = {
    "TokenClaimsFunction": ["token-claims-person.json", "token-claims-device.json"],
}


@pytest.mark.parametrize(("function", "event"), [(f, e) for f, events in EVENTS_OF.items() for e in events])
def test_sluice_invoke_runs_every_functions_sample_events(
    stack: RunningStack, function: str, event: str, tmp_path: Path
) -> None:
    more: list[str] = []
    if function == "WebhookDispatcherFunction":
        # A run claims until 20 s of its 90 are left: with a reserve of 88 s it listens for two seconds.
        env_vars = tmp_path / "env.json"
        env_vars.write_text(json.dumps({function: {"SLUICE_WEBHOOK_RESERVE_MS": "88000"}}), encoding="utf-8")
        more = ["--env-vars", str(env_vars)]
    if function == "LoadWorkerFunction":
        # The sample events name the bucket of a stack called "sluice" and versions that exist nowhere: with the
        # bucket there, the worker finds the versions gone, fails their jobs and acknowledges the messages.
        s3 = stack.s3()
        bucket = json.loads(json.loads((REPO_ROOT / "events" / event).read_text())["Records"][0]["body"])["Records"][0]
        name = bucket["s3"]["bucket"]["name"]
        if name not in {entry["Name"] for entry in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    invoked = stack.invoke(function, event, *more)

    assert invoked.returncode == 0, invoked.stderr
    result = json.loads(invoked.stdout)
    if function == "LoadWorkerFunction":
        assert result == {"batchItemFailures": []}  # the objects it names do not exist: their jobs fail, acked
    elif function == "MaintenanceFunction":
        assert result["failed_steps"] == [], result  # a scheduled function: its report, not an HTTP answer
    elif function == "AlertEvaluatorFunction":
        assert result["failed"] == 0, result
    elif function == "JobEventsFunction":
        # The sample's job finished; the demo tenant has no subscription to tell, so nothing is written.
        assert (result["announced"], result["unreadable"]) == (1, 0), result
    elif function == "WebhookDispatcherFunction":
        assert result["failed"] == 0, result
    else:
        # Answered by the function itself (the sample's ids may not exist here, or be reviewed already): not a fault.
        assert 200 <= result["statusCode"] < 500, result
    assert f"{function}: " in invoked.stderr


@pytest.mark.parametrize("function", sorted(EVENTS_OF_FUNCTIONS_NOT_LOCAL))
def test_sluice_invoke_says_a_function_is_not_in_the_local_stack(stack: RunningStack, function: str) -> None:
    event = EVENTS_OF_FUNCTIONS_NOT_LOCAL[function][0]

    invoked = stack.invoke(function, event)

    assert invoked.returncode != 0
    assert f"{function} is not a function of the local stack" in invoked.stderr


def test_every_function_of_the_template_has_sample_events() -> None:
    template = load_template(REPO_ROOT / "template.yaml")
    functions = {name for name, body in template["Resources"].items() if body["Type"] == "AWS::Serverless::Function"}
    assert set(EVENTS_OF) | set(EVENTS_OF_FUNCTIONS_NOT_LOCAL) == functions
    for events in [*EVENTS_OF.values(), *EVENTS_OF_FUNCTIONS_NOT_LOCAL.values()]:
        for event in events:
            assert (REPO_ROOT / "events" / event).is_file()


def test_the_scheduled_dispatcher_sends_a_delivery_to_a_receiver_on_this_machine(
    stack: RunningStack, webhook_receiver: WebhookReceiver
) -> None:
    # Given a subscription of tenant demo to a receiver on loopback (allowed locally), as the API would store it
    secret = new_secret()
    url = webhook_receiver.url_for("/e2e", secret)
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO webhooks (tenant_id, url, events, created_by) VALUES ('demo', %s, %s, 'e2e') RETURNING id",
            (url, ["job.completed"]),
        ).fetchone()
        assert row is not None
        conn.execute("INSERT INTO webhook_secrets (webhook_id, secret) VALUES (%s, %s)", (row[0], secret))
        # When a change is announced to the outbox
        announcement = Announcement("demo", "job.completed", "job.completed:e2e", datetime.now(UTC), {"id": "e2e"})
        assert enqueue(conn, announcement) == 1

    # Then the twin's every-minute WebhookDispatcherFunction (as its own login, sluice_notifier) sends it, signed
    (received,) = webhook_receiver.wait_for(1, timeout_s=150)
    assert received.verified
    assert received.payload["type"] == "job.completed"
    assert received.webhook_id is not None


def test_sluice_demo_reports_both_jobs_with_the_planted_reasons(stack: RunningStack) -> None:
    demo = stack.sluice("demo", "--api", stack.api, "--endpoint-url", stack.moto, "--stack-name", STACK)

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "API batch: job" in demo.stdout
    assert "CSV.gz drop: job" in demo.stdout
    assert demo.stdout.count(" completed") == 2
    # Every planted fault is found, each where it was planted (the drop's readings are older than the batch's).
    for block in demo.stdout.split("\n\n")[1:]:
        found = next(line for line in block.splitlines() if "quarantined by reason" in line).split(": ", 1)[1]
        planted = next(line for line in block.splitlines() if "planted" in line).split(": ", 1)[1]
        assert found == planted, block


def test_ctrl_c_stops_everything_the_stack_started(stack: RunningStack) -> None:
    os.killpg(stack.process.pid, signal.SIGINT)

    assert stack.process.wait(60) == 0
    time.sleep(0.5)
    assert stack.lines[-1] == "stopped" or "stopped" in stack.lines[-3:], stack.output()[-2000:]
    for port in (stack.http_port, stack.moto_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    # A function process of this stack names the stack and this stack's moto port: another stack running on the
    # machine (a second checkout's tests) is not this one's leftover.
    leftovers = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\0")
            if any(v.startswith(f"AWS_LAMBDA_FUNCTION_NAME={STACK}-".encode()) for v in variables) and any(
                v.startswith(b"SLUICE_AWS_ENDPOINT_URL=") and v.endswith(f":{stack.moto_port}".encode())
                for v in variables
            ):
                leftovers.append(environ.parent.name)
        except OSError:
            continue
    assert leftovers == []
    # The database was running before (the test session needs it), so the stack left it running.
    with psycopg.connect(stack.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
