"""Loading a batch object: find or create its job, judge its readings chunk by chunk, and account for every one.

The promise (DESIGN section 3) rests on three facts kept here and in the sink: chunk boundaries depend only on the
object version (so a retry cuts the same chunks), each chunk is written with its ledger row in one transaction
(so a committed chunk is skipped on a retry), and a job's counts are summed from the ledger (never incremented).
Bad data is a value: it ends in quarantine or, when the whole object is unreadable, in the job's error_message.
Everything else (database, S3, DynamoDB faults) raises, and the message is retried.
"""

import itertools
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import IO, Final, Protocol
from urllib.parse import unquote_plus
from uuid import UUID, uuid5

from sluice.domain.formats import Record, Unparsable, layout_of, read_records
from sluice.domain.ingest import BATCH_PREFIX
from sluice.domain.validation import ReadingValidator, show
from sluice.errors import UnreadableObjectError
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice.models.readings import QuarantineReason, Rejection, ValidReading

DROP_PREFIX: Final = "drops"
# Fixed forever: drop job ids are uuid5(namespace, "<bucket>/<key>#<version or etag>").
DROP_JOB_NAMESPACE: Final = UUID("8f1d5c3e-2b7a-4e6f-9c0d-51a7e3b2c4d6")
_MAX_TENANT_LENGTH = 128
_MAX_TEXT_CHARS = 256
_SMALLINT = (-32768, 32767)

_PARSE_ERROR = QuarantineReason.PARSE_ERROR
_SYSTEM_NOT_FOUND = QuarantineReason.SYSTEM_NOT_FOUND
_DUPLICATE = QuarantineReason.DUPLICATE
_new_tuple = tuple.__new__


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One object version named by an S3 event."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    # Bytes, as the event says; not part of the object's identity.
    size: int | None = field(default=None, compare=False)


class TargetKind(StrEnum):
    """What an object under the bucket is to the worker."""

    API_BATCH = "api_batch"
    DROP = "drop"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class Target:
    """The job an object belongs to, or why it belongs to none."""

    kind: TargetKind
    tenant_id: str = ""
    job_id: UUID | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    """A row of ``quarantined_readings``: the reading's fields as far as they could be read, and why."""

    position: int
    system_id: UUID | None
    sensor_id: UUID | None
    time: datetime | None
    value: float | None
    unit: str | None
    quality: int | None
    raw: str
    reason: QuarantineReason
    details: str


@dataclass(frozen=True, slots=True)
class LoadCounts:
    """A job's counts, summed from its ledger rows."""

    chunks: int
    total: int
    inserted: int
    quarantined: int
    duplicates: int

    @property
    def success_rate(self) -> float | None:
        """The share of readings that reached ``readings``; None for an empty object."""
        return self.inserted / self.total if self.total else None


@dataclass(frozen=True, slots=True)
class JobFinish:
    """How a job ended."""

    status: JobStatus
    counts: LoadCounts
    completed_at: datetime
    processing_time_ms: int
    error_message: str | None = None


class LoadOutcome(StrEnum):
    """What handling one object came to."""

    COMPLETED = "completed"
    FAILED = "failed"
    ALREADY_COMPLETED = "already_completed"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class LoadReport:
    """The result of handling one object, for logs and metrics."""

    outcome: LoadOutcome
    job_id: UUID | None = None
    counts: LoadCounts | None = None
    chunks_written: int = 0
    detail: str = ""
    # On completion: the job's quarantined readings by reason, and its latency from creation (the API's 202, or
    # the worker's first sight of a drop) to completion.
    quarantined_by_reason: Mapping[QuarantineReason, int] = field(default_factory=dict)
    latency_ms: int | None = None


class JobTracker(Protocol):
    """Job records, as the worker moves them."""

    def start_job(self, job: Job, now: datetime) -> Job | None:
        """Create the job if it does not exist, mark it processing and return it; None when it is completed."""

    def finish_job(self, job_id: UUID, finish: JobFinish) -> None:
        """Record a job's end: its status, counts and times."""

    def park_job(self, job_id: UUID, message: str, now: datetime) -> bool:
        """Mark an unfinished job failed with ``message``; False when it is finished already (or unknown)."""


class ObjectSource(Protocol):
    """Where batch objects are read from."""

    def open_object(self, ref: ObjectRef) -> "OpenedObject":
        """Open one object version for streaming; raise UnreadableObjectError when it no longer exists."""


@dataclass(frozen=True, slots=True)
class OpenedObject:
    """An object's byte stream and the Content-Encoding it was stored with."""

    body: IO[bytes]
    content_encoding: str | None


class ReadingSink(Protocol):
    """The database side: systems, the ledger, readings and quarantine."""

    def tenant_systems(self, tenant_id: str) -> set[UUID]:
        """The ids of every system of ``tenant_id``."""

    def committed_chunks(self, job_id: UUID) -> set[int]:
        """The chunk numbers of a job already in the ledger."""

    def write_chunk(self, job: Job, chunk: "ChunkStream") -> bool:
        """Write a chunk with its ledger row in one transaction, reading all of ``chunk.valid_rows()`` (then its
        quarantine rows); False, reading nothing, when the ledger already had it."""

    def job_counts(self, job_id: UUID) -> LoadCounts:
        """A job's counts, summed from its ledger rows."""

    def quarantine_reasons(self, job_id: UUID) -> dict[QuarantineReason, int]:
        """A job's quarantined readings counted by reason (written with the ledger rows: they add up to them)."""


class Progress(Protocol):
    """Told after each committed chunk: keeps the message invisible and stops before the invocation times out."""

    def chunk_committed(self, chunk_no: int) -> None:
        """Raise OutOfTimeError when no further chunk should start."""


@dataclass(frozen=True, slots=True)
class LoadPorts:
    """Everything loading an object talks to."""

    jobs: JobTracker
    objects: ObjectSource
    sink: ReadingSink


@dataclass(frozen=True, slots=True)
class LoadPolicy:
    """How objects are cut and how long drop jobs are kept."""

    chunk_readings: int
    job_retention: timedelta


def object_refs(message_body: str) -> list[ObjectRef]:
    """The objects an S3 event notification (an SQS message body) names; none for ``s3:TestEvent``."""
    try:
        event = json.loads(message_body)
    except ValueError:
        raise UnreadableObjectError("the message is not an S3 event notification (not JSON)") from None
    if type(event) is not dict:
        raise UnreadableObjectError("the message is not an S3 event notification")
    if event.get("Event") == "s3:TestEvent":
        return []
    try:
        return [
            ObjectRef(
                bucket=record["s3"]["bucket"]["name"],
                # S3 URL-encodes keys in events (a space arrives as '+').
                key=unquote_plus(record["s3"]["object"]["key"]),
                version_id=record["s3"]["object"].get("versionId"),
                etag=record["s3"]["object"].get("eTag"),
                size=record["s3"]["object"].get("size"),
            )
            for record in event["Records"]
            if str(record.get("eventName", "")).startswith("ObjectCreated")
        ]
    except (KeyError, TypeError, AttributeError):  # AttributeError: a record that is not an object
        raise UnreadableObjectError("the message is not an S3 event notification (Records missing)") from None


def load_message(
    message_body: str, ports: LoadPorts, policy: LoadPolicy, *, progress: "Progress", clock: "Clock"
) -> list[LoadReport]:
    """Load every object an SQS message's S3 event names; a message that is not an S3 event is reported, not
    retried (it would fail the same way every time)."""
    try:
        refs = object_refs(message_body)
    except UnreadableObjectError as exc:
        return [LoadReport(LoadOutcome.IGNORED, detail=str(exc))]
    return [load_object(ref, ports, policy, progress=progress, clock=clock) for ref in refs]


def park_message(message_body: str, jobs: JobTracker, reason: str, now: datetime) -> list[UUID]:
    """Fail the unfinished jobs of a message whose last attempt failed: SQS moves it to the dead-letter queue next,
    and nothing would otherwise tell the job's client that its batch stopped. A redrive restarts them."""
    return [job_id for job_id in message_job_ids(message_body) if jobs.park_job(job_id, reason, now)]


def message_job_ids(message_body: str) -> list[UUID]:
    """The jobs of the objects an SQS message's S3 event names; none for a message that is not one."""
    try:
        refs = object_refs(message_body)
    except UnreadableObjectError:
        return []
    return [job_id for job_id in (target_of(ref).job_id for ref in refs) if job_id is not None]


def target_of(ref: ObjectRef) -> Target:
    """Which job an object belongs to: ``incoming/<tenant>/.../<job_id>.json`` or ``drops/<tenant>/...``."""
    parts = ref.key.split("/")
    if ref.key.endswith("/"):
        return Target(TargetKind.IGNORED, reason="a folder marker, not a file")
    if len(parts) < 3 or parts[0] not in {BATCH_PREFIX, DROP_PREFIX}:
        return Target(TargetKind.IGNORED, reason=f"not under {BATCH_PREFIX}/<tenant>/ or {DROP_PREFIX}/<tenant>/")
    tenant = parts[1]
    if not _is_tenant(tenant):
        return Target(TargetKind.IGNORED, reason=f"{tenant[:100]!r} is not a tenant id")
    if parts[0] == DROP_PREFIX:
        return Target(TargetKind.DROP, tenant_id=tenant, job_id=drop_job_id(ref))
    try:
        job_id = UUID(parts[-1].removesuffix(".json"))
    except ValueError:
        return Target(TargetKind.IGNORED, reason="an incoming/ object not named <job_id>.json")
    return Target(TargetKind.API_BATCH, tenant_id=tenant, job_id=job_id)


def drop_job_id(ref: ObjectRef) -> UUID:
    """The job id of one version of a dropped object: the same S3 event twice gives the same job."""
    # "null" is the version id S3 gives objects written while the bucket was unversioned: not a version.
    version = ref.version_id if ref.version_id not in {None, "", "null"} else (ref.etag or "").strip('"')
    return uuid5(DROP_JOB_NAMESPACE, f"{ref.bucket}/{ref.key}#{version}")


def job_for(ref: ObjectRef, target: Target, policy: LoadPolicy, now: datetime) -> Job:
    """The job record to create if none exists yet (always for a drop; for an API batch only if its record is
    missing, which the API's write order should prevent)."""
    if target.job_id is None:
        raise ValueError(f"{ref.key} belongs to no job: {target.reason}")
    return Job(
        job_id=target.job_id,
        tenant_id=target.tenant_id,
        status=JobStatus.QUEUED,
        source=JobSource.DROP if target.kind is TargetKind.DROP else JobSource.API,
        bucket=ref.bucket,
        object_key=ref.key,
        created_at=now,
        expires_at=int((now + policy.job_retention).timestamp()),
    )


def load_object(
    ref: ObjectRef, ports: LoadPorts, policy: LoadPolicy, *, progress: "Progress", clock: "Clock"
) -> LoadReport:
    """Load one object version into ``readings`` and quarantine, exactly once, and finish its job."""
    now = clock()
    target = target_of(ref)
    if target.kind is TargetKind.IGNORED:
        return LoadReport(LoadOutcome.IGNORED, detail=target.reason)
    job = ports.jobs.start_job(job_for(ref, target, policy, now), now)
    if job is None:
        return LoadReport(LoadOutcome.ALREADY_COMPLETED, job_id=target.job_id)
    started_at = job.started_at or now
    written = 0
    try:
        written = write_object(ref, job, ports, policy, progress=progress, clock=clock)
    except UnreadableObjectError as exc:
        counts = ports.sink.job_counts(job.job_id)
        stored = f" ({counts.total} readings of it had been stored or quarantined)" if counts.total else ""
        message = f"{exc}{stored}"
        ports.jobs.finish_job(job.job_id, _finish(JobStatus.FAILED, counts, started_at, clock(), message))
        return LoadReport(LoadOutcome.FAILED, job.job_id, counts, written, detail=message)
    counts = ports.sink.job_counts(job.job_id)
    # Read before the job completes: should this fail, the retry reads them again instead of finding it completed.
    reasons = ports.sink.quarantine_reasons(job.job_id) if counts.quarantined else {}
    finish = _finish(JobStatus.COMPLETED, counts, started_at, clock())
    ports.jobs.finish_job(job.job_id, finish)
    latency_ms = _elapsed_ms(job.created_at, finish.completed_at)
    return LoadReport(
        LoadOutcome.COMPLETED, job.job_id, counts, written, quarantined_by_reason=reasons, latency_ms=latency_ms
    )


class Clock(Protocol):
    """The current time (UTC)."""

    def __call__(self) -> datetime:
        """Now."""


def write_object(  # noqa: PLR0913 - the object, its job, and the collaborators of load_object
    ref: ObjectRef, job: Job, ports: LoadPorts, policy: LoadPolicy, *, progress: Progress, clock: Clock
) -> int:
    """Read the object and write every chunk the ledger does not have yet; return how many were written."""
    layout_of(ref.key, None)  # an unknown format fails the job before anything is downloaded
    committed = ports.sink.committed_chunks(job.job_id)
    systems = SystemBook(job, ports.sink.tenant_systems(job.tenant_id))
    opened = ports.objects.open_object(ref)
    layout = layout_of(ref.key, opened.content_encoding)
    records = iter(read_records(opened.body, layout, whole_envelope=job.source is JobSource.API))
    written = 0
    for chunk in chunk_streams(records, policy.chunk_readings, ReadingValidator(clock()), systems):
        # A committed chunk is still read (the stream has no index) but neither judged nor written again; so is
        # one a concurrent twin of this message committed meanwhile (the sink finds its ledger row).
        if chunk.chunk_no in committed:
            chunk.skip()
            continue
        if ports.sink.write_chunk(job, chunk):
            written += 1
        else:
            chunk.skip()
        progress.chunk_committed(chunk.chunk_no)
    return written


class SystemBook:
    """A tenant's systems as the readings of one object name them: the suffix of a valid reading's row
    (system_id, job_id), or the rejection every reading naming that system gets."""

    def __init__(self, job: Job, owned: set[UUID]) -> None:
        self._job = job
        self._owned = owned
        self._known: dict[object, tuple[UUID, UUID] | Rejection] = {}

    def suffix(self, text: object) -> tuple[UUID, UUID] | Rejection:
        """The verdict on a system id as read; each distinct id is parsed and looked up once."""
        if type(text) is not str and text is not None:  # an object or array: never a system id
            return _not_a_system_id(text)
        found = self._known.get(text)
        if found is None:
            system_id = _parse_system_id(text)
            if isinstance(system_id, Rejection):
                found = system_id
            elif system_id in self._owned:
                found = (system_id, self._job.job_id)
            else:
                expected = f"a system of tenant {self._job.tenant_id}"
                found = Rejection(_SYSTEM_NOT_FOUND, "system_id", expected, str(system_id))
            self._known[text] = found
        return found


class ChunkStream:
    """One chunk's records, judged while the sink reads its valid rows, so that the database ingests rows while
    the rest are still being parsed and judged. Valid rows are also kept (with the records they came from) for
    the sink's slower path, and the rest collected for quarantine; a repeat of an earlier (sensor, instant) in
    the chunk is a duplicate."""

    def __init__(
        self, chunk_no: int, records: Iterator[Record], validator: ReadingValidator, systems: SystemBook
    ) -> None:
        self.chunk_no = chunk_no
        self.total = 0
        self.rows: list[tuple[object, ...]] = []
        self.sources: list[Record] = []
        self.quarantine: list[QuarantineRow] = []
        self._records = records
        self._validator = validator
        self._systems = systems
        self._first_seen: dict[tuple[int, datetime], int] = {}

    def valid_rows(self) -> Iterator[tuple[object, ...]]:
        """Judge the records not judged yet; yield each valid one as a row of ``readings`` (ValidReading's fields,
        then system_id and job_id)."""
        rows_append = self.rows.append
        sources_append = self.sources.append
        quarantine = self.quarantine
        judge = self._validator.judge
        suffix_of = self._systems.suffix
        first_seen = self._first_seen
        for record in self._records:
            self.total += 1
            position, system_text, raw = record
            if type(raw) is Unparsable:
                rejection = Rejection(_PARSE_ERROR, None, raw.expected, raw.got)
                quarantine.append(quarantine_row(position, raw.text, rejection, None))
                continue
            suffix = suffix_of(system_text)
            system_id = None if isinstance(suffix, Rejection) else suffix[0]
            if system_id is None and suffix[0] is _PARSE_ERROR:
                quarantine.append(quarantine_row(position, raw, suffix, None))
                continue
            verdict = judge(raw)
            if type(verdict) is not ValidReading:
                # An unknown system's id is kept too: a reviewer may register the system and approve.
                kept_system = system_id or _uuid_or_none(system_text)
                quarantine.append(quarantine_row(position, raw, verdict, kept_system))  # type: ignore[arg-type]
                continue
            if system_id is None:
                quarantine.append(quarantine_row(position, raw, suffix, _uuid_or_none(system_text)))  # type: ignore[arg-type]
                continue
            key = (verdict[1].int, verdict[0])
            earlier = first_seen.setdefault(key, position)
            if earlier != position:
                repeat = Rejection(
                    _DUPLICATE, "timestamp", "one reading per sensor and instant", f"a repeat of #{earlier}"
                )
                quarantine.append(quarantine_row(position, raw, repeat, system_id))
                continue
            row = verdict + suffix
            rows_append(row)
            sources_append(record)
            yield row

    def finish(self) -> None:
        """Judge whatever the sink did not read (after a COPY the database refused)."""
        for _ in self.valid_rows():
            pass

    def skip(self) -> None:
        """Read past the chunk's records without judging them (the chunk is committed already)."""
        for _ in self._records:
            self.total += 1


def chunk_streams(
    records: Iterator[Record], size: int, validator: ReadingValidator, systems: SystemBook
) -> Iterator[ChunkStream]:
    """Cut records into chunks of ``size``; the same object always gives the same chunks. Each chunk must be read
    (or skipped) before the next is taken."""
    for chunk_no in itertools.count():
        first = next(records, None)
        if first is None:
            return
        yield ChunkStream(chunk_no, itertools.chain((first,), itertools.islice(records, size - 1)), validator, systems)


STORED_DUPLICATE: Final = Rejection(_DUPLICATE, "timestamp", "one reading per sensor and instant", "already stored")
_STORED_DUPLICATE_DETAILS: Final = json.dumps(STORED_DUPLICATE.as_details(), separators=(",", ":"))


def stored_duplicates(judged: ChunkStream, inserted: set[tuple[int, datetime]]) -> list[QuarantineRow]:
    """The valid rows of a chunk that the database did not insert (``inserted`` holds the keys it did). Their
    fields are known and valid, so only the raw reading is serialised."""
    return [
        QuarantineRow(
            position=record[0],
            system_id=row[5],  # type: ignore[arg-type]
            sensor_id=row[1],  # type: ignore[arg-type]
            time=row[0],  # type: ignore[arg-type]
            value=row[2],  # type: ignore[arg-type]
            unit=row[3],  # type: ignore[arg-type]
            quality=row[4],  # type: ignore[arg-type]
            raw=storable_json(record[2]),
            reason=_DUPLICATE,
            details=_STORED_DUPLICATE_DETAILS,
        )
        for row, record in zip(judged.rows, judged.sources, strict=True)
        if (row[1].int, row[0]) not in inserted  # type: ignore[attr-defined, operator]
    ]


def quarantine_row(position: int, raw: object, rejection: Rejection, system_id: UUID | None) -> QuarantineRow:
    """A quarantine row for ``raw``, keeping every field that fits its column."""
    fields = raw if type(raw) is dict else {}
    return QuarantineRow(
        position=position,
        system_id=system_id if system_id is not None else _uuid_or_none(fields.get("system_id")),
        sensor_id=_uuid_or_none(fields.get("sensor_id")),
        time=_time_or_none(fields.get("timestamp")),
        value=_float_or_none(fields.get("value")),
        unit=_text_or_none(fields.get("unit")),
        quality=_smallint_or_none(fields.get("quality")),
        raw=storable_json(raw),
        reason=rejection.reason,
        details=storable_json(rejection.as_details()),
    )


def storable_json(value: object) -> str:
    """``value`` as JSON text that PostgreSQL's jsonb accepts. Values jsonb cannot hold (NaN, Infinity, NUL
    characters, lone surrogates) are kept whole as ``{"unstorable_json": "<ASCII JSON text>"}``, which
    ``json.loads`` turns back into exactly what arrived."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        text.encode()
    except (ValueError, TypeError, RecursionError):
        return _escaped_json(value)
    if "\\u0000" in text:
        return _escaped_json(value)
    return text


def _escaped_json(value: object) -> str:
    try:
        escaped = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        escaped = json.dumps(show(value), ensure_ascii=True)
    return json.dumps({"unstorable_json": escaped})


def _finish(
    status: JobStatus, counts: LoadCounts, started_at: datetime, now: datetime, message: str | None = None
) -> JobFinish:
    return JobFinish(status, counts, now, _elapsed_ms(started_at, now), message)


def _elapsed_ms(start: datetime, end: datetime) -> int:
    return max(0, int((end - start).total_seconds() * 1000))


def _is_tenant(text: str) -> bool:
    return (
        0 < len(text) <= _MAX_TENANT_LENGTH
        and text.isascii()
        and text[0].isalnum()
        and all(char.isalnum() or char in "_.-" for char in text)
    )


def _parse_system_id(text: object) -> UUID | Rejection:
    if text is None:
        return Rejection(_PARSE_ERROR, "system_id", "a value", "nothing (field missing)")
    if type(text) is str and len(text) <= 45:
        try:
            return UUID(text)
        except ValueError:
            pass
    return _not_a_system_id(text)


def _not_a_system_id(text: object) -> Rejection:
    return Rejection(_PARSE_ERROR, "system_id", "a UUID string", show(text))


def _uuid_or_none(value: object) -> UUID | None:
    if type(value) is UUID:
        return value
    if type(value) is not str or len(value) > 45:
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def _time_or_none(value: object) -> datetime | None:
    if type(value) is not str or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
        return moment.astimezone(UTC) if moment.utcoffset() is not None else None
    except (ValueError, OverflowError):  # OverflowError: an instant near year 1 or 9999 has no UTC datetime
        return None


def _float_or_none(value: object) -> float | None:
    if type(value) is not int and type(value) is not float:
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if not math.isinf(number) or type(value) is float else None


def _text_or_none(value: object) -> str | None:
    if type(value) is not str or len(value) > _MAX_TEXT_CHARS or "\x00" in value:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        return None
    return value


def _smallint_or_none(value: object) -> int | None:
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int or not _SMALLINT[0] <= value <= _SMALLINT[1]:
        return None
    return value
