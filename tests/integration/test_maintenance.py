"""MaintenanceFunction against template.yaml's resources in moto and the real TimescaleDB, invoked with its sample
event: old chunks go and recent ones stay, a stuck job is requeued and finished by the worker exactly once, a
batch never stored fails, a parked job fails while its message stays parked, a completed job is never touched,
and a step that fails stops no other."""

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from sluice.adapters.aws import dynamodb_client, s3_client, secretsmanager_client, sqs_client
from sluice.adapters.dynamodb import DynamoJobStore
from sluice.adapters.maintenance import S3ObjectProbe, SqsDeadLetters, TimescaleMaintenanceStore
from sluice.adapters.timescale import DatabaseConnector
from sluice.domain.maintenance import NEVER_STARTED, NEVER_STORED, PARKED_WITHOUT_A_WORD
from sluice.errors import StorageUnavailableError
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice.settings import get_load_worker_settings, get_maintenance_settings
from sluice_tools.local.template import StackContext, function_environment

from ..lambdas import FakeLambdaContext, handler_module, load_event
from ..rollups import rebuild_rollups
from ..worker_harness import WorkerHarness, s3_event_body

TENANT = "demo"
SENSOR = "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8"


@dataclass
class Maintenance:
    """MaintenanceFunction's handler, warm across runs, and the stack it maintains."""

    stack: StackContext
    dsn: str
    modules: list[ModuleType] = field(default_factory=list)

    def run(self, *, cold: bool = False, remaining_ms: int = 120_000) -> dict[str, Any]:
        """Invoke the handler with the sample schedule event; ``cold`` starts a new execution environment."""
        if cold or not self.modules:
            get_maintenance_settings.cache_clear()
            self.modules.append(handler_module("MaintenanceFunction"))
        answer: dict[str, Any] = self.modules[-1].lambda_handler(
            load_event("maintenance-schedule.json"), FakeLambdaContext(remaining_ms=remaining_ms)
        )
        return answer

    def close(self) -> None:
        for module in self.modules:
            module.get_service().connector.close()

    @property
    def table(self) -> str:
        return str(self.stack.ref("JobsTable"))

    @property
    def dead_letter_url(self) -> str:
        return str(self.stack.ref("IngestDeadLetterQueue"))

    def query(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        """Run one statement; its rows, if it returns any."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description is not None else []

    def item(self, job_id: UUID) -> dict[str, Any]:
        answer = dynamodb_client().get_item(TableName=self.table, Key={"job_id": {"S": str(job_id)}})
        return dict(answer["Item"])

    def age(self, job_id: UUID, by: timedelta) -> None:
        """Move a job's creation, starts and ledger commits back by ``by``, as if it had stalled that long ago."""
        then = datetime.now(UTC) - by
        created = then - timedelta(minutes=1)
        dynamodb_client().update_item(
            TableName=self.table,
            Key={"job_id": {"S": str(job_id)}},
            UpdateExpression="SET created_at = :created, started_at = :then, attempted_at = :then",
            ExpressionAttributeValues={
                ":created": {"S": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
                ":then": {"S": then.isoformat()},
            },
        )
        self.query("UPDATE ingest_ledger SET committed_at = committed_at - %s WHERE job_id = %s", by, job_id)

    def backdate(self, job_id: UUID, attribute: str, by: timedelta) -> None:
        """Move one of a job's moments (``created_at``, ``attempted_at``) back by ``by``."""
        moment = getattr(self.job(job_id), attribute) - by
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if attribute == "created_at" else moment.isoformat()
        dynamodb_client().update_item(
            TableName=self.table,
            Key={"job_id": {"S": str(job_id)}},
            UpdateExpression="SET #moment = :moment",
            ExpressionAttributeNames={"#moment": attribute},
            ExpressionAttributeValues={":moment": {"S": text}},
        )

    def job(self, job_id: UUID) -> Job:
        found = DynamoJobStore(self.table).get_job(job_id)
        assert found is not None
        return found

    def park(self, body: str) -> None:
        """Put a message into the dead-letter queue, as SQS does after its last failed receive."""
        sqs_client().send_message(QueueUrl=self.dead_letter_url, MessageBody=body)

    def parked(self) -> list[dict[str, Any]]:
        """The dead-letter queue's messages, looked at without keeping them invisible."""
        answer = sqs_client().receive_message(
            QueueUrl=self.dead_letter_url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0
        )
        return [dict(message) for message in answer.get("Messages", [])]


@pytest.fixture
def maintenance(
    aws_stack: StackContext, migrated_db: str, database_secret: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Maintenance]:
    """MaintenanceFunction with the template's environment; its DSN comes from the secret in moto, as in AWS."""
    for name, value in function_environment(aws_stack, "MaintenanceFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", database_secret)
    harness = Maintenance(aws_stack, migrated_db)
    yield harness
    harness.close()
    get_maintenance_settings.cache_clear()


@pytest.fixture
def worker(maintenance: Maintenance, database_secret: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerHarness]:
    """LoadWorkerFunction in the same stack, cutting files into chunks of 10 readings."""
    for name, value in function_environment(maintenance.stack, "LoadWorkerFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", database_secret)
    monkeypatch.setenv("SLUICE_CHUNK_READINGS", "10")
    get_load_worker_settings.cache_clear()
    harness = WorkerHarness(handler_module("LoadWorkerFunction"), maintenance.stack, maintenance.dsn)
    yield harness
    harness.module.get_service().connector.close()
    get_load_worker_settings.cache_clear()


@pytest.fixture
def system_id(maintenance: Maintenance) -> UUID:
    rows = maintenance.query("INSERT INTO systems (tenant_id, name) VALUES (%s, 'press-17') RETURNING id", TENANT)
    return UUID(str(rows[0][0]))


def readings(count: int) -> list[dict[str, Any]]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    return [
        {
            "sensor_id": SENSOR,
            "timestamp": (start + timedelta(seconds=i)).isoformat(),
            "value": 212.5,
            "unit": "bar",
            "quality": 97,
        }
        for i in range(count)
    ]


def api_batch(worker: WorkerHarness, system: UUID, count: int) -> UUID:
    body = json.dumps({"system_id": str(system), "readings": readings(count)}).encode()
    return worker.send_api_batch(TENANT, system, body, count)


def csv_drop(worker: WorkerHarness, system: UUID, count: int) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["system_id", "sensor_id", "timestamp", "value", "unit", "quality"])
    writer.writeheader()
    writer.writerows({"system_id": str(system)} | reading for reading in readings(count))
    key = f"drops/{TENANT}/export-{uuid4().hex[:6]}.csv"
    worker.put(key, text.getvalue().encode())
    return key


def queued_job(maintenance: Maintenance, age: timedelta, *, stored: bool) -> UUID:
    """A job as IngestApiFunction writes it, ``age`` ago; its batch object stored or not."""
    job_id, created = uuid4(), datetime.now(UTC) - age
    key = f"incoming/{TENANT}/{created:%Y/%m/%d}/{job_id}.json"
    bucket = str(maintenance.stack.ref("BatchBucket"))
    job = Job(
        job_id=job_id,
        tenant_id=TENANT,
        status=JobStatus.QUEUED,
        source=JobSource.API,
        bucket=bucket,
        object_key=key,
        created_at=created,
        expires_at=int((created + timedelta(days=90)).timestamp()),
    )
    DynamoJobStore(maintenance.table).create_job(job)
    if stored:
        s3_client().put_object(Bucket=bucket, Key=key, Body=b'{"system_id": null, "readings": []}')
    return job_id


def started_job(maintenance: Maintenance, stalled: timedelta) -> UUID:
    """A job with its batch stored, started by a worker that then stalled ``stalled`` ago."""
    job_id = queued_job(maintenance, stalled + timedelta(minutes=1), stored=True)
    DynamoJobStore(maintenance.table).start_job(maintenance.job(job_id), datetime.now(UTC))
    maintenance.age(job_id, stalled)
    return job_id


def restart(worker: WorkerHarness, monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    """A new execution environment for the worker, with ``variables`` changed."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    get_load_worker_settings.cache_clear()
    worker.module.get_service().connector.close()
    worker.module = handler_module("LoadWorkerFunction")
    worker.service = None


def ledger(maintenance: Maintenance, job_id: UUID) -> list[tuple[Any, ...]]:
    return maintenance.query("SELECT chunk_no, committed_at FROM ingest_ledger WHERE job_id = %s ORDER BY 1", job_id)


def metrics_of(output: str) -> dict[str, Any]:
    """The metrics of the EMF blob Powertools printed last, by name."""
    blob = [json.loads(line) for line in output.splitlines() if '"_aws"' in line][-1]
    return {metric["Name"]: blob[metric["Name"]] for metric in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}


# --- retention ---------------------------------------------------------------------------------------------------


def insert_reading(maintenance: Maintenance, at: datetime) -> None:
    """A reading at ``at``, with the rollups the worker would have kept for it."""
    maintenance.query(
        "INSERT INTO readings (time, system_id, sensor_id, value, unit, quality, job_id)"
        " VALUES (%s, %s, %s, 1.0, 'bar', 90, %s)",
        at,
        uuid4(),
        uuid4(),
        uuid4(),
    )
    with psycopg.connect(maintenance.dsn, autocommit=True) as conn:
        rebuild_rollups(conn)


def retained(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The retention step's summary of each hypertable, by name."""
    return {table["hypertable"]: table for table in answer["retention"]["hypertables"]}


def test_chunks_past_the_retention_are_dropped_and_recent_ones_kept(
    maintenance: Maintenance, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    kept = [now - timedelta(days=1), now - timedelta(days=5 * 365 - 30)]
    for moment in [now - timedelta(days=6 * 365), now - timedelta(days=5 * 365 + 30), *kept]:
        insert_reading(maintenance, moment)

    answer = maintenance.run()

    assert answer["failed_steps"] == []
    assert [(name, table["policy_in_place"]) for name, table in retained(answer).items()] == [
        ("readings", False),
        ("readings_1m", False),
        ("readings_1h", False),
    ]
    assert len(retained(answer)["readings"]["dropped_chunks"]) == 2
    assert sorted(row[0] for row in maintenance.query("SELECT time FROM readings")) == sorted(kept)
    assert maintenance.query("SELECT count(*) FROM show_chunks('readings')") == [(2,)]
    emitted = metrics_of(capsys.readouterr().out)
    assert (emitted["DroppedChunks"], emitted["MaintenanceStepFailures"]) == ([2], [0])
    assert all(table["dropped_chunks"] == [] for table in retained(maintenance.run()).values())  # none left


def test_the_rollups_outlive_the_readings_and_go_after_their_own_retention(maintenance: Maintenance) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # Past both retentions (12 years: a readings_1h chunk spans 365 days, so its whole range is past 10 years);
    # past the readings' 5 years only; recent.
    ancient, old, recent = now - timedelta(days=12 * 365), now - timedelta(days=7 * 365), now - timedelta(days=1)
    for moment in (ancient, old, recent):
        insert_reading(maintenance, moment)

    answer = maintenance.run()

    assert answer["failed_steps"] == []
    assert {name: table["retention_years"] for name, table in retained(answer).items()} == {
        "readings": 5,
        "readings_1m": 10,
        "readings_1h": 10,
    }
    assert (
        len(retained(answer)["readings_1m"]["dropped_chunks"]),
        len(retained(answer)["readings_1h"]["dropped_chunks"]),
    ) == (1, 1)
    assert maintenance.query("SELECT time FROM readings") == [(recent,)]
    # The readings of 7 years ago are gone, their rollups stay; those of 12 years ago went with theirs.
    assert maintenance.query("SELECT bucket, count FROM readings_1m ORDER BY bucket") == [(old, 1), (recent, 1)]
    hours = [moment.replace(minute=0) for moment in (old, recent)]
    assert [row[0] for row in maintenance.query("SELECT bucket FROM readings_1h ORDER BY bucket")] == hours
    assert [row[0] for row in maintenance.query("SELECT bucket FROM readings_1d ORDER BY bucket")] == [
        moment.replace(hour=0, minute=0) for moment in (old, recent)
    ]


def test_the_rollups_retention_is_a_setting(maintenance: Maintenance, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    insert_reading(maintenance, now - timedelta(days=7 * 365))
    monkeypatch.setenv("SLUICE_ROLLUP_RETENTION_YEARS", "6")

    answer = maintenance.run(cold=True)

    assert retained(answer)["readings_1m"]["retention_years"] == 6
    assert len(retained(answer)["readings_1m"]["dropped_chunks"]) == 1
    assert maintenance.query("SELECT count(*) FROM readings_1m") == [(0,)]


@pytest.mark.parametrize("hypertable", ["readings", "readings_1m"])
def test_retention_is_left_to_a_timescaledb_policy_where_one_exists(maintenance: Maintenance, hypertable: str) -> None:
    old = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=12 * 365)
    insert_reading(maintenance, old)
    # What add_retention_policy records on the Timescale-licensed build (the Apache build refuses to call it).
    maintenance.query(
        "INSERT INTO _timescaledb_config.bgw_job (application_name, schedule_interval, max_runtime, max_retries,"
        " retry_period, proc_schema, proc_name, scheduled, hypertable_id, config)"
        " SELECT 'Retention Policy [test]', '1 day', '5 min', -1, '5 min', '_timescaledb_functions',"
        " 'policy_retention', false, id, '{\"drop_after\": \"5 years\"}' FROM _timescaledb_catalog.hypertable"
        " WHERE table_name = %s",
        hypertable,
    )

    answer = maintenance.run()

    assert {name: table["policy_in_place"] for name, table in retained(answer).items()} == {
        name: name == hypertable for name in ("readings", "readings_1m", "readings_1h")
    }
    assert retained(answer)[hypertable]["dropped_chunks"] == []
    left = {"readings": "SELECT time FROM readings", "readings_1m": "SELECT bucket FROM readings_1m"}
    assert maintenance.query(left[hypertable]) == [(old,)]
    others = [name for name in ("readings", "readings_1m", "readings_1h") if name != hypertable]
    assert all(len(retained(answer)[name]["dropped_chunks"]) == 1 for name in others)


def test_dropping_chunks_of_a_table_that_is_no_hypertable_is_a_storage_fault(maintenance: Maintenance) -> None:
    connector = DatabaseConnector(lambda: maintenance.dsn, 5_000, application_name="test")
    try:
        with pytest.raises(StorageUnavailableError, match="dropping old chunks of systems failed"):
            TimescaleMaintenanceStore(connector).drop_chunks("systems", 5)
    finally:
        connector.close()


# --- stuck jobs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["api", "drop"])
def test_a_stuck_job_is_requeued_and_the_worker_finishes_it_without_duplicates(
    maintenance: Maintenance, worker: WorkerHarness, system_id: UUID, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    # Given a job whose worker died after chunk 1 and whose message is gone, an hour ago.
    restart(worker, monkeypatch)
    worker.crash_after_chunk(1)
    if source == "api":
        api_batch(worker, system_id, 45)
    else:
        csv_drop(worker, system_id, 45)
    messages = worker.receive_objects()
    with pytest.raises(BatchProcessingError, match="crash after chunk 1"):
        worker.invoke(worker.event(messages))
    (stalled,) = worker.jobs()
    job_id = stalled.job_id
    for message in messages:
        sqs_client().delete_message(QueueUrl=worker.queue_url, ReceiptHandle=message["ReceiptHandle"])
    maintenance.age(job_id, timedelta(hours=1))
    committed = ledger(maintenance, job_id)

    # When maintenance runs (twice: the second finds the requeue recent).
    first, second = maintenance.run(), maintenance.run()
    restart(worker, monkeypatch)
    delivered = worker.deliver()

    # Then the job was requeued once and resumed after its committed chunks: every reading stored exactly once.
    assert first["stuck_jobs"]["requeued_jobs"] == [str(job_id)]
    assert second["stuck_jobs"]["requeued_jobs"] == []
    assert delivered == {"batchItemFailures": []}
    job = worker.job(job_id)
    assert (job.status, job.total_readings, job.inserted_readings, job.quarantined_readings) == (
        JobStatus.COMPLETED,
        45,
        45,
        0,
    )
    assert [chunk for chunk, _ in committed] == [0, 1]
    assert ledger(maintenance, job_id)[:2] == committed  # skipped, not written again
    assert [chunk for chunk, _ in ledger(maintenance, job_id)] == [0, 1, 2, 3, 4]
    assert maintenance.query("SELECT count(*) FROM readings WHERE job_id = %s", job_id) == [(45,)]
    assert len(worker.jobs()) == 1  # the requeued event named the same job, not a new one


def test_a_queued_job_whose_batch_was_never_stored_fails_and_a_recent_one_waits(maintenance: Maintenance) -> None:
    never_stored = queued_job(maintenance, timedelta(minutes=20), stored=False)
    just_accepted = queued_job(maintenance, timedelta(minutes=1), stored=False)

    answer = maintenance.run()

    assert answer["stuck_jobs"]["failed_jobs"] == [str(never_stored)]
    assert answer["stuck_jobs"]["overdue_queued_jobs"] == 0
    failed = maintenance.job(never_stored)
    (logged,) = answer["stuck_jobs"]["failures"]
    assert failed.status is JobStatus.FAILED
    assert failed.error_message == f"{NEVER_STORED} Quote error id {logged['error_id']} to support."
    assert failed.bucket in logged["detail"]  # the bucket and key are in the log, never in what the client reads
    assert failed.completed_at is not None
    assert maintenance.job(just_accepted).status is JobStatus.QUEUED


def lose_s3_events(worker: WorkerHarness) -> None:
    """Take every S3 event off IngestQueue: as if S3 had never delivered them."""
    for message in worker.receive():
        sqs_client().delete_message(QueueUrl=worker.queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_a_stored_batch_whose_s3_event_was_lost_is_requeued_once_and_loaded(
    maintenance: Maintenance, worker: WorkerHarness, system_id: UUID, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a batch accepted 20 minutes ago, its object stored, and its S3 event lost
    job_id = api_batch(worker, system_id, 3)
    lose_s3_events(worker)
    maintenance.backdate(job_id, "created_at", timedelta(minutes=20))
    capsys.readouterr()

    # When maintenance runs (twice: the second finds the requeue recent) and the worker takes IngestQueue's messages
    first = maintenance.run()
    emitted = metrics_of(capsys.readouterr().out)
    second = maintenance.run()
    requeued = maintenance.job(job_id)
    delivered = worker.deliver()

    # Then its S3 event was sent once, the requeue recorded on the job, and the batch loaded exactly once
    assert (first["stuck_jobs"]["requeued_jobs"], first["stuck_jobs"]["requeued_unstarted_jobs"]) == ([str(job_id)], 1)
    assert (emitted["JobsRequeuedUnstarted"], emitted["RequeuedJobs"], emitted["OverdueQueuedJobs"]) == ([1], [1], [1])
    assert (second["stuck_jobs"]["requeued_jobs"], second["stuck_jobs"]["failed_jobs"]) == ([], [])
    assert (requeued.status, requeued.started_at) == (JobStatus.QUEUED, None)
    assert requeued.attempted_at is not None
    assert delivered == {"batchItemFailures": []}
    done = worker.job(job_id)
    assert (done.status, done.inserted_readings, done.error_message) == (JobStatus.COMPLETED, 3, None)
    assert maintenance.query("SELECT count(*) FROM readings WHERE job_id = %s", job_id) == [(3,)]


def test_a_stored_batch_still_queued_a_deadline_after_its_requeue_fails_saying_so(
    maintenance: Maintenance, worker: WorkerHarness, system_id: UUID
) -> None:
    # Given a batch whose S3 event was lost, and whose requeued event no worker took either (IngestQueue stalled)
    job_id = api_batch(worker, system_id, 3)
    lose_s3_events(worker)
    maintenance.backdate(job_id, "created_at", timedelta(minutes=20))
    assert maintenance.run()["stuck_jobs"]["requeued_jobs"] == [str(job_id)]
    lose_s3_events(worker)
    maintenance.backdate(job_id, "attempted_at", timedelta(minutes=15))

    # When maintenance runs again
    answer = maintenance.run()

    # Then the job fails once, with a fixed sentence and the error id the log holds with the detail
    assert (answer["stuck_jobs"]["failed_jobs"], answer["stuck_jobs"]["requeued_jobs"]) == ([str(job_id)], [])
    (logged,) = answer["stuck_jobs"]["failures"]
    failed = maintenance.job(job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error_message == f"{NEVER_STARTED} Quote error id {logged['error_id']} to support."
    assert failed.object_key in logged["detail"]
    assert "requeued at" in logged["detail"]
    assert worker.receive() == []  # nothing sent a second time
    assert maintenance.run()["stuck_jobs"]["failed_jobs"] == []


def test_a_requeued_batch_is_not_failed_while_its_message_still_waits_in_ingest_queue(
    maintenance: Maintenance, worker: WorkerHarness, system_id: UUID
) -> None:
    # Given a batch whose S3 event was lost and whose requeued event waits, unreceived, behind a stalled worker
    job_id = api_batch(worker, system_id, 3)
    lose_s3_events(worker)
    maintenance.backdate(job_id, "created_at", timedelta(minutes=20))
    assert maintenance.run()["stuck_jobs"]["requeued_jobs"] == [str(job_id)]
    maintenance.backdate(job_id, "attempted_at", timedelta(minutes=15))

    # When maintenance runs a deadline later
    answer = maintenance.run()

    # Then the job is left queued for the worker, and loads once the worker takes the message
    assert (answer["stuck_jobs"]["failed_jobs"], answer["stuck_jobs"]["overdue_queued_jobs"]) == ([], 1)
    assert maintenance.job(job_id).status is JobStatus.QUEUED
    assert worker.deliver() == {"batchItemFailures": []}
    assert maintenance.job(job_id).status is JobStatus.COMPLETED


# --- dead letters ------------------------------------------------------------------------------------------------


def test_a_parked_job_fails_its_message_stays_parked_and_a_redrive_restarts_it(
    maintenance: Maintenance, worker: WorkerHarness, system_id: UUID
) -> None:
    # Given a batch whose worker died on its last attempt: the message is parked, the job still processing.
    job_id = api_batch(worker, system_id, 3)
    (message,) = worker.receive_objects()
    DynamoJobStore(maintenance.table).start_job(worker.job(job_id), datetime.now(UTC))
    maintenance.park(message["Body"])
    sqs_client().delete_message(QueueUrl=worker.queue_url, ReceiptHandle=message["ReceiptHandle"])

    answer = maintenance.run()
    again = maintenance.run()

    # Then the job failed with what is known, once; the message is still parked and visible to a redrive.
    (logged,) = answer["dead_letters"].pop("failures")
    assert answer["dead_letters"] == {"parked_messages": 1, "failed_jobs": [str(job_id)], "errors": 0}
    assert again["dead_letters"] == {"parked_messages": 1, "failed_jobs": [], "failures": [], "errors": 0}
    failed = worker.job(job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error_message == f"{PARKED_WITHOUT_A_WORD} Quote error id {logged['error_id']} to support."
    (still_parked,) = maintenance.parked()
    assert logged["detail"].startswith(f"message {still_parked['MessageId']} is in the dead-letter queue")
    assert answer["stuck_jobs"]["requeued_jobs"] == []  # a parked job is failed, not requeued
    assert still_parked["Body"] == message["Body"]

    # When it is redriven, the worker starts it again: the failure no longer describes it, and it completes.
    restarted = DynamoJobStore(maintenance.table).start_job(failed, datetime.now(UTC))
    assert isinstance(restarted, Job)
    assert (restarted.status, restarted.error_message, restarted.completed_at) == (JobStatus.PROCESSING, None, None)
    assert restarted.started_at == failed.started_at
    assert restarted.attempted_at is not None
    sqs_client().send_message(QueueUrl=worker.queue_url, MessageBody=still_parked["Body"])
    sqs_client().delete_message(QueueUrl=maintenance.dead_letter_url, ReceiptHandle=still_parked["ReceiptHandle"])
    assert worker.deliver() == {"batchItemFailures": []}
    done = worker.job(job_id)
    assert (done.status, done.inserted_readings, done.error_message) == (JobStatus.COMPLETED, 3, None)


def test_a_completed_job_is_never_touched(maintenance: Maintenance, worker: WorkerHarness, system_id: UUID) -> None:
    # Given a completed job that looks stalled, whose object is gone and whose message sits in the dead-letter queue.
    job_id = api_batch(worker, system_id, 2)
    (message,) = worker.receive_objects()
    worker.invoke(worker.event([message]))
    maintenance.age(job_id, timedelta(days=1))
    completed = worker.job(job_id)
    s3_client().delete_object(Bucket=completed.bucket, Key=completed.object_key)
    maintenance.park(message["Body"])
    before = maintenance.item(job_id)

    answer = maintenance.run()

    assert answer["dead_letters"]["failed_jobs"] == []
    assert answer["stuck_jobs"] == {
        "candidate_jobs": 0,
        "requeued_jobs": [],
        "requeued_unstarted_jobs": 0,
        "failed_jobs": [],
        "failures": [],
        "overdue_queued_jobs": 0,
        "deferred": 0,
        "errors": 0,
        "notes": [],
    }
    assert maintenance.item(job_id) == before
    assert before["status"] == {"S": "completed"}


# --- one step failing --------------------------------------------------------------------------------------------


def test_with_the_database_down_the_jobs_table_and_queues_are_still_maintained(
    maintenance: Maintenance,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    never_stored = queued_job(maintenance, timedelta(hours=1), stored=False)
    parked = queued_job(maintenance, timedelta(minutes=2), stored=True)
    maintenance.park(s3_event_body(str(maintenance.stack.ref("BatchBucket")), maintenance.job(parked).object_key))
    stuck = started_job(maintenance, stalled=timedelta(hours=1))
    down = {"host": "127.0.0.1", "port": 1, "username": "x", "password": "x", "sslmode": "disable"}
    arn = secretsmanager_client().create_secret(Name="unreachable", SecretString=json.dumps(down))["ARN"]
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", arn)

    answer = maintenance.run(cold=True)

    assert answer["failed_steps"] == ["retention"]
    assert answer["retention"]["error"].startswith("StorageUnavailableError: looking for a retention policy")
    assert answer["dead_letters"]["failed_jobs"] == [str(parked)]
    assert answer["stuck_jobs"]["failed_jobs"] == [str(never_stored)]
    assert answer["stuck_jobs"]["errors"] == 1  # the stuck job cannot be judged without its ledger
    assert answer["stuck_jobs"]["notes"][0].startswith("1 processing jobs not judged: reading the ledger failed")
    assert maintenance.job(stuck).status is JobStatus.PROCESSING
    assert [(record.levelname, record.getMessage()) for record in caplog.records if record.levelname == "ERROR"] == [
        ("ERROR", "maintenance step failed")
    ]
    assert metrics_of(capsys.readouterr().out)["MaintenanceStepFailures"] == [1]


def test_with_the_queues_gone_retention_and_the_sweeper_still_run(maintenance: Maintenance) -> None:
    insert_reading(maintenance, datetime.now(UTC) - timedelta(days=6 * 365))
    stuck = started_job(maintenance, stalled=timedelta(hours=1))
    for queue_url in (str(maintenance.stack.ref("IngestQueue")), maintenance.dead_letter_url):
        sqs_client().delete_queue(QueueUrl=queue_url)

    answer = maintenance.run()

    assert answer["failed_steps"] == ["dead_letters"]
    assert "reading the dead-letter queue failed" in answer["dead_letters"]["error"]
    assert len(retained(answer)["readings"]["dropped_chunks"]) == 1
    assert answer["stuck_jobs"]["errors"] == 1
    assert answer["stuck_jobs"]["notes"][0].startswith(f"job {stuck}: sending to IngestQueue failed")


# --- the job store's conditional writes --------------------------------------------------------------------------


def test_a_job_started_since_it_was_read_is_neither_requeued_nor_failed(maintenance: Maintenance) -> None:
    jobs = DynamoJobStore(maintenance.table)
    job_id = queued_job(maintenance, timedelta(hours=1), stored=True)
    queued = maintenance.job(job_id)
    jobs.start_job(queued, datetime.now(UTC) - timedelta(hours=1))
    read = maintenance.job(job_id)
    jobs.start_job(read, datetime.now(UTC))  # a worker starts it again meanwhile

    assert not jobs.requeue_job(read, datetime.now(UTC))
    assert not jobs.fail_unchanged_job(read, "stuck", datetime.now(UTC))
    assert not jobs.fail_unchanged_job(queued, "never stored", datetime.now(UTC))  # no longer queued
    assert jobs.requeue_job(maintenance.job(job_id), datetime.now(UTC))  # as read: the write goes through


def test_the_jobs_of_a_status_created_before_a_moment_are_listed_oldest_first_across_pages(
    maintenance: Maintenance,
) -> None:
    old = [queued_job(maintenance, timedelta(minutes=minutes), stored=False) for minutes in (30, 40, 20)]
    recent = queued_job(maintenance, timedelta(minutes=5), stored=False)
    done = queued_job(maintenance, timedelta(minutes=50), stored=False)
    jobs = DynamoJobStore(maintenance.table)
    jobs.fail_job(done, "refused", datetime.now(UTC))
    before = datetime.now(UTC) - timedelta(minutes=10)

    listed = list(jobs.jobs_created_before(JobStatus.QUEUED, before, page_size=1))

    assert [job.job_id for job in listed] == [old[1], old[0], old[2]]
    assert recent not in {job.job_id for job in listed}
    assert [job.job_id for job in jobs.jobs_created_before(JobStatus.FAILED, before)] == [done]


def test_a_missing_table_or_bucket_is_a_storage_fault(maintenance: Maintenance) -> None:
    with pytest.raises(StorageUnavailableError, match="listing queued jobs failed"):
        list(DynamoJobStore("no-such-table").jobs_created_before(JobStatus.QUEUED, datetime.now(UTC)))
    with pytest.raises(StorageUnavailableError, match="looking at s3://no-such-bucket/x failed"):
        S3ObjectProbe().newest_version("no-such-bucket", "x")


def test_a_run_reads_at_most_its_share_of_parked_messages_and_leaves_them_all_visible(
    maintenance: Maintenance,
) -> None:
    for n in range(12):
        maintenance.park(f"message {n}")

    read = SqsDeadLetters(maintenance.dead_letter_url, visibility_s=30, max_messages=10).parked_messages()

    assert len(read) == 10
    assert len({message.message_id for message in read}) == 10
    attributes = sqs_client().get_queue_attributes(
        QueueUrl=maintenance.dead_letter_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
        "12",
        "0",
    )
