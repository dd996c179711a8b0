"""LoadWorkerFunction against template.yaml's resources in moto and the real TimescaleDB: every reading of every
object ends exactly once in readings or in quarantine, and the job's counts say so, whatever SQS does."""

import csv
import dataclasses
import gzip
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from psycopg.conninfo import conninfo_to_dict

from sluice.adapters.aws import s3_client, secretsmanager_client, sqs_client
from sluice.adapters.s3 import OBJECT_GONE, S3ObjectSource
from sluice.adapters.timescale import DatabaseConnector, TimescaleReadingSink, database_dsn
from sluice.domain.chunks import ChunkStream, SystemBook
from sluice.domain.formats import Record
from sluice.domain.load import LoadPolicy, job_for
from sluice.domain.objects import ObjectRef, batch_object_key, parse_message, target_of
from sluice.domain.validation import ReadingValidator
from sluice.models.jobs import JobStatus
from sluice.settings import get_load_worker_settings

from ..lambdas import FakeLambdaContext, handler_module, load_event
from ..worker_harness import WorkerHarness, s3_event_body

TENANT = "demo"
NOW = datetime.now(UTC).replace(microsecond=0)


def stamp(seconds: int) -> str:
    return (NOW - timedelta(days=1) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def reading(second: int, sensor: str = "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8", **changes: Any) -> dict[str, Any]:
    return {"sensor_id": sensor, "timestamp": stamp(second), "value": 212.5, "unit": "bar", "quality": 97} | changes


@pytest.fixture
def system_id(worker: WorkerHarness) -> UUID:
    rows = worker.query("INSERT INTO systems (tenant_id, name) VALUES (%s, 'press-17') RETURNING id", TENANT)
    return UUID(str(rows[0][0]))


def api_batch(worker: WorkerHarness, system: UUID | str, readings: list[Any], *, gzipped: bool = False) -> UUID:
    """A batch as IngestApiFunction accepts it: a queued job record, then the batch object."""
    body = json.dumps({"system_id": str(system), "readings": readings}).encode()
    return worker.send_api_batch(
        TENANT, UUID(str(system)), gzip.compress(body) if gzipped else body, len(readings), gzipped=gzipped
    )


def configure(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    """Set the worker's environment variables and have its settings read again."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    get_load_worker_settings.cache_clear()


def csv_drop(rows: list[dict[str, Any]]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["system_id", "sensor_id", "timestamp", "value", "unit", "quality"])
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


def drop(worker: WorkerHarness, key: str, body: bytes, **extra: Any) -> str:
    """Drop a file; its job is found by key once the worker made it (moto's events carry no versionId, so the job
    id comes from the ETag there and from the version id in AWS)."""
    worker.put(key, body, **extra)
    return key


def stored(worker: WorkerHarness, job_id: UUID) -> int:
    return int(worker.query("SELECT count(*) FROM readings WHERE job_id = %s", job_id)[0][0])


def reasons(worker: WorkerHarness, job_id: UUID) -> dict[int, str]:
    return {row["position"]: row["reason"] for row in worker.quarantine(job_id)}


def assert_accounted(worker: WorkerHarness, job_id: UUID, total: int) -> None:
    """The promise: every reading once in readings or quarantine, and the job's counts agree with both."""
    job = worker.job(job_id)
    in_readings = stored(worker, job_id)
    in_quarantine = len(list(worker.quarantine(job_id)))
    assert job.status is JobStatus.COMPLETED
    assert (job.total_readings, job.inserted_readings, job.quarantined_readings) == (
        total,
        in_readings,
        in_quarantine,
    )
    assert in_readings + in_quarantine == total


# --- one batch, every verdict -------------------------------------------------------------------------------------


def test_a_mixed_api_batch_lands_with_exact_counts_and_every_reason_explained(
    worker: WorkerHarness, system_id: UUID
) -> None:
    sent = [
        reading(0),
        reading(1, unit="psi"),
        reading(2, value=950.0),
        reading(3, quality=20),
        reading(4, timestamp="2026-11-20T08:00:00"),
        reading(0),
        "not a reading",
        {"sensor_id": "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8", "timestamp": stamp(7), "value": 1.0, "unit": "bar"},
        reading(8),
    ]
    job_id = api_batch(worker, system_id, sent)

    response = worker.deliver()

    assert response == {"batchItemFailures": []}
    assert_accounted(worker, job_id, total=9)
    assert reasons(worker, job_id) == {
        1: "invalid_unit",
        2: "out_of_range",
        3: "low_quality",
        4: "invalid_timestamp",
        5: "duplicate",
        6: "parse_error",
        7: "parse_error",
    }
    rows = {row["position"]: row for row in worker.quarantine(job_id)}
    assert rows[1]["reason_details"] == {
        "field": "unit",
        "expected": "one of bar, celsius, lpm, rpm",
        "got": "'psi'",
        "message": "unit: expected one of bar, celsius, lpm, rpm, got 'psi'",
    }
    assert rows[5]["reason_details"]["got"] == "a repeat of #0"
    assert rows[6]["raw"] == "not a reading"
    assert rows[7]["reason_details"]["field"] == "quality"
    assert rows[2]["value"] == 950.0
    assert rows[2]["system_id"] == system_id
    job = worker.job(job_id)
    assert job.duplicate_readings == 1
    assert job.success_rate == pytest.approx(2 / 9)
    assert job.started_at is not None
    assert job.completed_at is not None
    assert job.processing_time_ms is not None


def test_an_unknown_or_foreign_system_quarantines_its_readings_as_system_not_found(worker: WorkerHarness) -> None:
    foreign = worker.query("INSERT INTO systems (tenant_id, name) VALUES ('other', 'x') RETURNING id")[0][0]
    job_id = api_batch(worker, foreign, [reading(0), reading(1, unit="psi")])

    worker.deliver()

    assert_accounted(worker, job_id, total=2)
    assert reasons(worker, job_id) == {0: "system_not_found", 1: "invalid_unit"}
    detail = next(iter(worker.quarantine(job_id)))["reason_details"]
    assert detail["expected"] == "a system of tenant demo"


def test_a_gzip_api_batch_is_read_through_its_content_encoding(worker: WorkerHarness, system_id: UUID) -> None:
    job_id = api_batch(worker, system_id, [reading(i) for i in range(5)], gzipped=True)

    worker.deliver()

    assert_accounted(worker, job_id, total=5)
    assert worker.job(job_id).inserted_readings == 5


def test_readings_already_stored_by_another_job_are_duplicates(worker: WorkerHarness, system_id: UUID) -> None:
    first = api_batch(worker, system_id, [reading(0), reading(1)])
    worker.deliver()
    second = api_batch(worker, system_id, [reading(1), reading(2), reading(0)])

    worker.deliver()

    assert_accounted(worker, first, total=2)
    assert_accounted(worker, second, total=3)
    assert reasons(worker, second) == {0: "duplicate", 2: "duplicate"}
    assert next(iter(worker.quarantine(second)))["reason_details"]["got"] == "already stored"
    assert worker.job(second).duplicate_readings == 2


def test_batches_of_one_invocation_load_together_and_a_reading_two_of_them_share_lands_once(
    worker: WorkerHarness, system_id: UUID
) -> None:
    # Given three batches in one invocation, the second and third repeating readings of the ones before them
    first = api_batch(worker, system_id, [reading(0), reading(1)])
    second = api_batch(worker, system_id, [reading(1), reading(2)])
    third = api_batch(worker, system_id, [reading(2), reading(0), reading(3, unit="psi"), reading(4)])

    # When they arrive together (as the event source hands them over: one invocation)
    assert worker.deliver() == {"batchItemFailures": []}

    # Then they were written in one transaction, each reading once, the repeats quarantined as stored duplicates
    (transactions,) = worker.query("SELECT count(DISTINCT xmin::text) FROM ingest_ledger")[0]
    assert transactions == 1
    assert_accounted(worker, first, total=2)
    assert_accounted(worker, second, total=2)
    assert_accounted(worker, third, total=4)
    assert reasons(worker, second) == {0: "duplicate"}
    assert reasons(worker, third) == {0: "duplicate", 1: "duplicate", 2: "invalid_unit"}
    assert [worker.job(job).duplicate_readings for job in (first, second, third)] == [0, 1, 2]
    assert stored(worker, first) + stored(worker, second) + stored(worker, third) == 4  # readings 0, 1, 2 and 4


def test_readings_stored_by_a_concurrent_loader_after_the_probe_are_still_duplicates(
    worker: WorkerHarness, system_id: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given stored readings the sink's probe misses, as it misses ones a concurrent loader commits right after it
    first = api_batch(worker, system_id, [reading(0), reading(1)])
    worker.deliver()
    monkeypatch.setattr(TimescaleReadingSink, "_stored_keys", lambda *_: set())
    second = api_batch(worker, system_id, [reading(1), reading(2), reading(0)])

    # When the batch is loaded: its COPY of "fresh" rows is refused too, and the row-by-row insert decides
    worker.deliver()

    # Then each reading is still stored once, the others quarantined as stored duplicates
    assert_accounted(worker, first, total=2)
    assert_accounted(worker, second, total=3)
    assert reasons(worker, second) == {0: "duplicate", 2: "duplicate"}
    assert worker.job(second).duplicate_readings == 2


def test_values_jsonb_cannot_hold_are_kept_whole_in_quarantine(worker: WorkerHarness, system_id: UUID) -> None:
    readings = (
        '[{"sensor_id": "a\\u0000b", "timestamp": "x", "value": NaN, "unit": "bar", "quality": 90},'
        ' {"sensor_id": "\\ud800", "timestamp": "x", "value": 1, "unit": "bar", "quality": 90}]'
    )
    body = f'{{"system_id": "{system_id}", "readings": {readings}}}'
    job_id = worker.send_api_batch(TENANT, system_id, body.encode(), 2)

    worker.deliver()

    rows = list(worker.quarantine(job_id))
    assert [row["reason"] for row in rows] == ["parse_error", "parse_error"]
    first = json.loads(rows[0]["raw"]["unstorable_json"])
    assert first["sensor_id"] == "a\x00b"
    assert first["value"] != first["value"]  # NaN, kept
    assert json.loads(rows[1]["raw"]["unstorable_json"])["sensor_id"] == "\ud800"
    assert worker.job(job_id).status is JobStatus.COMPLETED


# --- delivery: again, twice, half-way ------------------------------------------------------------------------------


def test_the_same_message_delivered_three_times_inserts_once(worker: WorkerHarness, system_id: UUID) -> None:
    job_id = api_batch(worker, system_id, [reading(i) for i in range(10)] + [reading(0, unit="psi")])
    messages = worker.receive_objects()

    for _ in range(3):
        assert worker.invoke(worker.event(messages)) == {"batchItemFailures": []}

    assert_accounted(worker, job_id, total=11)
    assert worker.job(job_id).inserted_readings == 10
    assert worker.query("SELECT count(*) FROM ingest_ledger WHERE job_id = %s", job_id) == [(1,)]


def test_an_s3_event_delivered_twice_in_one_invocation_lands_once(worker: WorkerHarness, system_id: UUID) -> None:
    # Given a drop whose S3 event SQS hands over twice in one invocation (two messages, one object version)
    rows = [{"system_id": system_id} | reading(i) for i in range(20)] + [
        {"system_id": system_id} | reading(0, unit="psi")
    ]
    key = drop(worker, "drops/demo/twice.csv", csv_drop(rows))
    (message,) = worker.receive_objects()
    twin = {**message, "MessageId": str(uuid4())}

    # When the invocation handles both
    assert worker.invoke(worker.event([message, twin])) == {"batchItemFailures": []}

    # Then the object was loaded once: no reading in quarantine twice, one ledger row
    (job,) = [job for job in worker.jobs() if job.object_key == key]
    assert_accounted(worker, job.job_id, total=21)
    assert worker.job(job.job_id).quarantined_readings == 1
    assert worker.query("SELECT count(*) FROM ingest_ledger WHERE job_id = %s", job.job_id) == [(1,)]


def test_one_jobs_chunk_named_twice_in_one_write_is_written_once_the_first_time(
    worker: WorkerHarness, system_id: UUID
) -> None:
    # Given chunk 0 of one upload's job twice in one write, from two versions of its key (had both been started)
    ref = ObjectRef(worker.bucket, f"drops/{TENANT}/uploads/{uuid4()}.ndjson", etag="e1")
    job = job_for(ref, target_of(ref), LoadPolicy(10, timedelta(days=1)), NOW)
    connector = DatabaseConnector(lambda: worker.dsn, 30_000, application_name="sluice-test")
    sink = TimescaleReadingSink(connector)

    def chunk(count: int, first: int) -> ChunkStream:
        records = [Record(n, str(system_id), reading(first + n)) for n in range(count)]
        return ChunkStream(0, iter(records), ReadingValidator(NOW), SystemBook(job, {system_id}))

    # When the sink writes them
    try:
        written = sink.write_chunks([(job, chunk(4, 0)), (job, chunk(6, 100))])
    finally:
        connector.close()

    # Then only the first is written, under one ledger row, and its counts are the ledger's
    assert written == [True, False]
    assert stored(worker, job.job_id) == 4
    assert worker.query(
        "SELECT total_readings, inserted_readings FROM ingest_ledger WHERE job_id = %s", job.job_id
    ) == [(4, 4)]


def test_a_duplicated_s3_event_in_another_message_is_a_no_op(worker: WorkerHarness, system_id: UUID) -> None:
    key = "drops/demo/2026/11/press-17.csv"
    drop(worker, key, csv_drop([{"system_id": system_id} | reading(i) for i in range(4)]))
    (original,) = worker.receive_objects()
    twin = sqs_client().send_message(QueueUrl=worker.queue_url, MessageBody=original["Body"])

    worker.invoke(worker.event([original]))
    job_id = worker.job_by_key(key).job_id
    completed_at = worker.job(job_id).completed_at
    twin_messages = worker.receive_objects()

    assert [message["MessageId"] for message in twin_messages] == [twin["MessageId"]]
    assert worker.invoke(worker.event(twin_messages)) == {"batchItemFailures": []}
    assert [job.job_id for job in worker.jobs()] == [job_id]
    assert worker.job(job_id).completed_at == completed_at
    assert_accounted(worker, job_id, total=4)


def test_a_drop_overwritten_before_it_is_read_loads_each_version_under_its_own_job(
    worker: WorkerHarness, system_id: UUID
) -> None:
    # moto's events name no version id: each names its version by the ETag, as an unversioned bucket's would.
    key = "drops/demo/2026/11/press-17-again.csv"
    drop(worker, key, csv_drop([{"system_id": system_id} | reading(i) for i in range(3)]))
    drop(worker, key, csv_drop([{"system_id": system_id} | reading(100 + i) for i in range(5)]))

    assert worker.deliver() == {"batchItemFailures": []}

    jobs = sorted(worker.jobs(), key=lambda job: job.total_readings or 0)
    assert [(job.total_readings, job.inserted_readings, job.duplicate_readings) for job in jobs] == [
        (3, 3, 0),
        (5, 5, 0),
    ]
    for job, first in zip(jobs, (0, 100), strict=True):
        earliest = worker.query("SELECT min(time) FROM readings WHERE job_id = %s", job.job_id)[0][0]
        assert earliest == NOW - timedelta(days=1) + timedelta(seconds=first)
        assert_accounted(worker, job.job_id, total=job.total_readings or 0)


def test_a_crash_after_a_committed_chunk_resumes_at_the_next_chunk(
    worker: WorkerHarness, system_id: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, SLUICE_CHUNK_READINGS="10")
    worker.crash_after_chunk(2)
    key = drop(worker, "drops/demo/crash.csv", csv_drop([{"system_id": system_id} | reading(i) for i in range(45)]))
    messages = worker.receive_objects()
    with pytest.raises(BatchProcessingError, match="crash after chunk 2"):
        worker.invoke(worker.event(messages))  # the only message failed: the whole batch is retried
    job_id = worker.job_by_key(key).job_id
    committed_before = worker.query(
        "SELECT chunk_no, committed_at FROM ingest_ledger WHERE job_id = %s ORDER BY 1", job_id
    )
    restarted = handler_module("LoadWorkerFunction")  # a new execution environment, as after a crash

    retried = restarted.lambda_handler(worker.event(messages), FakeLambdaContext(remaining_ms=300_000))
    restarted.get_service().connector.close()

    assert [chunk for chunk, _ in committed_before] == [0, 1, 2]
    assert retried == {"batchItemFailures": []}
    ledger = worker.query("SELECT chunk_no, committed_at FROM ingest_ledger WHERE job_id = %s ORDER BY 1", job_id)
    assert [chunk for chunk, _ in ledger] == [0, 1, 2, 3, 4]
    assert ledger[:3] == committed_before  # skipped, not written again
    assert_accounted(worker, job_id, total=45)
    assert stored(worker, job_id) == 45


# --- drops ---------------------------------------------------------------------------------------------------------


def test_a_csv_gz_drop_of_200k_rows_is_loaded_in_several_chunks(worker: WorkerHarness, system_id: UUID) -> None:
    sensors = [str(uuid4()) for _ in range(20)]
    rows = [
        {"system_id": system_id, "sensor_id": sensors[i % 20]} | reading(i // 20, sensor=sensors[i % 20])
        for i in range(200_000)
    ]
    rows[70_000]["unit"] = "psi"
    rows[150_001]["quality"] = "high"
    key = drop(worker, "drops/demo/2026/11/export.csv.gz", gzip.compress(csv_drop(rows)))

    assert worker.deliver() == {"batchItemFailures": []}

    job_id = worker.job_by_key(key).job_id

    assert_accounted(worker, job_id, total=200_000)
    assert worker.job(job_id).inserted_readings == 199_998
    assert worker.query("SELECT count(*) FROM ingest_ledger WHERE job_id = %s", job_id) == [(4,)]
    # Line numbers: the header is line 1.
    assert reasons(worker, job_id) == {70_002: "invalid_unit", 150_003: "parse_error"}
    job = worker.job(job_id)
    assert job.source == "drop"
    assert job.system_id is None
    assert job.object_key == "drops/demo/2026/11/export.csv.gz"


def test_a_drop_of_large_readings_is_written_in_chunks_bounded_by_the_text_they_span(
    worker: WorkerHarness, system_id: UUID
) -> None:
    # Given 80 valid readings that each carry 900 KiB besides their fields (70 MiB of text, 70 KiB gzipped)
    lines = (
        json.dumps({"system_id": str(system_id)} | reading(n) | {"note": "n" * (900 << 10)}).encode() + b"\n"
        for n in range(80)
    )
    key = drop(worker, "drops/demo/padded.ndjson.gz", gzip.compress(b"".join(lines)))

    # When the worker loads it, Then no chunk spans more than 32 MiB of it, and every reading lands once
    assert worker.deliver() == {"batchItemFailures": []}
    job_id = worker.job_by_key(key).job_id
    assert_accounted(worker, job_id, total=80)
    totals = worker.query("SELECT total_readings FROM ingest_ledger WHERE job_id = %s ORDER BY chunk_no", job_id)
    assert [total for (total,) in totals] == [37, 37, 6]


def test_ndjson_and_json_drops_name_their_systems_per_line_or_per_file(worker: WorkerHarness, system_id: UUID) -> None:
    lines = [
        json.dumps({"system_id": str(system_id)} | reading(0)),
        "",
        "{broken",
        json.dumps({"system_id": "not-a-uuid"} | reading(1)),
        json.dumps({"system_id": str(uuid4())} | reading(2)),
        json.dumps(reading(3)),
    ]
    drop(worker, "drops/demo/a b.ndjson", "\n".join(lines).encode())
    envelope = {"system_id": str(system_id), "readings": [reading(10), reading(11, value="x"), reading(10)]}
    drop(worker, "drops/demo/batch.JSON", json.dumps(envelope).encode())

    assert worker.deliver() == {"batchItemFailures": []}

    ndjson_job = worker.job_by_key("drops/demo/a b.ndjson").job_id
    json_job = worker.job_by_key("drops/demo/batch.JSON").job_id

    assert_accounted(worker, ndjson_job, total=5)
    assert reasons(worker, ndjson_job) == {
        3: "parse_error",
        4: "parse_error",
        5: "system_not_found",
        6: "parse_error",
    }
    broken = next(row for row in worker.quarantine(ndjson_job) if row["position"] == 3)
    assert broken["raw"] == "{broken"
    assert_accounted(worker, json_job, total=3)
    assert reasons(worker, json_job) == {1: "parse_error", 2: "duplicate"}


@pytest.mark.parametrize(
    ("key", "body", "message"),
    [
        ("drops/demo/x.csv.gz", b"system_id,sensor_id\n", "not readable gzip"),
        ("drops/demo/x.csv", b"\xff\xfe\x00bad", "not UTF-8"),
        ("drops/demo/x.xlsx", b"PK", "unknown file format '.xlsx'"),
        ("drops/demo/x.csv", b"a,b,c\n1,2,3\n", "the CSV header must name the columns"),
        ("drops/demo/x.json", b'{"readings": [], "system_id": "x"}', '"system_id" must come before "readings"'),
    ],
)
def test_an_unreadable_object_fails_its_job_and_the_other_messages_succeed(
    worker: WorkerHarness, system_id: UUID, key: str, body: bytes, message: str
) -> None:
    drop(worker, key, body)
    good_job = api_batch(worker, system_id, [reading(0)])

    response = worker.deliver()

    assert response == {"batchItemFailures": []}
    failed = worker.job_by_key(key)
    assert failed.status is JobStatus.FAILED
    assert failed.error_message is not None
    assert message in failed.error_message
    assert failed.total_readings == 0
    assert_accounted(worker, good_job, total=1)


def test_an_object_deleted_before_it_is_read_fails_its_job_without_naming_the_bucket(
    worker: WorkerHarness, system_id: UUID
) -> None:
    key = drop(worker, "drops/demo/deleted.csv", csv_drop([{"system_id": system_id} | reading(0)]))
    s3_client().delete_object(Bucket=worker.bucket, Key=key)

    assert worker.deliver() == {"batchItemFailures": []}

    failed = worker.job_by_key(key)
    assert (failed.status, failed.error_message) == (JobStatus.FAILED, OBJECT_GONE)
    assert worker.bucket not in OBJECT_GONE


def test_a_file_unreadable_half_way_keeps_its_committed_chunks_and_says_so(
    worker: WorkerHarness, system_id: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, SLUICE_CHUNK_READINGS="100")
    # The bytes are decoded in blocks (plain CSV text 64 Ki characters at a time), so the bad ones must sit well past
    # the first chunks to be met after them.
    body = csv_drop([{"system_id": system_id} | reading(i) for i in range(5000)]) + b"\xff\xff\n"
    key = drop(worker, "drops/demo/half.csv", body)

    worker.deliver()

    job = worker.job_by_key(key)
    assert job.status is JobStatus.FAILED
    assert job.error_message is not None
    assert job.total_readings is not None
    assert 0 < job.total_readings < 5000
    assert job.total_readings % 100 == 0
    assert job.inserted_readings == job.total_readings == stored(worker, job.job_id)
    assert job.error_message.startswith("the object is not UTF-8")
    assert f"({job.total_readings} readings of it had been stored or quarantined)" in job.error_message


def test_test_events_folder_markers_and_foreign_keys_are_acknowledged_without_jobs(worker: WorkerHarness) -> None:
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": worker.bucket})
    bodies = [test_event, s3_event_body(worker.bucket, "drops/demo/"), s3_event_body(worker.bucket, "other/x.csv")]
    bodies += [s3_event_body(worker.bucket, "drops/-bad tenant/x.csv"), "not json"]
    for body in bodies:
        sqs_client().send_message(QueueUrl=worker.queue_url, MessageBody=body)

    assert worker.deliver() == {"batchItemFailures": []}
    assert worker.jobs() == []


def test_an_incoming_object_no_job_record_names_is_ignored_and_makes_no_job(
    worker: WorkerHarness, system_id: UUID, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = io.StringIO()
    monkeypatch.setattr(worker.module.logger.registered_handler, "stream", logs)
    # Given a batch put straight under incoming/ with no API call, and a copy of an accepted batch under another
    # tenant's prefix (the same job id, another tenant and key)
    body = json.dumps({"system_id": str(system_id), "readings": [reading(0)]}).encode()
    forged = batch_object_key(TENANT, NOW, uuid4())
    worker.put(forged, body)
    accepted = api_batch(worker, system_id, [reading(1)])
    borrowed = batch_object_key("other", NOW, accepted)
    worker.put(borrowed, body)

    # When the worker handles their S3 events
    assert worker.deliver() == {"batchItemFailures": []}

    # Then only the accepted batch is loaded; the others are acknowledged without a job, warned about and counted
    assert [job.object_key for job in worker.jobs()] == [
        batch_object_key(TENANT, worker.job(accepted).created_at, accepted)
    ]
    assert_accounted(worker, accepted, total=1)
    assert worker.query("SELECT count(*) FROM readings") == [(1,)]
    assert worker.receive() == []  # deleted, not retried
    warnings = [json.loads(line) for line in logs.getvalue().splitlines() if '"level":"WARNING"' in line]
    assert sorted(line["object_key"] for line in warnings) == sorted([forged, borrowed])
    (document,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert document["IgnoredObjects"] == [1.0, 1.0]


def test_the_sample_event_names_an_object_the_worker_reads(worker: WorkerHarness, system_id: UUID) -> None:
    event = load_event("load-worker-sqs-s3-drop.json")
    key = "drops/demo/2026/11/press-17 export 2026-11-19.csv.gz"
    body = gzip.compress(csv_drop([{"system_id": system_id} | reading(0)]))
    answer = worker.put(key, body)
    worker.receive()  # the event S3 sent is replaced by the sample's
    record = json.loads(event["Records"][0]["body"])
    record["Records"][0]["s3"]["bucket"]["name"] = worker.bucket
    record["Records"][0]["s3"]["object"]["versionId"] = answer["VersionId"]
    event["Records"][0]["body"] = json.dumps(record)
    sqs_client().send_message(QueueUrl=worker.queue_url, MessageBody=event["Records"][0]["body"])

    assert worker.deliver() == {"batchItemFailures": []}
    (job,) = worker.jobs()
    assert job.object_key == key
    assert job.inserted_readings == 1


# --- faults ----------------------------------------------------------------------------------------------------------


def test_with_the_database_unreachable_every_message_fails_and_no_job_completes(
    worker: WorkerHarness, system_id: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = api_batch(worker, system_id, [reading(0)])
    drop(worker, "drops/demo/x.csv", csv_drop([{"system_id": system_id} | reading(1)]))
    messages = worker.receive_objects()
    secret = {"host": "127.0.0.1", "port": 1, "username": "x", "password": "x", "sslmode": "disable"}
    arn = secretsmanager_client().create_secret(Name="unreachable", SecretString=json.dumps(secret))["ARN"]
    configure(monkeypatch, SLUICE_DB_SECRET_ARN=arn)
    cold = handler_module("LoadWorkerFunction")

    with pytest.raises(BatchProcessingError, match="All records failed processing"):
        cold.lambda_handler(worker.event(messages), FakeLambdaContext())

    assert worker.job(job_id).status is JobStatus.QUEUED
    assert [job.job_id for job in worker.jobs()] == [job_id]  # the drop's job was never even created


def test_with_the_database_unreachable_a_message_naming_no_job_is_still_acknowledged(
    worker: WorkerHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An outage must not send s3:TestEvent or a stray message through five retries into the dead-letter queue.
    sqs_client().send_message(QueueUrl=worker.queue_url, MessageBody="not an S3 event")
    messages = worker.receive()  # the stray one, and the s3:TestEvent S3 sent when notifications were set up
    assert sorted('"s3:TestEvent"' in message["Body"] for message in messages) == [False, True]
    secret = {"host": "127.0.0.1", "port": 1, "username": "x", "password": "x", "sslmode": "disable"}
    arn = secretsmanager_client().create_secret(Name="unreachable", SecretString=json.dumps(secret))["ARN"]
    configure(monkeypatch, SLUICE_DB_SECRET_ARN=arn)
    cold = handler_module("LoadWorkerFunction")

    assert cold.lambda_handler(worker.event(messages), FakeLambdaContext()) == {"batchItemFailures": []}


def test_the_database_secret_gives_a_dsn_that_verifies_the_server_with_the_configured_root_certificate(
    worker: WorkerHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a secret in RDS's layout that names no sslmode, and a CA bundle shipped with the function
    secret = {"host": "db.example.internal", "port": 5432, "username": "sluice_worker", "password": "pw"}
    arn = secretsmanager_client().create_secret(Name="tls", SecretString=json.dumps(secret))["ARN"]
    configure(monkeypatch, SLUICE_DB_SECRET_ARN=arn, SLUICE_DB_SSLROOTCERT="/opt/sluice/ca.pem")

    # When the worker builds its DSN from it
    dsn = conninfo_to_dict(database_dsn(get_load_worker_settings()))

    # Then libpq checks the server's certificate and name against that CA
    assert (dsn["host"], dsn["sslmode"], dsn["sslrootcert"]) == (
        "db.example.internal",
        "verify-full",
        "/opt/sluice/ca.pem",
    )


def test_a_connection_lost_while_warm_is_replaced_before_the_next_message(
    worker: WorkerHarness, system_id: UUID
) -> None:
    api_batch(worker, system_id, [reading(0)])
    worker.deliver()
    kept = worker.module.get_service().connector.connection()
    worker.query("SELECT pg_terminate_backend(%s)", kept.info.backend_pid)
    job_id = api_batch(worker, system_id, [reading(1)])

    assert worker.deliver() == {"batchItemFailures": []}
    assert_accounted(worker, job_id, total=1)


def test_a_long_file_keeps_its_message_invisible_and_stops_before_the_time_runs_out(
    worker: WorkerHarness, system_id: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, SLUICE_CHUNK_READINGS="10", SLUICE_VISIBILITY_HEARTBEAT_SECONDS="0")
    key = drop(worker, "drops/demo/long.csv", csv_drop([{"system_id": system_id} | reading(i) for i in range(30)]))
    messages = worker.receive_objects(visibility_timeout=1)
    worker.remaining_ms = 10_000  # under the 20 s a new chunk needs

    with pytest.raises(BatchProcessingError, match="ms left after chunk 0"):
        worker.invoke(worker.event(messages))

    job_id = worker.job_by_key(key).job_id
    assert worker.query("SELECT count(*) FROM ingest_ledger WHERE job_id = %s", job_id) == [(1,)]
    assert worker.job(job_id).status is JobStatus.PROCESSING
    # Extended from 1 s to the template's 1800 s after chunk 0, then released: the retry may start at once.
    (again,) = worker.receive_objects()
    assert again["MessageId"] == messages[0]["MessageId"]


def test_a_file_of_blank_lines_keeps_its_message_invisible_and_stops_before_the_time_runs_out(
    worker: WorkerHarness, system_id: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a drop that is 4 MiB of blank lines (4 KiB gzipped) before its one reading: no chunk commits meanwhile.
    configure(monkeypatch, SLUICE_VISIBILITY_HEARTBEAT_SECONDS="0")
    body = gzip.compress(b"\n" * (4 << 20) + json.dumps({"system_id": str(system_id)} | reading(0)).encode())
    key = drop(worker, "drops/demo/blank.ndjson.gz", body)
    messages = worker.receive_objects(visibility_timeout=1)
    worker.remaining_ms = 10_000  # under the 20 s the worker keeps in hand

    # When the worker reads it, then Then it stops while reading, having kept the message and released it.
    with pytest.raises(BatchProcessingError, match="ms left while reading"):
        worker.invoke(worker.event(messages))

    job_id = worker.job_by_key(key).job_id
    assert worker.query("SELECT count(*) FROM ingest_ledger WHERE job_id = %s", job_id) == [(0,)]
    assert worker.job(job_id).status is JobStatus.PROCESSING
    (again,) = worker.receive_objects()
    assert again["MessageId"] == messages[0]["MessageId"]


class RefusingReadAhead(S3ObjectSource):
    """An object source whose read-ahead fails (as a thread pool does once shut down); it opens objects as usual."""

    def read_ahead(self, refs: Iterable[ObjectRef]) -> None:
        raise RuntimeError("cannot schedule new futures after shutdown")


def test_a_read_ahead_that_fails_fails_no_message_of_the_batch(worker: WorkerHarness, system_id: UUID) -> None:
    # Given a batch of two messages and a read-ahead (run before any message is handled) that fails.
    objects = RefusingReadAhead()
    service = worker.module.get_service()
    worker.service = dataclasses.replace(
        service, objects=objects, ports=dataclasses.replace(service.ports, objects=objects)
    )
    first, second = api_batch(worker, system_id, [reading(0)]), api_batch(worker, system_id, [reading(1)])

    # When the batch is delivered, Then both messages load.
    assert worker.deliver() == {"batchItemFailures": []}
    assert_accounted(worker, first, total=1)
    assert_accounted(worker, second, total=1)


def test_a_message_failing_its_last_receive_fails_its_jobs_before_it_is_parked(
    worker: WorkerHarness, system_id: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = io.StringIO()
    monkeypatch.setattr(worker.module.logger.registered_handler, "stream", logs)
    job_id = api_batch(worker, system_id, [reading(0)])
    drop(worker, "drops/demo/refused.csv", csv_drop([{"system_id": system_id} | reading(1)]))
    # The database refuses these loads, every time, with an error that names a secret and a resource: each receive
    # fails until SQS parks the message.
    with psycopg.connect(worker.dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION"
            " 'refused: password=hunter2 for sluice_worker@db-prod-7.internal'; END $$"
        )
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON ingest_ledger FOR EACH ROW EXECUTE FUNCTION refuse()")
    messages = worker.receive_objects()

    for receive in (1, 4):
        for message in messages:
            message.setdefault("Attributes", {})["ApproximateReceiveCount"] = str(receive)
        with pytest.raises(BatchProcessingError):
            worker.invoke(worker.event(messages))
        assert {job.status for job in worker.jobs()} == {JobStatus.PROCESSING}  # retried: not given up yet

    for message in messages:
        message["Attributes"]["ApproximateReceiveCount"] = "5"
    with pytest.raises(BatchProcessingError):
        worker.invoke(worker.event(messages))

    # Each job failed with a fixed sentence and an error id; the error itself is only in the log, under that id.
    jobs = worker.jobs()
    assert len(jobs) == 2
    assert {job.job_id for job in jobs} >= {job_id}
    warnings = [json.loads(line) for line in logs.getvalue().splitlines() if '"level":"WARNING"' in line]
    logged = {warning["error_id"]: warning for warning in warnings}
    for job in jobs:
        assert job.status is JobStatus.FAILED
        assert job.error_message is not None
        assert job.error_message.startswith(
            "The batch could not be loaded after 5 attempts. It is parked in the dead-letter queue"
        )
        for leak in ("hunter2", "password", "sluice_worker", "db-prod-7", "refused", "ingest_ledger", "Error"):
            assert leak not in job.error_message
        error_id = job.error_message.removesuffix(" to support.").rsplit(" ", 1)[-1]
        assert job.error_message.endswith(f"Quote error id {error_id} to support.")
        assert "password=hunter2 for sluice_worker@db-prod-7.internal" in logged[error_id]["error"]
        assert str(job.job_id) in logged[error_id]["job_ids"]


def test_a_job_finished_meanwhile_is_not_failed_by_a_parked_twin(worker: WorkerHarness, system_id: UUID) -> None:
    job_id = api_batch(worker, system_id, [reading(0)])
    messages = worker.receive_objects()
    worker.invoke(worker.event(messages))
    assert worker.job(job_id).status is JobStatus.COMPLETED

    _, parked = worker.module.get_service().park(parse_message(messages[0]["Body"]), RuntimeError("late"), 5)

    assert parked == []
    assert worker.job(job_id).status is JobStatus.COMPLETED


def test_a_message_that_names_no_object_parks_nothing(worker: WorkerHarness) -> None:
    assert worker.module.get_service().park(parse_message("not an S3 event"), RuntimeError("x"), 5)[1] == []


def test_each_message_body_is_parsed_once_whatever_becomes_of_it(
    worker: WorkerHarness, system_id: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given every body the handler parses recorded, a batch that loads with a test event beside it, and a drop
    # whose load the database refuses on its last receive (so its job is failed and the message parked).
    parsed: list[str] = []
    parse = worker.module.parse_message

    def recording_parse(body: str) -> Any:
        parsed.append(body)
        return parse(body)

    monkeypatch.setattr(worker.module, "parse_message", recording_parse)
    api_batch(worker, system_id, [reading(0)])
    loaded = worker.receive_objects()
    test_event = dict(loaded[0], MessageId=str(uuid4()), Body=json.dumps({"Event": "s3:TestEvent"}))
    drop(worker, "drops/demo/refused.csv", csv_drop([{"system_id": system_id} | reading(1)]))
    refused = worker.receive_objects()
    for message in refused:
        message.setdefault("Attributes", {})["ApproximateReceiveCount"] = "5"

    # When the handler takes them (read-ahead, log context, the database check, loading, and parking)
    first = worker.invoke(worker.event([*loaded, test_event]))
    with psycopg.connect(worker.dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$"
        )
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON ingest_ledger FOR EACH ROW EXECUTE FUNCTION refuse()")
    with pytest.raises(BatchProcessingError):
        worker.invoke(worker.event(refused))

    # Then each body was parsed exactly once, by the handler: nothing further in reads it again.
    assert first == {"batchItemFailures": []}
    assert {job.status for job in worker.jobs()} == {JobStatus.COMPLETED, JobStatus.FAILED}
    assert sorted(parsed) == sorted(message["Body"] for message in [*loaded, test_event, *refused])


def test_a_drop_reusing_another_tenants_sensor_and_instants_lands_beside_them(
    worker: WorkerHarness, system_id: UUID
) -> None:
    # Tenant "other" drops a file naming demo's sensor at demo's instants under a system of its own, and repeats
    # one of its rows: only that repeat, of other's own reading, is a duplicate; demo's readings are untouched.
    owner = api_batch(worker, system_id, [reading(0), reading(1)])
    worker.deliver()
    intruder = worker.query("INSERT INTO systems (tenant_id, name) VALUES ('other', 'press-9') RETURNING id")[0][0]
    rows = [{"system_id": intruder} | reading(second, value=1.0) for second in (0, 1, 1)]
    drop(worker, "drops/other/forged.csv", csv_drop(rows))

    assert worker.deliver() == {"batchItemFailures": []}

    forged = worker.job_by_key("drops/other/forged.csv")
    assert (forged.tenant_id, forged.inserted_readings, forged.duplicate_readings) == ("other", 2, 1)
    assert reasons(worker, forged.job_id) == {4: "duplicate"}  # the line number: the header is line 1
    assert_accounted(worker, owner, total=2)
    assert worker.query("SELECT value FROM readings WHERE job_id = %s", owner) == [(212.5,), (212.5,)]
