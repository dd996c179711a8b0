"""A job's lifecycle in the worker: find or create the job of each object a message names, write the object's
chunks, and finish the job with counts summed from the ledger.

The promise rests on three facts kept here, in ``sluice.domain.chunks`` and in the sink: chunk boundaries depend
only on the object version (so a retry cuts the same chunks), each chunk is written with its ledger row in one
transaction (so a committed chunk is skipped on a retry), and a job's counts are summed from the ledger (never
incremented). Bad data is a value: it ends in quarantine or, when the whole object is unreadable, in the job's
error_message. Everything else (database, S3, DynamoDB faults) raises, and the message is retried.
"""

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import IO, Final, Protocol
from uuid import UUID

from sluice.domain.chunks import CHUNK_TEXT_BEATS, ChunkStream, ReadMeter, SystemBook, chunk_streams
from sluice.domain.failures import JobFailure, job_failure
from sluice.domain.formats import Record, layout_of, read_records
from sluice.domain.objects import IngestMessage, ObjectRef, Target, TargetedObject, TargetKind, version_of
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
LOADED_BY_ANOTHER_MESSAGE: Final = "the same object version as another message of the invocation, loaded by that one"
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

    def write_chunks(self, writes: Sequence["ChunkWrite"], meanwhile: Callable[[], None] | None = None) -> list[bool]:
        """Write chunks (of one job or of several) with their ledger rows in one transaction, reading all of each
        chunk's ``valid_rows()`` (then its quarantine rows); per chunk, False (its rows read past) when the ledger
        already had it. ``meanwhile`` is called once, while the database finishes the transaction (the worker
        reads its next chunk then); an exception from it, or from the commit, fails the write."""

    def job_counts(self, job_ids: Sequence[UUID]) -> dict[UUID, "LoadCounts"]:
        """Each job's counts, summed from its ledger rows (zeros for a job with none)."""

    def quarantine_reasons(self, job_ids: Sequence[UUID]) -> dict[UUID, dict[QuarantineReason, int]]:
        """Each job's quarantined readings counted by reason (written with the ledger rows: they add up to them)."""


#: A chunk and the job it belongs to, as the sink writes it.
ChunkWrite = tuple[Job, ChunkStream]


class Pending[T](Protocol):
    """A call under way (or done): its answer, or the exception it raised, once it has one."""

    def answer(self) -> T | Exception:
        """Wait for the call; its answer or its exception."""


class Background(Protocol):
    """Starts a call that is mostly waiting (an AWS request: starting or finishing a job) and hands it back at
    once, so that the worker goes on writing readings meanwhile. The worker's wiring runs calls in threads."""

    def __call__[T](self, call: Callable[[], T]) -> Pending[T]:
        """The call, started."""


@dataclass(frozen=True, slots=True)
class Done[T]:
    """A call already made."""

    value: T | Exception

    def answer(self) -> T | Exception:
        return self.value


def in_turn[T](call: Callable[[], T]) -> Done[T]:
    """``Background`` without threads: the call is made at once."""
    try:
        return Done(call())
    except Exception as exc:  # handed back to the caller, which fails that call's message
        return Done(exc)


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
    background: Background = in_turn


@dataclass(frozen=True, slots=True)
class LoadPolicy:
    """How objects are cut, which are loaded together, and how long drop jobs are kept."""

    chunk_readings: int
    job_retention: timedelta
    # Objects up to this size (as their S3 event gives it) are read whole and, when they fit one chunk, written
    # together with the other small objects of the invocation: one transaction and one COPY for up to
    # ``chunk_readings`` readings. Larger ones stream chunk by chunk.
    small_object_bytes: int = 8 * 1024 * 1024


def load_message(
    message: IngestMessage, ports: LoadPorts, policy: LoadPolicy, *, progress: "Progress", clock: "Clock"
) -> list[LoadReport]:
    """Load every object one message names (``load_messages`` for a message alone); raise what failed it."""
    (outcome,) = load_messages([message], ports, policy, progress=[progress], clock=clock)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


#: What handling one message came to: a report per object it names, or the exception that fails it (SQS then
#: delivers it again, and only it: its neighbours in the invocation are acknowledged).
MessageOutcome = list[LoadReport] | Exception


def load_messages(
    messages: Sequence[IngestMessage],
    ports: LoadPorts,
    policy: LoadPolicy,
    *,
    progress: Sequence["Progress"],
    clock: "Clock",
) -> list[MessageOutcome]:
    """Load the objects an invocation's messages name (``progress``: each message's own), and say per message what
    came of it. A message that is not an S3 event is reported, not retried (it would fail the same way every time).

    The jobs are started together, then the small objects (``LoadPolicy.small_object_bytes``) that fit one chunk
    are written together, a group of up to ``chunk_readings`` readings in one transaction with each job's ledger
    row, then larger objects stream chunk by chunk, and the jobs are finished together. A fault fails only the
    messages it touches: a group whose transaction fails is written again object by object."""
    run = _Invocation(messages, ports, policy, progress, clock)
    streamed = run.write_small(run.start_jobs())
    for loading in streamed:
        run.write_streamed(loading)
    run.finish_jobs()
    run.settle_twins()
    return run.outcomes()


def load_object(  # noqa: PLR0913 - the object, its job, and the collaborators of load_message
    ref: ObjectRef, target: Target, ports: LoadPorts, policy: LoadPolicy, *, progress: "Progress", clock: "Clock"
) -> LoadReport:
    """Load one object version into ``readings`` and quarantine, exactly once, and finish its job."""
    (report,) = load_message(
        IngestMessage(objects=(TargetedObject(ref, target),)), ports, policy, progress=progress, clock=clock
    )
    return report


@dataclass(slots=True)
class _Loading:
    """An object whose job started, as loading it goes on."""

    message: int
    ref: ObjectRef
    job: Job
    started_at: datetime
    written: int = 0
    # Every chunk is written (or the object is unreadable and ``failure`` says why): the job can be finished.
    done: bool = False
    failure: str | None = None
    finishing: bool = False


@dataclass(slots=True)
class _Starting:
    """An object whose job is being started."""

    message: int
    ref: ObjectRef
    job: Job
    now: datetime
    start: Pending[Job | NotStarted]


@dataclass(slots=True)
class _Member:
    """A small object read whole, all of it one chunk, for a group written in one transaction."""

    loading: _Loading
    records: list[Record]


@dataclass(slots=True)
class _Finishing:
    loading: _Loading
    finish: JobFinish
    reasons: Mapping[QuarantineReason, int]
    call: Pending[None]


class _Invocation:
    """One invocation's messages: what each came to so far, and the steps that load their objects. The AWS calls
    (starting and finishing jobs) run in the background while readings are written."""

    def __init__(
        self,
        messages: Sequence[IngestMessage],
        ports: LoadPorts,
        policy: LoadPolicy,
        progress: Sequence["Progress"],
        clock: "Clock",
    ) -> None:
        self._messages = messages
        self._ports = ports
        self._policy = policy
        self._progress = progress
        self._clock = clock
        self._reports: list[list[LoadReport]] = [[] for _ in messages]
        self._errors: list[Exception | None] = [None for _ in messages]
        self._systems: dict[str, set[UUID]] = {}
        self._validator: ReadingValidator | None = None
        self._loadings: list[_Loading] = []
        self._finishing: list[_Finishing] = []
        # Messages naming an object an earlier message of the invocation names too, with that object's start.
        self._twins: list[tuple[int, _Starting]] = []

    def outcomes(self) -> list[MessageOutcome]:
        return [
            error if error is not None else reports for reports, error in zip(self._reports, self._errors, strict=True)
        ]

    def _fail(self, message: int, error: Exception) -> None:
        if self._errors[message] is None:
            self._errors[message] = error

    def _failed(self, loading: _Loading) -> bool:
        return self._errors[loading.message] is not None

    def start_jobs(self) -> list[_Starting]:
        """Start the job of every object named, all at once; report those that have none."""
        now = self._clock()
        starting: list[_Starting] = []
        first: dict[ObjectRef, _Starting] = {}
        by_job: dict[UUID, _Starting] = {}
        for index, message in enumerate(self._messages):
            if message.unreadable is not None:
                self._reports[index].append(LoadReport(LoadOutcome.IGNORED, detail=message.unreadable))
                continue
            for item in message.objects:
                if item.target.kind is TargetKind.IGNORED:
                    self._reports[index].append(LoadReport(LoadOutcome.IGNORED, detail=item.target.reason))
                    continue
                if item.ref in first:
                    # The same object version named again (an S3 event delivered twice, both in this invocation):
                    # loaded once, by the first message naming it; this one shares that message's fate.
                    self._twins.append((index, first[item.ref]))
                    continue
                job = job_for(item.ref, item.target, self._policy, now)
                call = partial(self._ports.jobs.start_job, job, now)
                earlier = by_job.get(job.job_id)
                if earlier is not None:
                    # Another version of the same upload's key (its form POSTed twice) in this invocation: the job
                    # is pinned to the first version started, which only that start's answer settles; two starts
                    # at once would leave the pin to the store's atomicity alone.
                    call = partial(_after, earlier.start, call)
                start = self._ports.background(call)
                starting.append(first.setdefault(item.ref, _Starting(index, item.ref, job, now, start)))
                by_job[job.job_id] = starting[-1]
        return starting

    def settle_twins(self) -> None:
        """A message naming an object another message of the invocation loaded: failed if that message failed (both
        come back), else reported as loaded already."""
        for index, original in self._twins:
            error = self._errors[original.message]
            if error is not None:
                self._fail(index, error)
                continue
            self._reports[index].append(
                LoadReport(LoadOutcome.ALREADY_COMPLETED, job_id=original.job.job_id, detail=LOADED_BY_ANOTHER_MESSAGE)
            )

    def _started(self, starting: _Starting) -> _Loading | None:
        """Wait for a job's start: the object's loading, or None (reported, or its message failed)."""
        answer = starting.start.answer()
        if isinstance(answer, Exception):
            self._fail(starting.message, answer)
            return None
        if isinstance(answer, NotStarted):
            self._reports[starting.message].append(_not_started_report(answer, starting.job.job_id, starting.ref))
            return None
        loading = _Loading(starting.message, starting.ref, answer, answer.started_at or starting.now)
        self._loadings.append(loading)
        return loading

    def write_small(self, starting: list[_Starting]) -> list[_Loading]:
        """Read the small objects whole as their jobs start and write those of one chunk in groups of up to a chunk
        of readings (the later jobs start meanwhile); return the objects to stream: the large ones, and small ones
        of more than a chunk after all."""
        streamed: list[_Loading] = []
        group: list[_Member] = []
        size = 0
        for each in starting:
            loading = self._started(each)
            if loading is None:
                continue
            if not _is_small(loading.ref, self._policy):
                streamed.append(loading)
                continue
            records = self._read_whole(loading)
            if records is None:
                streamed.append(loading)
                continue
            if not records:
                # Unreadable (failure says why), or an empty object: nothing to write; the job can be finished.
                loading.done = not self._failed(loading)
                continue
            if group and size + len(records) > self._policy.chunk_readings:
                self._write_group(group)
                group, size = [], 0
            group.append(_Member(loading, records))
            size += len(records)
        if group:
            self._write_group(group)
        return streamed

    def _read_whole(self, loading: _Loading) -> list[Record] | None:
        """A small object's records (none when it failed or is unreadable), or None when they are more than one
        chunk holds: it is then streamed like a large one."""
        try:
            records, meter = open_records(
                loading.ref, loading.job, self._ports.objects, self._progress[loading.message]
            )
            # One record past the chunk tells a larger object; the text bound is chunk_streams' own.
            whole = list(itertools.islice(records, self._policy.chunk_readings + 1))
        except UnreadableObjectError as exc:
            loading.failure = str(exc)
            return []
        except Exception as exc:  # fails this object's message only
            self._fail(loading.message, exc)
            return []
        if len(whole) > self._policy.chunk_readings or meter.beats >= CHUNK_TEXT_BEATS:
            return None
        return whole

    def _write_group(self, group: list[_Member]) -> None:
        """Write a group's chunks in one transaction, then start finishing its jobs. Should the transaction fail,
        each object is written alone, so that a fault of one (its data, its message) fails no other message."""
        try:
            written = self._ports.sink.write_chunks([self._chunk_of(member) for member in group])
        except Exception as exc:  # narrowed below, object by object
            if len(group) == 1:
                self._fail(group[0].loading.message, exc)
                return
            for member in group:
                self._write_group([member])
            return
        for member, wrote in zip(group, written, strict=True):
            loading = member.loading
            loading.written += wrote
            loading.done = True
            try:
                self._progress[loading.message].chunk_committed(0)
            except Exception as exc:  # out of time, or a fault: this message is retried
                self._fail(loading.message, exc)
        self._finish_soon([member.loading for member in group])

    def _chunk_of(self, member: _Member) -> ChunkWrite:
        job = member.loading.job
        return job, ChunkStream(0, iter(member.records), self._judge(), self._book(job))

    def _judge(self) -> ReadingValidator:
        if self._validator is None:
            self._validator = ReadingValidator(self._clock())
        return self._validator

    def _book(self, job: Job) -> SystemBook:
        owned = self._systems.get(job.tenant_id)
        if owned is None:
            owned = self._systems[job.tenant_id] = self._ports.sink.tenant_systems(job.tenant_id)
        return SystemBook(job, owned)

    def write_streamed(self, loading: _Loading) -> None:
        """Stream a large object chunk by chunk, each chunk in its own transaction."""
        if self._failed(loading):
            return
        try:
            loading.written = write_object(
                loading.ref,
                loading.job,
                self._ports,
                self._policy,
                progress=self._progress[loading.message],
                clock=self._clock,
            )
        except UnreadableObjectError as exc:
            loading.failure = str(exc)
        except Exception as exc:  # fails this object's message only
            self._fail(loading.message, exc)
            return
        loading.done = True

    def _finish_soon(self, loadings: list[_Loading]) -> None:
        """Read the counts of jobs whose objects are done from the ledger and start recording their end."""
        done = [each for each in loadings if each.done and not each.finishing and not self._failed(each)]
        if not done:
            return
        try:
            counts = self._ports.sink.job_counts([loading.job.job_id for loading in done])
            quarantining = [
                loading.job.job_id
                for loading in done
                if loading.failure is None and counts[loading.job.job_id].quarantined
            ]
            # Read before the jobs complete: should this fail, the retry reads them again instead of finding them
            # completed.
            reasons = self._ports.sink.quarantine_reasons(quarantining) if quarantining else {}
        except Exception as exc:  # the messages of these jobs are retried
            for loading in done:
                self._fail(loading.message, exc)
            return
        now = self._clock()
        for loading in done:
            loading.finishing = True
            finish = _job_finish(loading, counts[loading.job.job_id], now)
            call = self._ports.background(partial(self._ports.jobs.finish_job, loading.job.job_id, finish))
            self._finishing.append(_Finishing(loading, finish, reasons.get(loading.job.job_id, {}), call))

    def finish_jobs(self) -> None:
        """Finish the jobs not finished yet, and wait for every finish: report each job, or fail its message."""
        self._finish_soon(self._loadings)
        for each in self._finishing:
            answer = each.call.answer()
            loading, finish = each.loading, each.finish
            if isinstance(answer, Exception):
                self._fail(loading.message, answer)
                continue
            job = loading.job
            if finish.status is JobStatus.FAILED:
                report = LoadReport(
                    LoadOutcome.FAILED, job.job_id, finish.counts, loading.written, detail=finish.error_message or ""
                )
            else:
                report = LoadReport(
                    LoadOutcome.COMPLETED,
                    job.job_id,
                    finish.counts,
                    loading.written,
                    quarantined_by_reason=each.reasons,
                    latency_ms=_elapsed_ms(job.created_at, finish.completed_at),
                )
            self._reports[loading.message].append(report)


def _after[T](earlier: Pending[object], call: Callable[[], T]) -> T:
    """``call``, once ``earlier`` has its answer (whatever it is)."""
    earlier.answer()
    return call()


def _job_finish(loading: _Loading, counts: LoadCounts, now: datetime) -> JobFinish:
    if loading.failure is None:
        return _finish(JobStatus.COMPLETED, counts, loading.started_at, now)
    stored = f" ({counts.total} readings of it had been stored or quarantined)" if counts.total else ""
    return _finish(JobStatus.FAILED, counts, loading.started_at, now, f"{loading.failure}{stored}")


def _is_small(ref: ObjectRef, policy: LoadPolicy) -> bool:
    return ref.size is not None and ref.size <= policy.small_object_bytes


def _not_started_report(why: NotStarted, job_id: UUID, ref: ObjectRef) -> LoadReport:
    if why is NotStarted.COMPLETED:
        return LoadReport(LoadOutcome.ALREADY_COMPLETED, job_id=job_id)
    if why is NotStarted.UNCLAIMED:
        # Acknowledged, not retried: no retry makes the API have accepted it. Nothing is created or read.
        return LoadReport(LoadOutcome.UNCLAIMED, job_id=job_id, detail=UNCLAIMED_BATCH, object_key=ref.key)
    return LoadReport(LoadOutcome.OTHER_VERSION, job_id=job_id, detail=OTHER_UPLOAD_VERSION, object_key=ref.key)


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


class Clock(Protocol):
    """The current time (UTC)."""

    def __call__(self) -> datetime:
        """Now."""


def write_object(  # noqa: PLR0913 - the object, its job, and the collaborators of load_object
    ref: ObjectRef, job: Job, ports: LoadPorts, policy: LoadPolicy, *, progress: Progress, clock: Clock
) -> int:
    """Read the object and write every chunk the ledger does not have yet; return how many were written."""
    records, meter = open_records(ref, job, ports.objects, progress)
    committed = ports.sink.committed_chunks(job.job_id)
    systems = SystemBook(job, ports.sink.tenant_systems(job.tenant_id))
    chunks = chunk_streams(records, policy.chunk_readings, ReadingValidator(clock()), systems, meter)
    written = 0
    chunk = next(chunks, None)
    while chunk is not None:
        # A committed chunk is still read (the stream has no index) but neither judged nor written again; so is
        # one a concurrent twin of this message committed meanwhile (the sink finds its ledger row).
        if chunk.chunk_no in committed:
            chunk.skip()
            chunk = next(chunks, None)
            continue
        after = _NextChunk(chunks, committed)
        # While the database commits this chunk, the next one is read (parsed, not yet judged).
        written += ports.sink.write_chunks([(job, chunk)], meanwhile=after.read)[0]
        progress.chunk_committed(chunk.chunk_no)
        chunk = after.chunk()
    return written


class _NextChunk:
    """The chunk after the one being written, read ahead while that one commits."""

    def __init__(self, chunks: Iterator[ChunkStream], committed: set[int]) -> None:
        self._chunks = chunks
        self._committed = committed
        self._taken = False
        self._chunk: ChunkStream | None = None

    def read(self) -> None:
        self._taken = True
        self._chunk = next(self._chunks, None)
        if self._chunk is not None and self._chunk.chunk_no not in self._committed:
            self._chunk.read_ahead()

    def chunk(self) -> ChunkStream | None:
        if not self._taken:  # the sink did not call it
            self.read()
        return self._chunk


def open_records(
    ref: ObjectRef, job: Job, objects: ObjectSource, progress: Progress
) -> tuple[Iterator[Record], ReadMeter]:
    """An object's records as its job reads them, and the meter of the reader's heartbeat: one a MiB of text, which
    keeps the message, watches the time and bounds the text of a chunk. An unknown format fails the job before
    anything is downloaded, an upload larger than declared before anything is read."""
    layout_of(ref.key, None)
    opened = objects.open_object(ref)
    check_declared_size(job, opened.size if opened.size is not None else ref.size)
    meter = ReadMeter(progress.still_reading)
    layout = layout_of(ref.key, opened.content_encoding)
    records = read_records(opened.body, layout, whole_envelope=job.source is JobSource.API, heartbeat=meter)
    return iter(records), meter


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
