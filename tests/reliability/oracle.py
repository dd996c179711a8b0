"""The oracle: did every reading a client was promised land exactly once?

A workload logs what Sluice accepted (every batch answered 202, every file dropped under drops/, every file
POSTed to S3 with an upload's form, known by the job the upload answered 201 with). The oracle waits
until the stack is idle (IngestQueue empty and nothing in flight, every accepted job finished), then compares that
log with the database and the job records:

- ``lost``: accepted readings found neither in ``readings`` nor in quarantine;
- ``duplicated``: extra copies of accepted readings (in both tables, or twice in quarantine);
- ``unexpected``: stored readings nobody was promised (a batch answered 5xx that was stored in part);
- per-job mismatches: a finished job whose counts disagree with the rows stored under its id, or with what was
  sent (``total = inserted + quarantined``; docs/architecture.md, "The promise");
- rollup mismatches: rows of ``readings_1m``, ``readings_1h`` or ``sensor_latest`` that differ from a ``GROUP BY``
  over ``readings`` (``tests/rollups.py``), missing or extra. Counts, min, max and the last value with its time must
  be equal; a sum may differ by a relative 1e-9, because the loaders add in arrival order and the ``GROUP BY`` in
  its own (float addition is not associative).

Readings are identified as the database knows them, by ``(system_id, sensor_id, timestamp)``; a workload gives every
reading it sends a key of its own.
Rows a reviewer approved or fixed were replayed into ``readings``; their quarantine row is then history, not a copy.
"""

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from sluice.adapters.dynamodb import job_from_item
from sluice.models.jobs import Job, JobStatus

from ..rollups import EXPECTED_1H, EXPECTED_1M, EXPECTED_LATEST
from ..stack_harness import RunningStack

FINISHED = {JobStatus.COMPLETED, JobStatus.FAILED}
# How far a rollup's sum may be from the GROUP BY's, relative to the larger of the two.
SUM_TOLERANCE = 1e-9
# Each rollup table lists at most this many mismatching keys (the count has them all).
MAX_ROLLUP_KEYS = 20


@dataclass(frozen=True, slots=True)
class RollupCheck:
    """One rollup table and the query giving what it must hold."""

    table: str
    expected: LiteralString
    key: tuple[str, ...]
    # Compared exactly.
    exact: tuple[str, ...]
    # Compared within SUM_TOLERANCE.
    summed: tuple[str, ...] = ()


_BUCKETED = ("count", "min", "max", "last_time", "last_value")
ROLLUP_CHECKS = (
    RollupCheck("readings_1m", EXPECTED_1M, ("system_id", "sensor_id", "unit", "bucket"), _BUCKETED, ("sum",)),
    RollupCheck("readings_1h", EXPECTED_1H, ("system_id", "sensor_id", "unit", "bucket"), _BUCKETED, ("sum",)),
    RollupCheck("sensor_latest", EXPECTED_LATEST, ("system_id", "sensor_id"), ("unit", "last_time", "last_value")),
)


@dataclass(frozen=True, slots=True)
class Accepted:
    """One thing Sluice accepted: an API batch or an upload (its job id is known) or a dropped file (known by its
    key)."""

    readings: int
    job_id: str | None = None
    object_key: str | None = None
    upload: bool = False


@dataclass
class AcceptanceLog:
    """What clients were promised, in the order they were answered. Safe to share between threads."""

    entries: list[Accepted] = field(default_factory=list)
    keys: list[tuple[str, str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def batch(self, job_id: str, readings: Sequence[Mapping[str, Any]], *, system_id: object) -> None:
        """A batch of ``system_id`` answered 202 with ``job_id``."""
        self._add(Accepted(len(readings), job_id=job_id), readings, system_id)

    def drop(self, object_key: str, readings: Sequence[Mapping[str, Any]], *, system_id: object) -> None:
        """A file stored under ``object_key`` (drops/<tenant>/...) whose rows all name ``system_id``."""
        self._add(Accepted(len(readings), object_key=object_key), readings, system_id)

    def upload(self, job_id: str, readings: Sequence[Mapping[str, Any]], *, system_id: object) -> None:
        """A file of ``system_id``'s readings that S3 stored with the form of the upload answered with ``job_id``:
        that job, and no other, must load it."""
        self._add(Accepted(len(readings), job_id=job_id, upload=True), readings, system_id)

    def _add(self, entry: Accepted, readings: Iterable[Mapping[str, Any]], system_id: object) -> None:
        system = str(system_id)
        pairs = [(system, str(reading["sensor_id"]), str(reading["timestamp"])) for reading in readings]
        with self._lock:
            self.entries.append(entry)
            self.keys.extend(pairs)

    @property
    def readings(self) -> int:
        """Readings accepted in all."""
        return len(self.keys)


@dataclass
class OracleReport:
    """The verdict, with what it is based on."""

    accepted_batches: int
    # Of accepted_batches, the uploads (a job and a file POSTed to S3 with its form).
    accepted_uploads: int
    accepted_readings: int
    in_readings: int
    in_quarantine: int
    lost: int
    duplicated: int
    unexpected: int
    job_mismatches: list[str]
    unfinished_jobs: list[str]
    # The keys of rollup rows that differ from readings (at most MAX_ROLLUP_KEYS a table, then how many more).
    rollup_mismatches: list[str]
    queue_depth: int
    dead_letter_depth: int
    waited_s: float

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing twice, nothing stored unasked, every job finished and agreeing, the rollups exact."""
        return (self.lost, self.duplicated, self.unexpected, self.dead_letter_depth) == (0, 0, 0, 0) and not (
            self.job_mismatches or self.unfinished_jobs or self.rollup_mismatches
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the verdict."""
        return {**asdict(self), "ok": self.ok}


def check(
    stack: RunningStack, log: AcceptanceLog, *, timeout_s: float = 300, expect_dead_letters: int = 0
) -> OracleReport:
    """Wait for the stack to drain, then compare ``log`` with what is stored. ``expect_dead_letters`` is how many
    messages a scenario means to leave parked (they are reported, not waited for)."""
    started = time.monotonic()
    jobs, depth, parked = wait_for_idle(stack, log, timeout_s, expect_dead_letters)
    waited_s = time.monotonic() - started
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        lost, duplicated, unexpected, in_readings, in_quarantine = _compare_rows(conn, log.keys)
        stored = _rows_per_job(conn)
        rollups = compare_rollups(conn)
    mismatches, unfinished = _compare_jobs(log, jobs, stored)
    return OracleReport(
        accepted_batches=len(log.entries),
        accepted_uploads=sum(entry.upload for entry in log.entries),
        accepted_readings=log.readings,
        in_readings=in_readings,
        in_quarantine=in_quarantine,
        lost=lost,
        duplicated=duplicated,
        unexpected=unexpected,
        job_mismatches=mismatches,
        unfinished_jobs=unfinished,
        rollup_mismatches=rollups,
        queue_depth=depth,
        dead_letter_depth=max(parked - expect_dead_letters, 0),
        waited_s=round(waited_s, 1),
    )


def wait_for_idle(
    stack: RunningStack, log: AcceptanceLog, timeout_s: float, expect_dead_letters: int = 0
) -> tuple[list[Job], int, int]:
    """Poll until IngestQueue holds nothing (visible or in flight) and every accepted job is finished twice in a
    row, or the time is up; return the job records and the queue and dead-letter depths last seen."""
    deadline = time.monotonic() + timeout_s
    quiet_polls = 0
    while True:
        depth, parked = queue_depth(stack, "IngestQueue"), queue_depth(stack, "IngestDeadLetterQueue")
        jobs = all_jobs(stack)
        finished = depth == 0 and not _unfinished(log, jobs)
        quiet_polls = quiet_polls + 1 if finished else 0
        if quiet_polls >= 2 or time.monotonic() > deadline:
            return jobs, depth, parked
        time.sleep(1.0 if depth or parked > expect_dead_letters else 0.5)


def queue_depth(stack: RunningStack, logical_id: str) -> int:
    """Messages in a queue of the stack, visible or in flight."""
    attributes = stack.sqs().get_queue_attributes(
        QueueUrl=stack.names().ref(logical_id),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def all_jobs(stack: RunningStack) -> list[Job]:
    """Every job record of the stack (a scan: a test stack holds a few thousand at most)."""
    client, table = stack.dynamodb(), stack.names().ref("JobsTable")
    pages = client.get_paginator("scan").paginate(TableName=table)
    return [job_from_item(item) for page in pages for item in page.get("Items", [])]


def _unfinished(log: AcceptanceLog, jobs: Sequence[Job]) -> list[str]:
    by_id = {str(job.job_id): job for job in jobs}
    by_key = {job.object_key: job for job in jobs}
    waiting = []
    for entry in log.entries:
        job = by_id.get(entry.job_id or "") or by_key.get(entry.object_key or "")
        if job is None or job.status not in FINISHED:
            waiting.append(entry.job_id or entry.object_key or "?")
    return waiting


def _compare_rows(
    conn: psycopg.Connection[Any], keys: Sequence[tuple[str, str, str]]
) -> tuple[int, int, int, int, int]:
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS oracle_expected (system_id uuid, sensor_id uuid, time timestamptz)")
    conn.execute("TRUNCATE oracle_expected")
    with conn.cursor().copy("COPY oracle_expected (system_id, sensor_id, time) FROM STDIN") as copy:
        for key in keys:
            copy.write_row(key)
    conn.execute("CREATE INDEX IF NOT EXISTS oracle_expected_key ON oracle_expected (system_id, sensor_id, time)")
    conn.execute("ANALYZE oracle_expected")
    # A reviewed-and-replayed quarantine row is history: its reading now lives in `readings`.
    found = """
        WITH stored AS (
            SELECT system_id, sensor_id, time FROM readings
            UNION ALL
            SELECT system_id, sensor_id, time FROM quarantined_readings
            WHERE review_status NOT IN ('approved', 'fixed')
        ), copies AS (
            SELECT e.system_id, e.sensor_id, e.time, count(s.sensor_id) AS n
            FROM (SELECT DISTINCT system_id, sensor_id, time FROM oracle_expected) e
            LEFT JOIN stored s ON s.system_id = e.system_id AND s.sensor_id = e.sensor_id AND s.time = e.time
            GROUP BY e.system_id, e.sensor_id, e.time
        )
        SELECT count(*) FILTER (WHERE n = 0), coalesce(sum(greatest(n - 1, 0)), 0) FROM copies
    """
    lost, duplicated = conn.execute(found).fetchone() or (0, 0)
    strays = """
        SELECT
          (SELECT count(*) FROM readings r WHERE NOT EXISTS (SELECT 1 FROM oracle_expected e
            WHERE e.system_id = r.system_id AND e.sensor_id = r.sensor_id AND e.time = r.time))
          + (SELECT count(*) FROM quarantined_readings q WHERE NOT EXISTS (SELECT 1 FROM oracle_expected e
            WHERE e.system_id = q.system_id AND e.sensor_id = q.sensor_id AND e.time = q.time)),
          (SELECT count(*) FROM readings),
          (SELECT count(*) FROM quarantined_readings WHERE review_status NOT IN ('approved', 'fixed'))
    """
    unexpected, in_readings, in_quarantine = conn.execute(strays).fetchone() or (0, 0, 0)
    return int(lost), int(duplicated), int(unexpected), int(in_readings), int(in_quarantine)


def _rows_per_job(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, int]]:
    counts: dict[str, tuple[int, int]] = {}
    for job_id, in_readings, in_quarantine in conn.execute(
        """SELECT job_id::text, sum(r), sum(q) FROM (
               SELECT job_id, count(*) AS r, 0 AS q FROM readings GROUP BY job_id
               UNION ALL
               SELECT job_id, 0, count(*) FROM quarantined_readings GROUP BY job_id) per_table
           GROUP BY job_id"""
    ):
        counts[job_id] = (int(in_readings), int(in_quarantine))
    return counts


def _compare_jobs(
    log: AcceptanceLog, jobs: Sequence[Job], stored: Mapping[str, tuple[int, int]]
) -> tuple[list[str], list[str]]:
    """Every accepted job completed with counts equal to what was sent and to its rows; every other job (a batch
    answered 5xx, say) failed with nothing stored under its id."""
    by_id = {str(job.job_id): job for job in jobs}
    by_key = {job.object_key: job for job in jobs}
    mismatches: list[str] = []
    promised: set[str] = set()
    for entry in log.entries:
        job = by_id.get(entry.job_id or "") or by_key.get(entry.object_key or "")
        if job is None:
            continue  # reported as unfinished
        promised.add(str(job.job_id))
        in_readings, in_quarantine = stored.get(str(job.job_id), (0, 0))
        replayed = job.replayed_readings or 0
        seen = (job.status, job.total_readings, job.inserted_readings, job.quarantined_readings)
        wanted = (JobStatus.COMPLETED, entry.readings, in_readings - replayed, in_quarantine)
        if seen != wanted:
            mismatches.append(f"job {job.job_id}: status/total/inserted/quarantined {seen}, expected {wanted}")
    for job in jobs:
        if str(job.job_id) in promised:
            continue
        rows = stored.get(str(job.job_id), (0, 0))
        if job.status is not JobStatus.FAILED or rows != (0, 0):
            mismatches.append(f"job {job.job_id} was never promised, yet is {job.status} with rows {rows}")
    return mismatches, _unfinished(log, jobs)


def compare_rollups(conn: psycopg.Connection[Any]) -> list[str]:
    """Every rollup row that differs from the ``GROUP BY`` over ``readings``, by table and key: what differs, or
    that the row is missing or should not be there."""
    found: list[str] = []
    for check in ROLLUP_CHECKS:
        rows = conn.execute(_mismatch_query(check)).fetchall()
        for row in rows[:MAX_ROLLUP_KEYS]:
            found.append(_describe(check, row))
        if len(rows) > MAX_ROLLUP_KEYS:
            found.append(f"{check.table}: and {len(rows) - MAX_ROLLUP_KEYS} more rows")
    return found


def _mismatch_query(check: RollupCheck) -> sql.Composed:
    columns = check.exact + check.summed
    joined = sql.SQL(" AND ").join(sql.SQL("a.{0} = e.{0}").format(sql.Identifier(name)) for name in check.key)
    differs = [sql.SQL("a.{0} IS DISTINCT FROM e.{0}").format(sql.Identifier(name)) for name in check.exact] + [
        sql.SQL("abs(a.{0} - e.{0}) > {1} * greatest(abs(a.{0}), abs(e.{0}))").format(
            sql.Identifier(name), sql.Literal(SUM_TOLERANCE)
        )
        for name in check.summed
    ]
    first = sql.Identifier(check.key[0])
    return sql.SQL(
        "SELECT {keys}, a.{first} IS NOT NULL, e.{first} IS NOT NULL, {actual}, {expected}"
        " FROM {table} a FULL JOIN ({query}) e ON {joined}"
        " WHERE a.{first} IS NULL OR e.{first} IS NULL OR {differs} ORDER BY {order}"
    ).format(
        keys=sql.SQL(", ").join(sql.SQL("coalesce(a.{0}, e.{0})").format(sql.Identifier(name)) for name in check.key),
        first=first,
        actual=sql.SQL(", ").join(sql.SQL("a.{}").format(sql.Identifier(name)) for name in columns),
        expected=sql.SQL(", ").join(sql.SQL("e.{}").format(sql.Identifier(name)) for name in columns),
        table=sql.Identifier(check.table),
        query=sql.SQL(check.expected),
        joined=joined,
        differs=sql.SQL(" OR ").join(differs),
        order=sql.SQL(", ").join(sql.Literal(n) for n in range(1, len(check.key) + 1)),
    )


def _describe(check: RollupCheck, row: tuple[Any, ...]) -> str:
    keys = len(check.key)
    key = " ".join(f"{name}={value}" for name, value in zip(check.key, row[:keys], strict=True))
    in_table, in_readings = row[keys], row[keys + 1]
    if not in_table:
        return f"{check.table} {key}: missing (readings have it)"
    if not in_readings:
        return f"{check.table} {key}: no readings behind it"
    columns = check.exact + check.summed
    actual, expected = row[keys + 2 : keys + 2 + len(columns)], row[keys + 2 + len(columns) :]
    differing = [
        f"{name} {_shown(seen)}, expected {_shown(wanted)}"
        for name, seen, wanted in zip(columns, actual, expected, strict=True)
        if (not _close(seen, wanted) if name in check.summed else seen != wanted)
    ]
    return f"{check.table} {key}: " + "; ".join(differing)


def _close(seen: float, wanted: float) -> bool:
    return abs(seen - wanted) <= SUM_TOLERANCE * max(abs(seen), abs(wanted))


def _shown(value: object) -> str:
    # Floats in full (a last bit may be what differs), times as RFC 3339.
    return value.isoformat() if isinstance(value, datetime) else repr(value)
