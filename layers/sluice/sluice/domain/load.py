"""A job's lifecycle in the worker: find or create the job of each object a message names, write the object's
chunks, and finish the job with counts summed from the ledger.

The promise rests on three facts kept here, in ``sluice.domain.chunks`` and in the sink: chunk boundaries depend
only on the object version (so a retry cuts the same chunks), each chunk is written with its ledger row in one
transaction (so a committed chunk is skipped on a retry), and a job's counts are summed from the ledger (never
incremented). Bad data is a value: it ends in quarantine or, when the whole object is unreadable, in the job's
error_message. Everything else (database, S3, DynamoDB faults) raises, and the message is retried.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import IO, Final, Protocol
from uuid import UUID

from sluice.domain.chunks import ChunkStream, ReadMeter, SystemBook, chunk_streams
from sluice.domain.failures import JobFailure, job_failure
from sluice.domain.formats import layout_of, read_records
from sluice.domain.objects import IngestMessage, ObjectRef, Target, TargetKind, version_of
from sluice.domain.validation import ReadingValidator
from sluice.errors import UnreadableObjectError
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice.models.readings import QuarantineReason


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
    # An object under incoming/ (or a tenant's uploads/ folder) that no job record of the API names: acknowledged
    # and never loaded.
    UNCLAIMED = "unclaimed"
    # Another version of an upload whose job started on a first one (its form was POSTed twice): not loaded.
    OTHER_VERSION = "other_version"


class NotStarted(StrEnum):
    """Why a job was not started."""

    COMPLETED = "completed"
    # No job record names this object: an ``incoming/`` object the API never accepted (only IngestApiFunction
    # writes there, after the job record), an upload no form was signed for, or a record of another tenant, bucket
    # or key under the same job id.
    UNCLAIMED = "unclaimed"
    # The record names this upload's key, but its job started on another version of it.
    OTHER_VERSION = "other_version"


UNCLAIMED_BATCH: Final = "no job record of the API names this object (tenant, bucket and key): it was not accepted"
OTHER_UPLOAD_VERSION: Final = "the upload's job was started on another version of its key: this one is not loaded"


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
    # For an unclaimed object: its key, for the operator who finds out who wrote it.
    object_key: str = ""


class JobTracker(Protocol):
    """Job records, as the worker moves them."""

    def start_job(self, job: Job, now: datetime) -> Job | NotStarted:
        """Mark the job processing and return it as stored, creating a drop's job when it does not exist. An API
        batch's job is only ever started, never created: its record must exist and ``claims`` the object."""

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
    """An object's byte stream, the Content-Encoding it was stored with, and its size (bytes) when known."""

    body: IO[bytes]
    content_encoding: str | None
    size: int | None = None


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
    """Told after each committed chunk, and while the object is read: keeps the message invisible and stops before
    the invocation times out."""

    def chunk_committed(self, chunk_no: int) -> None:
        """Raise OutOfTimeError when no further chunk should start."""

    def still_reading(self) -> None:
        """Called at least every MiB read, readings or not (blank lines, a line too long to keep); raise
        OutOfTimeError to stop now (an unfinished chunk is rolled back and read again by the retry)."""


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


def load_message(
    message: IngestMessage, ports: LoadPorts, policy: LoadPolicy, *, progress: "Progress", clock: "Clock"
) -> list[LoadReport]:
    """Load every object a message names; a message that is not an S3 event is reported, not retried (it would
    fail the same way every time)."""
    if message.unreadable is not None:
        return [LoadReport(LoadOutcome.IGNORED, detail=message.unreadable)]
    return [
        load_object(item.ref, item.target, ports, policy, progress=progress, clock=clock) for item in message.objects
    ]


def parked_failure(attempts: int, error: BaseException) -> JobFailure:
    """What the jobs of a message whose last attempt failed are failed with: a fixed sentence and an error id. The
    error's text (which may name a table, a bucket or a host) is the detail, for the log only."""
    sentence = (
        f"The batch could not be loaded after {attempts} attempts. It is parked in the dead-letter queue and can be"
        " redriven once the fault is fixed."
    )
    return job_failure(sentence, f"{type(error).__name__}: {error}")


def park_message(message: IngestMessage, jobs: JobTracker, reason: str, now: datetime) -> list[UUID]:
    """Fail the unfinished jobs of a message whose last attempt failed: SQS moves it to the dead-letter queue next,
    and nothing would otherwise tell the job's client that its batch stopped. A redrive restarts them."""
    return [job_id for job_id in message.job_ids if jobs.park_job(job_id, reason, now)]


def claims(record: Job, job: Job) -> bool:
    """Does the stored job ``record`` name the object ``job`` (as ``job_for`` made it) was made for: the same job id,
    tenant, bucket and key? The worker starts an API batch's or an upload's job only when it does."""
    return (record.job_id, record.tenant_id, record.bucket, record.object_key) == (
        job.job_id,
        job.tenant_id,
        job.bucket,
        job.object_key,
    )


def not_started(record: Job | None, job: Job) -> NotStarted:
    """Why a job whose start was refused did not start, from its record as read back: no record claims the object,
    the record pinned another version of an upload, or the job is completed."""
    if record is None or not claims(record, job):
        return NotStarted.UNCLAIMED
    if job.object_version is not None and record.object_version not in {None, job.object_version}:
        return NotStarted.OTHER_VERSION
    return NotStarted.COMPLETED


def job_for(ref: ObjectRef, target: Target, policy: LoadPolicy, now: datetime) -> Job:
    """The job of an object as its S3 event names it: for a drop, the record to create when none exists yet; for an
    API batch or an upload, what its record (written by the API first) must say to be started. An upload's job
    carries the version it is started on: the first version started is the one its job loads."""
    if target.job_id is None:
        raise ValueError(f"{ref.key} belongs to no job: {target.reason}")
    return Job(
        job_id=target.job_id,
        tenant_id=target.tenant_id,
        status=JobStatus.QUEUED,
        source=_SOURCE_BY_KIND[target.kind],
        bucket=ref.bucket,
        object_key=ref.key,
        created_at=now,
        expires_at=int((now + policy.job_retention).timestamp()),
        object_version=version_of(ref) if target.kind is TargetKind.UPLOAD else None,
    )


_SOURCE_BY_KIND: Final = {
    TargetKind.DROP: JobSource.DROP,
    TargetKind.API_BATCH: JobSource.API,
    TargetKind.UPLOAD: JobSource.UPLOAD,
}


def load_object(  # noqa: PLR0913 - the object, its job, and the collaborators of load_message
    ref: ObjectRef, target: Target, ports: LoadPorts, policy: LoadPolicy, *, progress: "Progress", clock: "Clock"
) -> LoadReport:
    """Load one object version into ``readings`` and quarantine, exactly once, and finish its job."""
    now = clock()
    if target.kind is TargetKind.IGNORED:
        return LoadReport(LoadOutcome.IGNORED, detail=target.reason)
    job = ports.jobs.start_job(job_for(ref, target, policy, now), now)
    if job is NotStarted.COMPLETED:
        return LoadReport(LoadOutcome.ALREADY_COMPLETED, job_id=target.job_id)
    if job is NotStarted.UNCLAIMED:
        # Acknowledged, not retried: no retry makes the API have accepted it. Nothing is created or read.
        return LoadReport(LoadOutcome.UNCLAIMED, job_id=target.job_id, detail=UNCLAIMED_BATCH, object_key=ref.key)
    if job is NotStarted.OTHER_VERSION:
        return LoadReport(
            LoadOutcome.OTHER_VERSION, job_id=target.job_id, detail=OTHER_UPLOAD_VERSION, object_key=ref.key
        )
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
    check_declared_size(job, opened.size if opened.size is not None else ref.size)
    layout = layout_of(ref.key, opened.content_encoding)
    # The reader's heartbeat keeps the message and watches the time, and its count bounds the text of a chunk.
    meter = ReadMeter(progress.still_reading)
    records = iter(read_records(opened.body, layout, whole_envelope=job.source is JobSource.API, heartbeat=meter))
    written = 0
    for chunk in chunk_streams(records, policy.chunk_readings, ReadingValidator(clock()), systems, meter):
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


def check_declared_size(job: Job, size: int | None) -> None:
    """Refuse an upload larger than its client declared. In AWS the form's content-length-range refuses it first;
    an S3 that enforces no POST policy (the local one) lets it through, and this keeps the bound all the same."""
    if job.size is not None and size is not None and size > job.size:
        raise UnreadableObjectError(
            f"the uploaded file has {size} bytes, more than the {job.size} declared when the upload was created:"
            " it was not loaded; create a new upload with the file's size"
        )


def _finish(
    status: JobStatus, counts: LoadCounts, started_at: datetime, now: datetime, message: str | None = None
) -> JobFinish:
    return JobFinish(status, counts, now, _elapsed_ms(started_at, now), message)


def _elapsed_ms(start: datetime, end: datetime) -> int:
    return max(0, int((end - start).total_seconds() * 1000))
