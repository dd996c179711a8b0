"""The load domain without AWS or a database: jobs, chunks, system checks and quarantine rows, and one object's
load through fake ports. S3 events and keys are tested in test_objects.py."""

import io
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest

from sluice.domain.chunks import (
    STORED_DUPLICATE,
    ChunkStream,
    QuarantineRow,
    RepeatFinder,
    SystemBook,
    chunk_streams,
    inserted_and_duplicates,
    quarantine_row,
    storable_json,
)
from sluice.domain.formats import Record, Unparsable
from sluice.domain.load import (
    LOADED_BY_ANOTHER_MESSAGE,
    UNCLAIMED_BATCH,
    ChunkWrite,
    JobFinish,
    LoadCounts,
    LoadOutcome,
    LoadPolicy,
    LoadPorts,
    LoadReport,
    MessageOutcome,
    NotStarted,
    OpenedObject,
    claims,
    in_turn,
    job_for,
    load_message,
    load_messages,
    load_object,
    park_message,
)
from sluice.domain.objects import IngestMessage, ObjectRef, Target, TargetKind, parse_message, target_of
from sluice.domain.validation import ReadingValidator
from sluice.errors import OutOfTimeError, StorageUnavailableError, UnreadableObjectError
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice.models.readings import QuarantineReason, Rejection

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SYSTEM = UUID("3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01")
SENSOR = "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8"
API_JOB = UUID("0b7f6a8e-2c1d-4e5f-9a8b-7c6d5e4f3a2b")
POLICY = LoadPolicy(chunk_readings=3, job_retention=timedelta(days=90))
INVALID = Rejection(QuarantineReason.INVALID_UNIT, "unit", "bar", "'psi'")


def job(tenant: str = "demo") -> Job:
    return job_for(
        ObjectRef("b", f"drops/{tenant}/x.csv"), target_of(ObjectRef("b", f"drops/{tenant}/x.csv")), POLICY, NOW
    )


def reading(second: int, **changes: object) -> dict[str, object]:
    stamp = (NOW - timedelta(minutes=10) + timedelta(seconds=second)).isoformat()
    return {"sensor_id": SENSOR, "timestamp": stamp, "value": 200.0, "unit": "bar", "quality": 95} | changes


# --- jobs ---------------------------------------------------------------------------------------------------------


def test_a_drop_job_is_queued_without_a_system_of_its_own() -> None:
    made = job("demo")

    assert (made.source, made.status, made.system_id, made.tenant_id) == (
        JobSource.DROP,
        JobStatus.QUEUED,
        None,
        "demo",
    )
    assert made.expires_at == int((NOW + timedelta(days=90)).timestamp())


def test_an_ignored_object_has_no_job() -> None:
    with pytest.raises(ValueError, match="belongs to no job"):
        job_for(ObjectRef("b", "drops/"), Target(TargetKind.IGNORED, reason="a folder"), POLICY, NOW)


def test_an_api_batch_job_is_the_one_its_target_names() -> None:
    ref = ObjectRef("b", f"incoming/acme/2026/11/20/{API_JOB}.json", "v1")

    made = job_for(ref, Target(TargetKind.API_BATCH, tenant_id="acme", job_id=API_JOB), POLICY, NOW)

    assert (made.job_id, made.tenant_id, made.source, made.status) == (API_JOB, "acme", JobSource.API, JobStatus.QUEUED)
    assert (made.bucket, made.object_key, made.created_at) == ("b", ref.key, NOW)


# --- systems and chunks -----------------------------------------------------------------------------------------------


def test_system_ids_are_parsed_once_and_checked_against_the_tenant() -> None:
    book = SystemBook(job(), {SYSTEM})

    assert book.suffix(str(SYSTEM)) == (SYSTEM, job().job_id)
    assert book.suffix(str(SYSTEM).upper()) == (SYSTEM, job().job_id)
    unknown = book.suffix(str(uuid4()))
    assert isinstance(unknown, Rejection)
    assert (unknown.reason, unknown.expected) == (QuarantineReason.SYSTEM_NOT_FOUND, "a system of tenant demo")
    for text, got in (
        (None, "nothing (field missing)"),
        ("x", "'x'"),
        (["a"], "an array of 1"),
        ("a" * 50, "'" + "a" * 50 + "'"),
    ):
        verdict = book.suffix(text)
        assert isinstance(verdict, Rejection)
        assert (verdict.reason, verdict.field, verdict.got) == (QuarantineReason.PARSE_ERROR, "system_id", got)


@pytest.mark.parametrize(
    "look_alike",
    [
        str(SYSTEM)[:-1] + "\u0661",  # an Arabic-Indic digit, which int() reads as 1
        "+" + str(SYSTEM).replace("-", "")[1:],
        " " + str(SYSTEM),
        str(SYSTEM).replace("-", "_"),
    ],
)
def test_a_system_id_spelled_with_look_alike_characters_is_not_a_system_id(look_alike: str) -> None:
    # Given text that UUID() would read as some system id, the tenant's own among them
    book = SystemBook(job(), {SYSTEM, UUID(str(SYSTEM)[:-1] + "1")})

    # When a reading names it
    verdict = book.suffix(look_alike)

    # Then it is a parse error, as a sensor id spelled so is: neither stored nor taken for another system
    assert isinstance(verdict, Rejection)
    assert (verdict.reason, verdict.field) == (QuarantineReason.PARSE_ERROR, "system_id")
    assert quarantine_row(0, {"sensor_id": look_alike}, verdict, None).sensor_id is None


def test_a_chunk_sorts_its_records_into_rows_and_quarantine() -> None:
    records = [
        Record(0, str(SYSTEM), reading(0)),
        Record(1, str(SYSTEM), reading(1, unit="psi")),
        Record(2, "nope", reading(2)),
        Record(3, str(uuid4()), reading(3)),
        Record(4, str(uuid4()), reading(4, unit="psi")),
        Record(5, str(SYSTEM), reading(0)),
        Record(6, None, Unparsable("garbage", "a JSON object", "invalid JSON")),
        Record(7, {"x": 1}, reading(7)),
    ]

    chunk = ChunkStream(0, iter(records), ReadingValidator(NOW), SystemBook(job(), {SYSTEM}))
    chunk.finish()

    assert chunk.total == 8
    assert [row[5] for row in chunk.rows] == [SYSTEM]
    assert chunk.sources == [records[0]]
    assert [(row.position, row.reason.value) for row in chunk.quarantine] == [
        (1, "invalid_unit"),
        (2, "parse_error"),
        (3, "system_not_found"),
        (4, "invalid_unit"),
        (5, "duplicate"),
        (6, "parse_error"),
        (7, "parse_error"),
    ]
    assert chunk.quarantine[0].system_id == SYSTEM
    assert chunk.quarantine[2].system_id == UUID(str(records[3].system_id))  # kept for the reviewer
    assert chunk.quarantine[3].system_id == UUID(str(records[4].system_id))
    assert json.loads(chunk.quarantine[4].details)["got"] == "a repeat of #0"
    assert chunk.quarantine[5].raw == '"garbage"'


def test_the_first_reading_of_a_system_sensor_and_instant_is_kept_and_each_later_one_names_it() -> None:
    finder = RepeatFinder()
    sensor, other = UUID(SENSOR), uuid4()
    time = NOW - timedelta(minutes=10)

    assert finder.repeat_of(SYSTEM, sensor, time, 0) is None
    assert finder.repeat_of(SYSTEM, other, time, 1) is None
    assert finder.repeat_of(SYSTEM, sensor, time + timedelta(microseconds=1), 2) is None
    repeat = finder.repeat_of(SYSTEM, UUID(SENSOR.upper()), time.astimezone(timezone(timedelta(hours=2))), 3)
    assert repeat == Rejection(
        QuarantineReason.DUPLICATE, "timestamp", "one reading per system, sensor and instant", "a repeat of #0"
    )
    later = finder.repeat_of(SYSTEM, sensor, time, 9)
    assert later is not None
    assert later.got == "a repeat of #0"  # always the first one, not the latest repeat


def test_the_same_sensor_and_instant_under_another_system_is_not_a_repeat() -> None:
    # Systems belong to one tenant each: a sensor id reused under another system is another reading.
    finder = RepeatFinder()
    sensor, time = UUID(SENSOR), NOW - timedelta(minutes=10)

    assert finder.repeat_of(SYSTEM, sensor, time, 0) is None
    assert finder.repeat_of(uuid4(), sensor, time, 1) is None
    assert finder.repeat_of(SYSTEM, sensor, time, 2) is not None


def test_repeats_are_found_within_a_chunk_and_left_to_the_database_across_chunks() -> None:
    # A chunk is one transaction: a repeat of a reading in an earlier chunk is a stored duplicate, found on insert.
    records = iter(
        [
            Record(0, str(SYSTEM), reading(0)),
            Record(1, str(SYSTEM), reading(1)),
            Record(2, str(SYSTEM), reading(0)),
            Record(3, str(SYSTEM), reading(0)),
        ]
    )
    chunks = []
    for chunk in chunk_streams(records, 2, ReadingValidator(NOW), SystemBook(job(), {SYSTEM})):
        chunk.finish()
        chunks.append(chunk)

    assert [[row[1] for row in chunk.rows] for chunk in chunks] == [[UUID(SENSOR)] * 2, [UUID(SENSOR)]]
    assert [(row.position, row.reason) for row in chunks[1].quarantine] == [(3, QuarantineReason.DUPLICATE)]
    assert json.loads(chunks[1].quarantine[0].details)["got"] == "a repeat of #2"


def test_valid_rows_the_database_did_not_insert_are_stored_duplicates() -> None:
    records = [Record(0, str(SYSTEM), reading(0)), Record(1, str(SYSTEM), reading(1, value=7.5, quality=60))]
    chunk = ChunkStream(0, iter(records), ReadingValidator(NOW), SystemBook(job(), {SYSTEM}))
    chunk.finish()
    first_time, second_time = (row[0] for row in chunk.rows)
    assert isinstance(first_time, datetime)
    assert isinstance(second_time, datetime)

    stored, (duplicate,) = inserted_and_duplicates(chunk, {(SYSTEM.int, UUID(SENSOR).int, first_time)})

    assert stored == [chunk.rows[0]]

    assert (duplicate.position, duplicate.system_id, duplicate.sensor_id) == (1, SYSTEM, UUID(SENSOR))
    assert (duplicate.value, duplicate.unit, duplicate.quality) == (7.5, "bar", 60)
    assert duplicate.time == NOW - timedelta(minutes=10) + timedelta(seconds=1)
    assert duplicate.reason is QuarantineReason.DUPLICATE
    assert json.loads(duplicate.details) == STORED_DUPLICATE.as_details()
    assert json.loads(duplicate.raw) == records[1].raw
    both = {(SYSTEM.int, UUID(SENSOR).int, first_time), (SYSTEM.int, UUID(SENSOR).int, second_time)}
    assert inserted_and_duplicates(chunk, both) == (chunk.rows, [])
    # Another system's reading of that sensor at that instant is not this one: keys include the system.
    elsewhere = {(uuid4().int, UUID(SENSOR).int, first_time), (SYSTEM.int, UUID(SENSOR).int, second_time)}
    stored, duplicates = inserted_and_duplicates(chunk, elsewhere)
    assert (stored, [row.position for row in duplicates]) == ([chunk.rows[1]], [0])


def test_chunks_are_cut_by_count_and_a_skipped_chunk_is_read_past() -> None:
    records = iter([Record(n, str(SYSTEM), reading(n)) for n in range(7)])
    book = SystemBook(job(), {SYSTEM})
    seen = []

    for chunk in chunk_streams(records, 3, ReadingValidator(NOW), book):
        if chunk.chunk_no == 1:
            chunk.skip()
        else:
            chunk.finish()
        seen.append((chunk.chunk_no, chunk.total, len(chunk.rows)))

    assert seen == [(0, 3, 3), (1, 3, 0), (2, 1, 1)]


def test_a_chunk_read_in_part_is_finished_without_judging_twice() -> None:
    chunk = ChunkStream(
        0,
        iter([Record(n, str(SYSTEM), reading(n)) for n in range(4)]),
        ReadingValidator(NOW),
        SystemBook(job(), {SYSTEM}),
    )

    first = next(chunk.valid_rows())
    chunk.finish()

    assert chunk.rows[0] == first
    assert (chunk.total, len(chunk.rows)) == (4, 4)


# --- quarantine rows --------------------------------------------------------------------------------------------------


def test_a_quarantine_row_keeps_every_field_that_fits_its_column() -> None:
    row = quarantine_row(3, reading(0, system_id=str(SYSTEM), quality=12.0), INVALID, None)

    assert (row.position, row.system_id, row.sensor_id, row.unit, row.quality) == (3, SYSTEM, UUID(SENSOR), "bar", 12)
    assert row.time == NOW - timedelta(minutes=10)
    assert row.value == 200.0
    assert json.loads(row.details) == INVALID.as_details()


@pytest.mark.parametrize(
    ("changes", "column", "expected"),
    [
        ({"value": 10**400}, "value", None),
        ({"value": float("inf")}, "value", math.inf),
        ({"value": "12"}, "value", None),
        ({"value": True}, "value", None),
        ({"unit": "b\x00ar"}, "unit", None),
        ({"unit": "\ud800"}, "unit", None),
        ({"unit": "u" * 300}, "unit", None),
        ({"quality": 40000}, "quality", None),
        ({"quality": 12.5}, "quality", None),
        ({"timestamp": "2026-11-20T08:00:00"}, "time", None),
        ({"timestamp": "soon"}, "time", None),
        ({"timestamp": 12}, "time", None),
        ({"sensor_id": "x" * 50}, "sensor_id", None),
        ({"sensor_id": 7}, "sensor_id", None),
    ],
)
def test_a_field_that_does_not_fit_its_column_is_left_out(
    changes: dict[str, object], column: str, expected: object
) -> None:
    row = quarantine_row(0, reading(0) | changes, INVALID, SYSTEM)

    assert getattr(row, column) == expected


def test_a_quarantined_non_object_keeps_only_its_raw_value() -> None:
    row = quarantine_row(0, [1, 2], INVALID, None)

    assert (row.system_id, row.sensor_id, row.time, row.value, row.unit, row.quality) == (None,) * 6
    assert row.raw == "[1,2]"


@pytest.mark.parametrize(
    "value",
    [
        {"value": float("nan")},
        {"value": float("-inf")},
        {"sensor_id": "a\x00b"},
        {"sensor_id": "\udc00"},
    ],
)
def test_values_jsonb_cannot_hold_are_wrapped_and_come_back_exactly(value: dict[str, object]) -> None:
    stored = json.loads(storable_json(value))

    restored = json.loads(stored["unstorable_json"])
    assert list(restored) == list(value)
    assert repr(restored) == repr(value)


def test_plain_values_are_stored_as_they_are_and_unserialisable_ones_as_text() -> None:
    assert storable_json({"é": [1, 2.5, None, True]}) == '{"é":[1,2.5,null,true]}'
    assert json.loads(json.loads(storable_json({1, 2}))["unstorable_json"]) == "{1, 2}"


def test_counts_give_a_success_rate_when_there_were_readings() -> None:
    assert LoadCounts(chunks=1, total=4, inserted=3, quarantined=1, duplicates=0).success_rate == 0.75
    assert LoadCounts(chunks=0, total=0, inserted=0, quarantined=0, duplicates=0).success_rate is None


# --- one object's load, through fake ports -----------------------------------------------------------------------


@dataclass
class FakeJobs:
    completed: set[UUID] = field(default_factory=set)
    finished_already: set[UUID] = field(default_factory=set)
    # The API batches' job records, as IngestApiFunction wrote them (a drop's record is made by start_job).
    api_records: dict[UUID, Job] = field(default_factory=dict)
    started: list[Job] = field(default_factory=list)
    finished: dict[UUID, JobFinish] = field(default_factory=dict)
    parked: dict[UUID, str] = field(default_factory=dict)

    def start_job(self, job: Job, now: datetime) -> Job | NotStarted:
        self.started.append(job)
        record = self.api_records.get(job.job_id)
        if job.source is JobSource.API and (record is None or not claims(record, job)):
            return NotStarted.UNCLAIMED
        if job.job_id in self.completed:
            return NotStarted.COMPLETED
        return job.model_copy(update={"status": JobStatus.PROCESSING, "started_at": now})

    def finish_job(self, job_id: UUID, finish: JobFinish) -> None:
        self.finished[job_id] = finish

    def park_job(self, job_id: UUID, message: str, now: datetime) -> bool:
        if job_id in self.finished_already:
            return False
        self.parked[job_id] = message
        return True


@dataclass
class FakeObjects:
    stored: dict[str, bytes] = field(default_factory=dict)
    opened: list[ObjectRef] = field(default_factory=list)

    def open_object(self, ref: ObjectRef) -> OpenedObject:
        self.opened.append(ref)
        if ref.key not in self.stored:
            raise UnreadableObjectError(f"s3://{ref.bucket}/{ref.key} no longer exists")
        return OpenedObject(io.BytesIO(self.stored[ref.key]), None)


@dataclass
class FakeSink:
    """The ledger as rows of (total, inserted, quarantined, duplicates) per job and chunk, and what was written."""

    systems: set[UUID] = field(default_factory=lambda: {SYSTEM})
    ledger: dict[tuple[UUID, int], tuple[int, int, int, int]] = field(default_factory=dict)
    # Chunks a concurrent twin of the message commits while this one reads the object.
    committed_meanwhile: set[int] = field(default_factory=set)
    rows: list[tuple[object, ...]] = field(default_factory=list)
    quarantined: list[tuple[UUID, QuarantineRow]] = field(default_factory=list)
    # Each write_chunks call, as the jobs it wrote together.
    transactions: list[list[UUID]] = field(default_factory=list)
    # A job whose chunks the database refuses (every transaction holding one fails, as one failing statement would).
    refused: set[UUID] = field(default_factory=set)
    # Rows written when each ``meanwhile`` ran (the next chunk read while this one commits).
    read_meanwhile: list[int] = field(default_factory=list)

    def tenant_systems(self, tenant_id: str) -> set[UUID]:
        return set(self.systems)

    def committed_chunks(self, job_id: UUID) -> set[int]:
        return {chunk_no for written, chunk_no in self.ledger if written == job_id}

    def write_chunks(self, writes: Sequence[ChunkWrite], meanwhile: Callable[[], None] | None = None) -> list[bool]:
        if any(job.job_id in self.refused for job, _ in writes):
            for _, chunk in writes:
                chunk.finish()  # read, then rolled back: nothing kept
            raise psycopg_like_error()
        self.transactions.append([job.job_id for job, _ in writes])
        written = [self._write(job, chunk) for job, chunk in writes]
        if meanwhile is not None:
            meanwhile()
            self.read_meanwhile.append(len(self.rows))
        return written

    def _write(self, job: Job, chunk: ChunkStream) -> bool:
        if chunk.chunk_no in self.committed_meanwhile or (job.job_id, chunk.chunk_no) in self.ledger:
            self.ledger.setdefault((job.job_id, chunk.chunk_no), (0, 0, 0, 0))
            chunk.skip()
            return False
        rows = list(chunk.valid_rows())
        duplicates = sum(row.reason is QuarantineReason.DUPLICATE for row in chunk.quarantine)
        self.rows += rows
        self.quarantined += [(job.job_id, row) for row in chunk.quarantine]
        self.ledger[job.job_id, chunk.chunk_no] = (chunk.total, len(rows), len(chunk.quarantine), duplicates)
        return True

    def job_counts(self, job_ids: Sequence[UUID]) -> dict[UUID, LoadCounts]:
        counts = {}
        for job_id in job_ids:
            mine = [row for (written, _), row in self.ledger.items() if written == job_id]
            sums = [sum(column) for column in zip(*mine, strict=True)] or [0, 0, 0, 0]
            counts[job_id] = LoadCounts(len(mine), *sums)
        return counts

    def quarantine_reasons(self, job_ids: Sequence[UUID]) -> dict[UUID, dict[QuarantineReason, int]]:
        return {
            job_id: dict(Counter(row.reason for written, row in self.quarantined if written == job_id))
            for job_id in job_ids
        }


class RefusedChunkError(Exception):
    """What the fake database raises for a refused job's chunk."""


def psycopg_like_error() -> Exception:
    return RefusedChunkError("the database refused the transaction")


@dataclass
class FakeProgress:
    committed: list[int] = field(default_factory=list)
    reads: int = 0
    # Out of time at this many reads: raises as MessageProgress does when the invocation runs short.
    reads_allowed: int | None = None

    def chunk_committed(self, chunk_no: int) -> None:
        self.committed.append(chunk_no)

    def still_reading(self) -> None:
        self.reads += 1
        if self.reads == self.reads_allowed:
            raise OutOfTimeError("no time left while reading")


def clock() -> datetime:
    return NOW


def fake_ports(**stored: bytes) -> tuple[LoadPorts, FakeJobs, FakeObjects, FakeSink]:
    jobs, objects, sink = FakeJobs(), FakeObjects(dict(stored)), FakeSink()
    return LoadPorts(jobs, objects, sink), jobs, objects, sink


def ndjson(*readings: dict[str, object]) -> bytes:
    return b"".join(json.dumps({"system_id": str(SYSTEM)} | one).encode() + b"\n" for one in readings)


def s3_event(*keys: str) -> str:
    records = [
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": key, "eTag": "e1"}}}
        for key in keys
    ]
    return json.dumps({"Records": records})


def test_a_message_that_is_not_an_s3_event_is_reported_and_touches_nothing() -> None:
    ports, jobs, objects, sink = fake_ports()
    message = parse_message("not an S3 event")

    (report,) = load_message(message, ports, POLICY, progress=FakeProgress(), clock=clock)

    assert (report.outcome, report.job_id, report.detail) == (LoadOutcome.IGNORED, None, message.unreadable)
    assert "not an S3 event notification" in report.detail
    assert (jobs.started, objects.opened, sink.ledger) == ([], [], {})


def test_a_test_event_loads_nothing() -> None:
    ports, jobs, _, _ = fake_ports()

    assert load_message(IngestMessage(), ports, POLICY, progress=FakeProgress(), clock=clock) == []
    assert jobs.started == []


def test_an_object_outside_the_job_prefixes_is_ignored_saying_why() -> None:
    ports, jobs, objects, _ = fake_ports()
    message = parse_message(s3_event("elsewhere/x.csv", "drops/demo/"))

    reports = load_message(message, ports, POLICY, progress=FakeProgress(), clock=clock)

    assert [(report.outcome, report.detail) for report in reports] == [
        (LoadOutcome.IGNORED, message.objects[0].target.reason),
        (LoadOutcome.IGNORED, "a folder marker, not a file"),
    ]
    assert (jobs.started, objects.opened) == ([], [])


def test_an_object_is_loaded_chunk_by_chunk_skipping_what_the_ledger_has() -> None:
    key = "drops/demo/press.jsonl"
    body = ndjson(reading(0), reading(1, unit="psi"), reading(2), reading(3), reading(4), reading(4))
    ports, jobs, objects, sink = fake_ports(**{key: body})
    progress = FakeProgress()
    (item,) = parse_message(s3_event(key)).objects
    assert item.target.job_id is not None
    sink.ledger[item.target.job_id, 1] = (2, 2, 0, 0)  # committed by an earlier attempt: neither judged nor written

    report = load_object(
        item.ref, item.target, ports, LoadPolicy(2, timedelta(days=90)), progress=progress, clock=clock
    )

    assert report.outcome is LoadOutcome.COMPLETED
    assert (report.job_id, report.chunks_written) == (item.target.job_id, 2)
    assert report.counts == LoadCounts(chunks=3, total=6, inserted=4, quarantined=2, duplicates=1)
    assert report.quarantined_by_reason == {QuarantineReason.INVALID_UNIT: 1, QuarantineReason.DUPLICATE: 1}
    assert report.latency_ms == 0
    assert progress.committed == [0, 2]
    assert sink.read_meanwhile == [1, 2]  # the chunk after each written one was read during its commit
    assert objects.opened == [item.ref]
    assert [row.position for _, row in sink.quarantined] == [2, 6]
    assert json.loads(sink.quarantined[1][1].details)["got"] == "a repeat of #5"
    assert [row[6] for row in sink.rows] == [item.target.job_id] * 2  # chunk 1's rows were written before
    (started,) = jobs.started
    assert (started.source, started.tenant_id, started.object_key) == (JobSource.DROP, "demo", key)
    finish = jobs.finished[started.job_id]
    assert (finish.status, finish.counts, finish.error_message) == (JobStatus.COMPLETED, report.counts, None)


def test_a_file_of_blank_lines_tells_its_progress_while_it_is_read_and_stops_when_time_runs_out() -> None:
    key = "drops/demo/blank.ndjson"
    # 4 MiB of blank lines, then readings: nothing is committed while the blank lines are read.
    ports, jobs, _, sink = fake_ports(**{key: b"\n" * (4 << 20) + ndjson(reading(0))})
    (item,) = parse_message(s3_event(key)).objects
    progress = FakeProgress(reads_allowed=2)

    with pytest.raises(OutOfTimeError):
        load_object(item.ref, item.target, ports, POLICY, progress=progress, clock=clock)

    assert (progress.reads, progress.committed, sink.ledger) == (2, [], {})
    assert item.target.job_id not in jobs.finished


def test_an_object_is_loaded_under_the_target_it_was_parsed_with() -> None:
    # The target comes from the message, parsed once: the key is not read again.
    key = "drops/demo/press.jsonl"
    ports, jobs, _, sink = fake_ports(**{key: ndjson(reading(0))})
    target = Target(TargetKind.DROP, tenant_id="demo", job_id=API_JOB)

    report = load_object(ObjectRef("b", key), target, ports, POLICY, progress=FakeProgress(), clock=clock)

    assert (report.outcome, report.job_id) == (LoadOutcome.COMPLETED, API_JOB)
    assert [job.job_id for job in jobs.started] == [API_JOB]
    assert [row[6] for row in sink.rows] == [API_JOB]


def test_a_chunk_a_twin_committed_meanwhile_is_read_past_and_not_counted_as_written() -> None:
    key = "drops/demo/press.jsonl"
    ports, _, _, sink = fake_ports(**{key: ndjson(reading(0), reading(1), reading(2))})
    sink.committed_meanwhile = {0}
    (item,) = parse_message(s3_event(key)).objects
    progress = FakeProgress()

    report = load_object(
        item.ref, item.target, ports, LoadPolicy(2, timedelta(days=90)), progress=progress, clock=clock
    )

    assert (report.outcome, report.chunks_written) == (LoadOutcome.COMPLETED, 1)
    assert progress.committed == [0, 1]
    assert sink.quarantined == []
    assert len(sink.rows) == 1


def test_a_completed_job_is_not_loaded_again() -> None:
    key = "drops/demo/press.jsonl"
    ports, jobs, objects, _ = fake_ports(**{key: ndjson(reading(0))})
    (item,) = parse_message(s3_event(key)).objects
    assert item.target.job_id is not None
    jobs.completed.add(item.target.job_id)

    report = load_object(item.ref, item.target, ports, POLICY, progress=FakeProgress(), clock=clock)

    assert (report.outcome, report.job_id) == (LoadOutcome.ALREADY_COMPLETED, item.target.job_id)
    assert (objects.opened, jobs.finished) == ([], {})


def api_record(key: str, **changes: object) -> Job:
    """The job record IngestApiFunction writes for a batch at ``key`` before it stores the object."""
    (item,) = parse_message(s3_event(key)).objects
    return job_for(item.ref, item.target, POLICY, NOW - timedelta(seconds=5)).model_copy(update=changes)


def test_an_api_batch_is_loaded_under_the_job_record_the_api_wrote_for_it() -> None:
    key = f"incoming/demo/2026/11/20/{API_JOB}.json"
    ports, jobs, _, sink = fake_ports(
        **{key: json.dumps({"system_id": str(SYSTEM), "readings": [reading(0)]}).encode()}
    )
    jobs.api_records[API_JOB] = api_record(key)
    (item,) = parse_message(s3_event(key)).objects

    report = load_object(item.ref, item.target, ports, POLICY, progress=FakeProgress(), clock=clock)

    assert (report.outcome, report.job_id, len(sink.rows)) == (LoadOutcome.COMPLETED, API_JOB, 1)


@pytest.mark.parametrize(
    "record",
    [
        None,  # put straight under incoming/, with no API call
        {"tenant_id": "other"},  # a job id of another tenant's batch, under this tenant's prefix
        {"object_key": f"incoming/demo/2026/11/19/{API_JOB}.json"},  # the same job id under another date
        {"bucket": "another-bucket"},
    ],
    ids=["no-record", "another-tenant", "another-key", "another-bucket"],
)
def test_an_incoming_object_no_job_record_names_is_ignored_without_a_job(record: dict[str, object] | None) -> None:
    # Given an object under incoming/ whose job id the API never accepted for this tenant, bucket and key
    key = f"incoming/demo/2026/11/20/{API_JOB}.json"
    ports, jobs, objects, sink = fake_ports(**{key: json.dumps({"system_id": str(SYSTEM), "readings": []}).encode()})
    if record is not None:
        jobs.api_records[API_JOB] = api_record(key, **record)
    (item,) = parse_message(s3_event(key)).objects

    # When the worker handles its S3 event
    report = load_object(item.ref, item.target, ports, POLICY, progress=FakeProgress(), clock=clock)

    # Then it is acknowledged as unclaimed: nothing is read, written or finished
    assert (report.outcome, report.job_id, report.detail) == (LoadOutcome.UNCLAIMED, API_JOB, UNCLAIMED_BATCH)
    assert report.object_key == key
    assert (objects.opened, sink.rows, sink.ledger, jobs.finished) == ([], [], {}, {})


def test_a_record_claims_only_the_object_it_names() -> None:
    key = f"incoming/demo/2026/11/20/{API_JOB}.json"
    record = api_record(key)

    assert claims(record, api_record(key, status=JobStatus.PROCESSING, created_at=NOW))
    assert not claims(record, api_record(key, tenant_id="other"))


def test_an_object_that_is_gone_fails_its_job_saying_so() -> None:
    ports, jobs, _, _ = fake_ports()
    (item,) = parse_message(s3_event("drops/demo/press.jsonl")).objects

    report = load_object(item.ref, item.target, ports, POLICY, progress=FakeProgress(), clock=clock)

    assert report.outcome is LoadOutcome.FAILED
    assert report.detail == "s3://b/drops/demo/press.jsonl no longer exists"
    assert item.target.job_id is not None
    finish = jobs.finished[item.target.job_id]
    assert (finish.status, finish.error_message) == (JobStatus.FAILED, report.detail)


def test_an_object_of_an_unknown_format_fails_before_it_is_opened() -> None:
    ports, jobs, objects, _ = fake_ports(**{"drops/demo/press.xlsx": b"PK"})
    (item,) = parse_message(s3_event("drops/demo/press.xlsx")).objects

    report = load_object(item.ref, item.target, ports, POLICY, progress=FakeProgress(), clock=clock)

    assert report.outcome is LoadOutcome.FAILED
    assert objects.opened == []
    assert [finish.status for finish in jobs.finished.values()] == [JobStatus.FAILED]


def test_a_parked_message_fails_the_unfinished_jobs_it_names() -> None:
    api_key = f"incoming/acme/2026/11/20/{API_JOB}.json"
    message = parse_message(s3_event(api_key, "drops/demo/a.csv", "elsewhere/x.csv"))
    drop_job = message.objects[1].target.job_id
    jobs = FakeJobs(finished_already={API_JOB})

    parked = park_message(message, jobs, "gave up", NOW)

    assert drop_job is not None
    assert parked == [drop_job]
    assert jobs.parked == {drop_job: "gave up"}
    assert park_message(parse_message("not an S3 event"), jobs, "gave up", NOW) == []
    assert park_message(IngestMessage(), jobs, "gave up", NOW) == []


# --- an invocation's messages, loaded together --------------------------------------------------------------------


def small_drop(name: str, *readings: dict[str, object]) -> tuple[str, bytes, IngestMessage]:
    """A small drop (its S3 event gives its size, as S3's do) and the message naming it."""
    key = f"drops/demo/{name}.ndjson"
    body = ndjson(*readings)
    event = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": key, "eTag": "e1"}}}
    event["s3"]["object"]["size"] = len(body)  # type: ignore[index]
    return key, body, parse_message(json.dumps({"Records": [event]}))


def invocation(*drops: tuple[str, bytes, IngestMessage]) -> tuple[LoadPorts, FakeJobs, FakeSink, list[IngestMessage]]:
    ports, jobs, _, sink = fake_ports(**{key: body for key, body, _ in drops})
    return ports, jobs, sink, [message for _, _, message in drops]


def reports(outcome: MessageOutcome) -> list[LoadReport]:
    assert not isinstance(outcome, Exception), outcome
    return outcome


def only_job(message: IngestMessage) -> UUID:
    (job_id,) = message.job_ids
    return job_id


def test_small_objects_of_an_invocation_are_written_in_one_transaction_each_with_its_ledger_row() -> None:
    ports, jobs, sink, messages = invocation(
        small_drop("a", reading(0)), small_drop("b", reading(1), reading(2, unit="psi")), small_drop("c")
    )
    progress = [FakeProgress() for _ in messages]

    outcomes = load_messages(messages, ports, POLICY, progress=progress, clock=clock)

    a, b, c = (only_job(message) for message in messages)
    assert sink.transactions == [[a, b]]  # the empty object has nothing to write
    assert sink.ledger == {(a, 0): (1, 1, 0, 0), (b, 0): (2, 1, 1, 0)}
    assert [
        [(report.outcome, report.job_id, report.chunks_written) for report in reports(outcome)] for outcome in outcomes
    ] == [
        [(LoadOutcome.COMPLETED, a, 1)],
        [(LoadOutcome.COMPLETED, b, 1)],
        [(LoadOutcome.COMPLETED, c, 0)],
    ]
    assert outcomes[1][0].quarantined_by_reason == {QuarantineReason.INVALID_UNIT: 1}  # type: ignore[index]
    assert [finish.counts.total for finish in jobs.finished.values()] == [1, 2, 0]
    assert [one.committed for one in progress] == [[0], [0], []]
    assert {row[6] for row in sink.rows} == {a, b}  # each row names its own job


@dataclass
class PinningJobs(FakeJobs):
    """Pins an upload's job to the first version started, by reading the pin, then writing it, as a store without
    atomic conditional writes would: two starts of one job at once would both pass."""

    pinned: dict[UUID, str | None] = field(default_factory=dict)
    in_flight: int = 0
    most_at_once: int = 0

    def start_job(self, job: Job, now: datetime) -> Job | NotStarted:
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        try:
            pinned = self.pinned.get(job.job_id, job.object_version)
            time.sleep(0.05)  # the gap between reading the pin and writing it
            if pinned != job.object_version:
                return NotStarted.OTHER_VERSION
            self.pinned[job.job_id] = pinned
            return super().start_job(job, now)
        finally:
            self.in_flight -= 1


@dataclass(frozen=True)
class InThreads:
    """``Background`` in threads, as the worker's wiring runs it."""

    pool: ThreadPoolExecutor

    def __call__[T](self, call: Callable[[], T]) -> "Threaded[T]":
        return Threaded(self.pool.submit(call))


@dataclass(frozen=True)
class Threaded[T]:
    future: Future[T]

    def answer(self) -> T | Exception:
        try:
            return self.future.result()
        except Exception as exc:
            return exc


def test_two_versions_of_one_uploads_key_in_an_invocation_start_its_job_one_after_the_other() -> None:
    # Given an upload's form POSTed twice, both S3 events in one invocation
    key = f"drops/demo/uploads/{uuid4()}.ndjson"
    body = ndjson(reading(0), reading(1))

    def event(etag: str) -> IngestMessage:
        created = {"key": key, "eTag": etag, "size": len(body)}
        record = {"eventName": "ObjectCreated:Post", "s3": {"bucket": {"name": "b"}, "object": created}}
        return parse_message(json.dumps({"Records": [record]}))

    messages = [event("e1"), event("e2")]
    jobs, sink = PinningJobs(), FakeSink()
    with ThreadPoolExecutor(4) as pool:
        ports = LoadPorts(jobs, FakeObjects({key: body}), sink, background=InThreads(pool))

        # When the worker loads them
        outcomes = load_messages(messages, ports, POLICY, progress=[FakeProgress(), FakeProgress()], clock=clock)

    # Then the second start waited for the first: the job loads the first version, once
    job_id = only_job(messages[0])
    assert jobs.most_at_once == 1
    assert [[report.outcome for report in reports(outcome)] for outcome in outcomes] == [
        [LoadOutcome.COMPLETED],
        [LoadOutcome.OTHER_VERSION],
    ]
    assert jobs.pinned == {job_id: "e1"}
    assert sink.ledger == {(job_id, 0): (2, 2, 0, 0)}


def test_a_group_holds_at_most_a_chunk_of_readings() -> None:
    # Chunks of 3: objects of 2, 1 and 2 readings make a group of 3 and one of 2.
    ports, _, sink, messages = invocation(
        small_drop("a", reading(0), reading(1)), small_drop("b", reading(2)), small_drop("c", reading(3), reading(4))
    )

    load_messages(messages, ports, POLICY, progress=[FakeProgress() for _ in messages], clock=clock)

    a, b, c = (only_job(message) for message in messages)
    assert sink.transactions == [[a, b], [c]]


def test_a_small_object_of_more_than_a_chunk_is_streamed_chunk_by_chunk() -> None:
    ports, jobs, sink, messages = invocation(
        small_drop("big", *(reading(n) for n in range(5))), small_drop("a", reading(9))
    )

    outcomes = load_messages(messages, ports, POLICY, progress=[FakeProgress() for _ in messages], clock=clock)

    big, a = (only_job(message) for message in messages)
    assert sink.transactions == [[a], [big], [big]]
    assert sink.ledger[big, 0] == (3, 3, 0, 0)
    assert sink.ledger[big, 1] == (2, 2, 0, 0)
    assert outcomes[0][0].counts == LoadCounts(chunks=2, total=5, inserted=5, quarantined=0, duplicates=0)  # type: ignore[index]
    assert set(jobs.finished) == {big, a}


def test_a_group_the_database_refuses_is_written_object_by_object_and_only_the_refused_message_fails() -> None:
    ports, jobs, sink, messages = invocation(
        small_drop("a", reading(0)), small_drop("poison", reading(1)), small_drop("c", reading(2))
    )
    a, poison, c = (only_job(message) for message in messages)
    sink.refused = {poison}

    outcomes = load_messages(messages, ports, POLICY, progress=[FakeProgress() for _ in messages], clock=clock)

    assert isinstance(outcomes[1], RefusedChunkError)
    assert [report.outcome for report in outcomes[0]] == [LoadOutcome.COMPLETED]  # type: ignore[union-attr]
    assert [report.outcome for report in outcomes[2]] == [LoadOutcome.COMPLETED]  # type: ignore[union-attr]
    assert sink.transactions == [[a], [c]]
    assert set(jobs.finished) == {a, c}  # the refused job stays processing, for its retry


def test_a_message_whose_job_cannot_be_started_fails_alone() -> None:
    ports, _jobs, sink, messages = invocation(small_drop("a", reading(0)), small_drop("b", reading(1)))
    a, b = (only_job(message) for message in messages)

    class RefusingJobs(FakeJobs):
        def start_job(self, job: Job, now: datetime) -> Job | NotStarted:
            if job.job_id == a:
                raise StorageUnavailableError("DynamoDB refused the start")
            return super().start_job(job, now)

    ports = LoadPorts(RefusingJobs(), ports.objects, sink)
    outcomes = load_messages(messages, ports, POLICY, progress=[FakeProgress() for _ in messages], clock=clock)

    assert isinstance(outcomes[0], StorageUnavailableError)
    assert [report.outcome for report in outcomes[1]] == [LoadOutcome.COMPLETED]  # type: ignore[union-attr]
    assert sink.transactions == [[b]]


def test_a_message_out_of_time_after_its_group_commits_fails_and_its_job_is_left_for_the_retry() -> None:
    ports, jobs, sink, messages = invocation(small_drop("a", reading(0)), small_drop("b", reading(1)))
    a, b = (only_job(message) for message in messages)

    class OutOfTime(FakeProgress):
        def chunk_committed(self, chunk_no: int) -> None:
            raise OutOfTimeError("no time left after chunk 0")

    outcomes = load_messages(messages, ports, POLICY, progress=[OutOfTime(), FakeProgress()], clock=clock)

    assert isinstance(outcomes[0], OutOfTimeError)
    assert sink.transactions == [[a, b]]
    assert set(jobs.finished) == {b}

    # The retry finds its chunk in the ledger, writes nothing and completes the job with the counts stored.
    (retried,) = load_messages([messages[0]], ports, POLICY, progress=[FakeProgress()], clock=clock)
    assert [(report.outcome, report.chunks_written) for report in retried] == [(LoadOutcome.COMPLETED, 0)]  # type: ignore[union-attr]
    assert jobs.finished[a].counts.inserted == 1


def test_a_message_whose_job_cannot_be_finished_fails_alone() -> None:
    ports, jobs, sink, messages = invocation(small_drop("a", reading(0)), small_drop("b", reading(1)))
    a, b = (only_job(message) for message in messages)

    class RefusingFinish(FakeJobs):
        def finish_job(self, job_id: UUID, finish: JobFinish) -> None:
            if job_id == b:
                raise StorageUnavailableError("DynamoDB refused the finish")
            super().finish_job(job_id, finish)

    jobs = RefusingFinish()
    ports = LoadPorts(jobs, ports.objects, sink)
    outcomes = load_messages(messages, ports, POLICY, progress=[FakeProgress(), FakeProgress()], clock=clock)

    assert [report.outcome for report in outcomes[0]] == [LoadOutcome.COMPLETED]  # type: ignore[union-attr]
    assert isinstance(outcomes[1], StorageUnavailableError)
    assert set(jobs.finished) == {a}


def test_a_small_object_that_is_gone_fails_its_job_and_not_its_neighbours() -> None:
    ports, jobs, sink, messages = invocation(small_drop("a", reading(0)), small_drop("b", reading(1)))
    a, b = (only_job(message) for message in messages)
    ports.objects.stored.pop("drops/demo/a.ndjson")  # type: ignore[attr-defined]

    outcomes = load_messages(messages, ports, POLICY, progress=[FakeProgress(), FakeProgress()], clock=clock)

    assert [report.outcome for report in outcomes[0]] == [LoadOutcome.FAILED]  # type: ignore[union-attr]
    assert [report.outcome for report in outcomes[1]] == [LoadOutcome.COMPLETED]  # type: ignore[union-attr]
    assert (jobs.finished[a].status, jobs.finished[b].status) == (JobStatus.FAILED, JobStatus.COMPLETED)
    assert sink.transactions == [[b]]


def test_a_call_made_in_turn_hands_back_its_answer_or_its_exception() -> None:
    def refuse() -> int:
        raise StorageUnavailableError("no")

    assert in_turn(lambda: 1).answer() == 1
    assert isinstance(in_turn(refuse).answer(), StorageUnavailableError)


def test_an_object_named_by_two_messages_of_an_invocation_is_loaded_once() -> None:
    key, body, message = small_drop("a", reading(0), reading(1, unit="psi"))
    ports, jobs, sink, _ = invocation((key, body, message))

    outcomes = load_messages([message, message], ports, POLICY, progress=[FakeProgress(), FakeProgress()], clock=clock)

    job_id = only_job(message)
    assert sink.transactions == [[job_id]]
    assert len(jobs.started) == 1
    assert [(report.outcome, report.job_id) for report in reports(outcomes[0])] == [(LoadOutcome.COMPLETED, job_id)]
    assert [(report.outcome, report.detail) for report in reports(outcomes[1])] == [
        (LoadOutcome.ALREADY_COMPLETED, LOADED_BY_ANOTHER_MESSAGE)
    ]
    assert jobs.finished[job_id].counts == LoadCounts(chunks=1, total=2, inserted=1, quarantined=1, duplicates=0)


def test_a_message_naming_an_object_whose_first_message_failed_fails_too() -> None:
    key, body, message = small_drop("a", reading(0))
    ports, _, sink, _ = invocation((key, body, message))
    sink.refused = {only_job(message)}

    outcomes = load_messages([message, message], ports, POLICY, progress=[FakeProgress(), FakeProgress()], clock=clock)

    assert isinstance(outcomes[0], RefusedChunkError)
    assert outcomes[1] is outcomes[0]
