"""What MaintenanceFunction decides on each run. Pure: the adapters gather the facts and carry the decisions out
(``sluice.adapters.maintenance``).

Three steps, each run whatever became of the others:

- retention: chunks of ``readings`` older than the retention are dropped, unless a TimescaleDB retention policy
  (the Timescale-licensed build, migration 0002) drops them already;
- dead letters: an unfinished job whose message is parked in the dead-letter queue is failed, and the message
  stays there for a redrive. The worker does this itself on a message's last receive; this is the backstop for a
  last attempt that crashed or ran out of time. It runs before the sweeper, so a parked job is failed, not
  requeued behind its operator's back;
- stuck jobs: a processing job that has not moved for a while (no start, requeue or committed chunk) gets its S3
  event sent to IngestQueue again, and the worker resumes after its committed chunks (a duplicate delivery is
  harmless: the ledger skips what is committed). A queued job whose batch object was never stored is failed.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol
from uuid import UUID

from sluice.domain.objects import ObjectRef, object_created_body, parse_message, target_of
from sluice.errors import StorageUnavailableError
from sluice.models.jobs import Job, JobStatus

READINGS: Final = "readings"
# Who requeued a job, as the requeued S3 event's userIdentity says (S3 puts the uploader's principal there).
REQUEUED_BY: Final = "sluice-maintenance"
NEVER_STORED: Final = "the batch object was never stored, so nothing of this batch was accepted: send the batch again"
PARKED_WITHOUT_A_WORD: Final = (
    "gave up: the batch's message is parked in the dead-letter queue, and its last attempt ended (the worker"
    " crashed or ran out of time) before it could record why. It can be redriven once the fault is fixed"
)
_UNFINISHED: Final = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING})
# A sweep lists at most this many faults in its summary (the count has them all).
_MAX_NOTES: Final = 10
_RESUBMIT: Final = (
    "Readings it committed stay stored; send it again for the rest (readings already stored come back as duplicates)"
)


@dataclass(frozen=True, slots=True)
class MaintenancePolicy:
    """How long readings are kept and when an unfinished job counts as stuck."""

    retention_years: int
    # A processing job that has not moved for this long is requeued.
    stuck_after: timedelta
    # A queued job whose batch object is still missing this long after its creation is failed.
    unstored_after: timedelta


class Report(Protocol):
    """What a step reports: counts for metrics, and a summary for the log and the invocation's result."""

    @property
    def counts(self) -> Mapping[str, int]:
        """Metric name -> value (all counts)."""
        ...

    def summary(self) -> dict[str, object]:
        """JSON-ready fields."""
        ...


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step of a run: its report, or the error that stopped it."""

    step: str
    report: Report | None = None
    error: Exception | None = None


def run_steps(steps: Mapping[str, Callable[[], Report]]) -> list[StepResult]:
    """Run every step in order, whatever became of the ones before: a step that raises is reported with its error."""
    results: list[StepResult] = []
    for name, step in steps.items():
        try:
            report = step()
        except Exception as exc:  # any fault stops its own step only; the next run tries it again
            results.append(StepResult(name, error=exc))
        else:
            results.append(StepResult(name, report=report))
    return results


# --- retention ---------------------------------------------------------------------------------------------------


class ChunkStore(Protocol):
    """A hypertable's chunks."""

    def has_retention_policy(self, hypertable: str) -> bool:
        """Whether a TimescaleDB retention policy (a background job) drops the hypertable's old chunks."""
        ...

    def drop_chunks(self, hypertable: str, older_than_years: int) -> list[str]:
        """Drop the chunks whose every row is older than ``older_than_years``; return their names."""
        ...


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What the retention step did to one hypertable."""

    hypertable: str
    retention_years: int
    # A TimescaleDB policy drops the old chunks: the step left them to it.
    policy_in_place: bool
    dropped_chunks: tuple[str, ...] = ()

    @property
    def counts(self) -> Mapping[str, int]:
        """``DroppedChunks``."""
        return {"DroppedChunks": len(self.dropped_chunks)}

    def summary(self) -> dict[str, object]:
        """The hypertable, the retention, whether a policy has it, and the chunks dropped."""
        return {
            "hypertable": self.hypertable,
            "retention_years": self.retention_years,
            "policy_in_place": self.policy_in_place,
            "dropped_chunks": list(self.dropped_chunks),
        }


def apply_retention(chunks: ChunkStore, policy: MaintenancePolicy) -> RetentionReport:
    """Drop the readings older than the retention, unless a retention policy does (two droppers would race)."""
    if chunks.has_retention_policy(READINGS):
        return RetentionReport(READINGS, policy.retention_years, policy_in_place=True)
    dropped = chunks.drop_chunks(READINGS, policy.retention_years)
    return RetentionReport(READINGS, policy.retention_years, policy_in_place=False, dropped_chunks=tuple(dropped))


# --- dead letters ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParkedMessage:
    """A message of the dead-letter queue: an S3 event notification, as IngestQueue received it."""

    message_id: str
    body: str


class DeadLetters(Protocol):
    """The dead-letter queue, read without taking anything out of it."""

    def parked_messages(self) -> list[ParkedMessage]:
        """The messages parked now (each once), left in the queue."""
        ...


class ParkedJobs(Protocol):
    """Job records, as the dead-letter step reads and fails them."""

    def get_job(self, job_id: UUID) -> Job | None:
        """One job, or None."""
        ...

    def fail_unchanged_job(self, job: Job, message: str, now: datetime) -> bool:
        """Mark ``job`` failed with ``message`` if it is still as it was read; False otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class DeadLetterReport:
    """What the dead-letter step found and did."""

    messages: int
    failed_jobs: tuple[UUID, ...] = ()
    # Jobs that could not be read or written (tried again next run).
    errors: int = 0

    @property
    def counts(self) -> Mapping[str, int]:
        """``ParkedMessages``, ``ParkedJobsFailed``, ``DeadLetterErrors``."""
        return {
            "ParkedMessages": self.messages,
            "ParkedJobsFailed": len(self.failed_jobs),
            "DeadLetterErrors": self.errors,
        }

    def summary(self) -> dict[str, object]:
        """The counts and the ids of the jobs failed."""
        return {
            "parked_messages": self.messages,
            "failed_jobs": [str(job_id) for job_id in self.failed_jobs],
            "errors": self.errors,
        }


def fail_parked_jobs(dead_letters: DeadLetters, jobs: ParkedJobs, now: datetime) -> DeadLetterReport:
    """Fail each unfinished job whose message is parked; a finished job (completed, or failed with a reason of its
    own) is left as it is, and the conditional write never turns a completed job failed."""
    messages = dead_letters.parked_messages()
    failed: list[UUID] = []
    errors = 0
    for job_id in dict.fromkeys(job_id for message in messages for job_id in parse_message(message.body).job_ids):
        try:
            job = jobs.get_job(job_id)
            # Only if unchanged since read: a `sluice redrive` may have moved the message meanwhile and a worker
            # restarted the job (which sets attempted_at); that job is running, not parked.
            if (
                job is not None
                and job.status in _UNFINISHED
                and jobs.fail_unchanged_job(job, PARKED_WITHOUT_A_WORD, now)
            ):
                failed.append(job_id)
        except StorageUnavailableError:
            errors += 1
    return DeadLetterReport(len(messages), tuple(failed), errors)


# --- stuck jobs --------------------------------------------------------------------------------------------------


class SweptJobs(Protocol):
    """Job records, as the sweeper finds and changes them."""

    def jobs_created_before(self, status: JobStatus, before: datetime) -> Iterable[Job]:
        """The jobs in ``status`` created before ``before``."""
        ...

    def requeue_job(self, job: Job, now: datetime) -> bool:
        """Record the requeue of ``job`` if it is as it was read; False when it changed meanwhile."""
        ...

    def fail_unchanged_job(self, job: Job, message: str, now: datetime) -> bool:
        """Fail ``job`` with ``message`` if it is as it was read; False when it changed meanwhile."""
        ...


class ProgressLedger(Protocol):
    """The ingest ledger: when each job last committed a chunk."""

    def last_commits(self, job_ids: Sequence[UUID]) -> Mapping[UUID, datetime]:
        """The newest ``committed_at`` of each job that has ledger rows."""
        ...


class ObjectProbe(Protocol):
    """The batch bucket, looked at without reading objects."""

    def newest_version(self, bucket: str, key: str) -> ObjectRef | None:
        """The key's newest version (with its version id, ETag and size), or None when the key holds no object."""
        ...


class JobRequeue(Protocol):
    """IngestQueue, as the sweeper sends to it."""

    def send(self, message_body: str) -> None:
        """Send one message."""
        ...


@dataclass(frozen=True, slots=True)
class SweepPorts:
    """Everything the sweeper talks to."""

    jobs: SweptJobs
    ledger: ProgressLedger
    objects: ObjectProbe
    queue: JobRequeue


class SweepAction(StrEnum):
    """What becomes of an overdue job."""

    LEAVE = "leave"
    REQUEUE = "requeue"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class SweepDecision:
    """An action, with the object version to requeue or the message to fail with."""

    action: SweepAction
    ref: ObjectRef | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What the sweeper found and did."""

    # Queued or processing jobs old enough to be overdue.
    candidates: int
    requeued: tuple[UUID, ...] = ()
    failed: tuple[UUID, ...] = ()
    # Overdue queued jobs whose object is stored: their S3 event is IngestQueue's (or the DLQ's) to deliver.
    waiting: int = 0
    # Jobs not examined this run for lack of time; the next run examines them.
    deferred: int = 0
    # Jobs that could not be examined or changed (tried again next run).
    errors: int = 0
    notes: tuple[str, ...] = ()

    @property
    def counts(self) -> Mapping[str, int]:
        """``CandidateJobs``, ``RequeuedJobs``, ``StuckJobsFailed``, ``OverdueQueuedJobs``, ``DeferredJobs``,
        ``SweepErrors``."""
        return {
            "CandidateJobs": self.candidates,
            "RequeuedJobs": len(self.requeued),
            "StuckJobsFailed": len(self.failed),
            "OverdueQueuedJobs": self.waiting,
            "DeferredJobs": self.deferred,
            "SweepErrors": self.errors,
        }

    def summary(self) -> dict[str, object]:
        """The counts, the ids of the jobs requeued and failed, and what kept the sweeper from finishing."""
        return {
            "candidate_jobs": self.candidates,
            "requeued_jobs": [str(job_id) for job_id in self.requeued],
            "failed_jobs": [str(job_id) for job_id in self.failed],
            "overdue_queued_jobs": self.waiting,
            "deferred": self.deferred,
            "errors": self.errors,
            "notes": list(self.notes),
        }


def last_progress(job: Job, last_commit: datetime | None) -> datetime:
    """When the job last moved: its first start, its last start or requeue, or its last committed chunk."""
    moments = [moment for moment in (job.started_at, job.attempted_at, last_commit) if moment is not None]
    return max(moments, default=job.created_at)


def is_overdue(job: Job, last_commit: datetime | None, policy: MaintenancePolicy, now: datetime) -> bool:
    """A queued job past ``unstored_after`` since its creation, or a processing job that has not moved for
    ``stuck_after``. Without ``last_commit`` a processing job can only look older than it is."""
    if job.status is JobStatus.QUEUED:
        return now - job.created_at >= policy.unstored_after
    if job.status is JobStatus.PROCESSING:
        return now - last_progress(job, last_commit) >= policy.stuck_after
    return False


def requeue_ref(job: Job, newest: ObjectRef) -> ObjectRef | None:
    """The object version whose S3 event leads the worker back to ``job``, or None when the newest version is
    another one's. An API batch's key names its job; a drop's job id comes from its version id, or from its ETag
    where its S3 event carried no version id (an unversioned bucket, or moto), so both are tried."""
    unversioned = ObjectRef(newest.bucket, newest.key, etag=newest.etag, size=newest.size)
    for candidate in (newest, unversioned):
        if target_of(candidate).job_id == job.job_id:
            return candidate
    return None


def decide(job: Job, newest: ObjectRef | None, since: datetime) -> SweepDecision:
    """What to do with an overdue job, given its object's newest version (None: no object) and when it last moved."""
    if job.status is JobStatus.QUEUED:
        if newest is None:
            return SweepDecision(SweepAction.FAIL, message=NEVER_STORED)
        # Stored: its S3 event reached IngestQueue, which delivers it (or parked it, which the dead-letter step sees).
        return SweepDecision(SweepAction.LEAVE)
    ref = None if newest is None else requeue_ref(job, newest)
    if ref is not None:
        return SweepDecision(SweepAction.REQUEUE, ref=ref)
    stalled = f"stopped making progress at {since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    where = f"s3://{job.bucket}/{job.object_key}"
    if newest is None:
        message = f"{stalled}, and {where} no longer exists, so it cannot be resumed. {_RESUBMIT}"
    else:
        message = (
            f"{stalled}, and the version of {where} it was loading is no longer the newest, so it cannot be"
            f" requeued. {_RESUBMIT}"
        )
    return SweepDecision(SweepAction.FAIL, message=message)


def requeue_body(ref: ObjectRef, now: datetime) -> str:
    """The S3 event that leads the worker back to ``ref``, signed as the sweeper's."""
    return object_created_body(ref, now, REQUEUED_BY)


def sweep_jobs(
    ports: SweepPorts, policy: MaintenancePolicy, now: datetime, has_time: Callable[[], bool]
) -> SweepReport:
    """Requeue the stuck processing jobs and fail the queued jobs whose batch was never stored. Processing jobs go
    first, oldest first, so a run short of time (``has_time``) spends it where the sweeper matters most."""
    # A job created after a threshold cannot be past it (a job starts after its creation): those are not read.
    jobs = [
        *ports.jobs.jobs_created_before(JobStatus.PROCESSING, now - policy.stuck_after),
        *ports.jobs.jobs_created_before(JobStatus.QUEUED, now - policy.unstored_after),
    ]
    # The record alone can only make a job look older than it is: the ledger is read for those it calls overdue.
    overdue = sorted(
        (job for job in jobs if is_overdue(job, None, policy, now)),
        key=lambda job: (job.status is not JobStatus.PROCESSING, job.created_at),
    )
    stuck = [job.job_id for job in overdue if job.status is JobStatus.PROCESSING]
    tally = _SweepTally()
    try:
        commits = ports.ledger.last_commits(stuck) if stuck else {}
    except StorageUnavailableError as exc:
        # Without the ledger a processing job cannot be judged; the queued ones still can.
        tally.fault(f"{len(stuck)} processing jobs not judged: {exc}", len(stuck))
        overdue = [job for job in overdue if job.status is JobStatus.QUEUED]
        commits = {}
    for examined, job in enumerate(overdue):
        if not has_time():
            tally.deferred = len(overdue) - examined
            break
        commit = commits.get(job.job_id)
        if not is_overdue(job, commit, policy, now):
            continue
        try:
            newest = ports.objects.newest_version(job.bucket, job.object_key)
            _carry_out(ports, job, decide(job, newest, last_progress(job, commit)), now, tally)
        except StorageUnavailableError as exc:
            tally.fault(f"job {job.job_id}: {exc}")
    return tally.report(len(jobs))


@dataclass
class _SweepTally:
    """What a sweep did so far."""

    requeued: list[UUID] = field(default_factory=list)
    failed: list[UUID] = field(default_factory=list)
    waiting: int = 0
    deferred: int = 0
    errors: int = 0
    notes: list[str] = field(default_factory=list)

    def fault(self, note: str, jobs: int = 1) -> None:
        self.errors += jobs
        if len(self.notes) < _MAX_NOTES:
            self.notes.append(note)

    def report(self, candidates: int) -> SweepReport:
        return SweepReport(
            candidates,
            tuple(self.requeued),
            tuple(self.failed),
            self.waiting,
            self.deferred,
            self.errors,
            tuple(self.notes),
        )


def _carry_out(ports: SweepPorts, job: Job, decision: SweepDecision, now: datetime, tally: _SweepTally) -> None:
    # Each write is conditional on the job being as it was read: a worker that started it meanwhile wins.
    if decision.action is SweepAction.LEAVE:
        tally.waiting += 1
    elif decision.ref is not None:
        if ports.jobs.requeue_job(job, now):
            ports.queue.send(requeue_body(decision.ref, now))
            tally.requeued.append(job.job_id)
    elif ports.jobs.fail_unchanged_job(job, decision.message, now):
        tally.failed.append(job.job_id)
