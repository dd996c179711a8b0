"""What MaintenanceFunction decides on each run. Pure: the adapters gather the facts and carry the decisions out
(``sluice.adapters.maintenance``).

Three steps, each run whatever became of the others:

- retention: chunks of ``readings`` older than the readings' retention, and of the rollups ``readings_1m`` and
  ``readings_1h`` older than theirs (longer: a rollup outlives the readings it sums), are dropped, each hypertable
  unless a TimescaleDB retention policy (the Timescale-licensed build, migrations 0002 and 0009) drops them already;
- dead letters: an unfinished job whose message is parked in the dead-letter queue is failed, and the message
  stays there for a redrive. The worker does this itself on a message's last receive; this is the backstop for a
  last attempt that crashed or ran out of time. It runs before the sweeper, so a parked job is failed, not
  requeued behind its operator's back;
- uploads: a job still awaiting its upload a grace after its form expired is queued when its file is stored (its
  S3 event was lost, or is late: the stuck-jobs step then sends it, once) and failed when it is not (no file came,
  and none can: the form has expired);
- stuck jobs: a processing job that has not moved for a while (no start, requeue or committed chunk) gets its S3
  event sent to IngestQueue again, and the worker resumes after its committed chunks (a duplicate delivery is
  harmless: the ledger skips what is committed). A queued job whose batch object was never stored is failed. A
  queued job whose object is stored but whose loading never started (its S3 event was lost) gets its S3 event
  sent once; still queued a deadline later, it is failed.

A job failed here gets a fixed sentence and an error id (``sluice.domain.failures``); the detail, which names the
bucket and key, is in the step's summary, which the function logs.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol
from uuid import UUID

from sluice.domain.failures import JobFailure, job_failure
from sluice.domain.objects import ObjectRef, object_created_body, parse_message, target_of, version_of
from sluice.errors import StorageUnavailableError
from sluice.models.jobs import Job, JobSource, JobStatus

READINGS: Final = "readings"
# The rollups the worker keeps (migration 0009); readings_5m and readings_1d are views over them, retained with them.
ROLLUPS: Final = ("readings_1m", "readings_1h")
# Who requeued a job, as the requeued S3 event's userIdentity says (S3 puts the uploader's principal there).
REQUEUED_BY: Final = "sluice-maintenance"
# What the client of a job failed here reads (with an error id): fixed sentences, never a bucket, key or exception.
NEVER_STORED: Final = "The batch was never stored, so none of it was accepted: send it again."
NEVER_STARTED: Final = (
    "The batch was stored, but loading it never started, not even after it was queued again: none of it was"
    " loaded. Send it again."
)
NOT_RESUMABLE: Final = (
    "The batch stopped making progress and cannot be resumed: the object it was loading is gone or was replaced."
    " Readings it committed stay stored; send it again for the rest (readings already stored come back as"
    " duplicates)."
)
PARKED_WITHOUT_A_WORD: Final = (
    "Gave up: the batch's last attempt ended before it could record why. It is parked in the dead-letter queue"
    " and can be redriven once the fault is fixed."
)
# What the client of an upload no file came for reads (with the form's expiry, and an error id).
NO_UPLOAD: Final = "No file was uploaded before the upload form expired at {expired}; create a new upload."
_UNFINISHED: Final = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING})
# A sweep lists at most this many faults in its summary (the count has them all).
_MAX_NOTES: Final = 10


@dataclass(frozen=True, slots=True)
class MaintenancePolicy:
    """How long readings and their rollups are kept and when an unfinished job counts as stuck."""

    retention_years: int
    # The rollups' retention: at least the readings', so a rollup never goes before the readings it sums.
    rollup_retention_years: int
    # A processing job that has not moved for this long is requeued.
    stuck_after: timedelta
    # A job still queued this long after its creation is failed when its object is missing, and requeued once
    # when it is stored; still queued this long after that requeue, it is failed.
    queued_after: timedelta
    # A job awaiting its upload this long after its form expired is queued (its file is stored) or failed (it is
    # not): a POST begun just before the expiry may still be arriving.
    upload_grace: timedelta = timedelta(minutes=15)


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
class HypertableRetention:
    """What the retention step did to one hypertable."""

    hypertable: str
    retention_years: int
    # A TimescaleDB policy drops the old chunks: the step left them to it.
    policy_in_place: bool
    dropped_chunks: tuple[str, ...] = ()

    def summary(self) -> dict[str, object]:
        """The hypertable, the retention, whether a policy has it, and the chunks dropped."""
        return {
            "hypertable": self.hypertable,
            "retention_years": self.retention_years,
            "policy_in_place": self.policy_in_place,
            "dropped_chunks": list(self.dropped_chunks),
        }


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What the retention step did to each hypertable, ``readings`` first."""

    hypertables: tuple[HypertableRetention, ...]

    @property
    def counts(self) -> Mapping[str, int]:
        """``DroppedChunks``, of all hypertables."""
        return {"DroppedChunks": sum(len(table.dropped_chunks) for table in self.hypertables)}

    def summary(self) -> dict[str, object]:
        """Each hypertable's summary."""
        return {"hypertables": [table.summary() for table in self.hypertables]}


def retention_plan(policy: MaintenancePolicy) -> list[tuple[str, int]]:
    """Each hypertable with the years its rows are kept: the readings', then the rollups' (longer or equal)."""
    return [(READINGS, policy.retention_years)] + [(rollup, policy.rollup_retention_years) for rollup in ROLLUPS]


def apply_retention(chunks: ChunkStore, policy: MaintenancePolicy) -> RetentionReport:
    """Drop each hypertable's rows older than its retention, unless a retention policy does (two droppers would
    race). A fault stops the step: the next run starts over, and what was dropped stays dropped."""
    done: list[HypertableRetention] = []
    for hypertable, years in retention_plan(policy):
        if chunks.has_retention_policy(hypertable):
            done.append(HypertableRetention(hypertable, years, policy_in_place=True))
            continue
        dropped = chunks.drop_chunks(hypertable, years)
        done.append(HypertableRetention(hypertable, years, policy_in_place=False, dropped_chunks=tuple(dropped)))
    return RetentionReport(tuple(done))


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
class FailedJob:
    """A job a step failed, with what its client reads and what the log says."""

    job_id: UUID
    failure: JobFailure

    def logged(self) -> dict[str, str]:
        """The job, its error id and the detail behind it: the log line support finds by the error id."""
        return {"job_id": str(self.job_id), "error_id": self.failure.error_id, "detail": self.failure.detail}


@dataclass(frozen=True, slots=True)
class DeadLetterReport:
    """What the dead-letter step found and did."""

    messages: int
    failures: tuple[FailedJob, ...] = ()
    # Jobs that could not be read or written (tried again next run).
    errors: int = 0

    @property
    def failed_jobs(self) -> tuple[UUID, ...]:
        """The ids of the jobs failed."""
        return tuple(failed.job_id for failed in self.failures)

    @property
    def counts(self) -> Mapping[str, int]:
        """``ParkedMessages``, ``ParkedJobsFailed``, ``DeadLetterErrors``."""
        return {
            "ParkedMessages": self.messages,
            "ParkedJobsFailed": len(self.failures),
            "DeadLetterErrors": self.errors,
        }

    def summary(self) -> dict[str, object]:
        """The counts, the ids of the jobs failed, and each failure's error id and detail."""
        return {
            "parked_messages": self.messages,
            "failed_jobs": [str(job_id) for job_id in self.failed_jobs],
            "failures": [failed.logged() for failed in self.failures],
            "errors": self.errors,
        }


def fail_parked_jobs(dead_letters: DeadLetters, jobs: ParkedJobs, now: datetime) -> DeadLetterReport:
    """Fail each unfinished job whose message is parked; a finished job (completed, or failed with a reason of its
    own) is left as it is, and the conditional write never turns a completed job failed."""
    messages = dead_letters.parked_messages()
    failed: list[FailedJob] = []
    errors = 0
    parked_in = {job_id: message.message_id for message in messages for job_id in parse_message(message.body).job_ids}
    for job_id, message_id in parked_in.items():
        failure = job_failure(
            PARKED_WITHOUT_A_WORD, f"message {message_id} is in the dead-letter queue with no failure recorded"
        )
        try:
            job = jobs.get_job(job_id)
            # Only if unchanged since read: a `sluice redrive` may have moved the message meanwhile and a worker
            # restarted the job (which sets attempted_at); that job is running, not parked.
            if job is not None and job.status in _UNFINISHED and jobs.fail_unchanged_job(job, failure.message, now):
                failed.append(FailedJob(job_id, failure))
        except StorageUnavailableError:
            errors += 1
    return DeadLetterReport(len(messages), tuple(failed), errors)


# --- uploads ----------------------------------------------------------------------------------------------------


class AwaitedUploads(Protocol):
    """Job records of uploads, as the uploads step finds and moves them."""

    def jobs_created_before(self, status: JobStatus, before: datetime) -> Iterable[Job]:
        """The jobs in ``status`` created before ``before`` (the index's projection: no upload fields)."""
        ...

    def get_job(self, job_id: UUID) -> Job | None:
        """One job, whole, or None."""
        ...

    def queue_upload(self, job: Job) -> bool:
        """Move ``job`` from awaiting_upload to queued; False when it is no longer awaiting its upload."""
        ...

    def fail_upload(self, job: Job, message: str, now: datetime) -> bool:
        """Fail ``job`` with ``message`` if it is still awaiting its upload; False otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class UploadReport:
    """What the uploads step found and did."""

    # Jobs awaiting their upload that were created long enough ago to be past their expiry and grace.
    candidates: int
    queued: tuple[UUID, ...] = ()
    failures: tuple[FailedJob, ...] = ()
    # Jobs that could not be examined or changed (tried again next run).
    errors: int = 0

    @property
    def counts(self) -> Mapping[str, int]:
        """``ExpiredUploadsQueued``, ``ExpiredUploadsFailed``, ``UploadErrors``."""
        return {
            "ExpiredUploadsQueued": len(self.queued),
            "ExpiredUploadsFailed": len(self.failures),
            "UploadErrors": self.errors,
        }

    def summary(self) -> dict[str, object]:
        """The counts, the ids of the jobs queued and failed, and each failure's error id and detail."""
        return {
            "candidate_jobs": self.candidates,
            "queued_jobs": [str(job_id) for job_id in self.queued],
            "failed_jobs": [str(failed.job_id) for failed in self.failures],
            "failures": [failed.logged() for failed in self.failures],
            "errors": self.errors,
        }


def settle_uploads(
    jobs: AwaitedUploads, objects: "ObjectProbe", policy: MaintenancePolicy, now: datetime
) -> UploadReport:
    """Queue each upload whose form expired a grace ago and whose file is stored, so the stuck-jobs step sends its
    S3 event (a lost event loses nothing); fail each whose file never came. Runs before that step."""
    # A form expires after its job's creation: a job created after now - grace cannot be past expiry + grace.
    candidates = list(jobs.jobs_created_before(JobStatus.AWAITING_UPLOAD, now - policy.upload_grace))
    queued: list[UUID] = []
    failures: list[FailedJob] = []
    errors = 0
    for candidate in candidates:
        try:
            # The index holds no upload_expires_at; the record itself does (and is read strongly consistent).
            job = jobs.get_job(candidate.job_id)
            if job is None or job.status is not JobStatus.AWAITING_UPLOAD or not upload_expired(job, policy, now):
                continue
            if objects.newest_version(job.bucket, job.object_key) is not None:
                if jobs.queue_upload(job):
                    queued.append(job.job_id)
                continue
            failure = no_upload_failure(job)
            if jobs.fail_upload(job, failure.message, now):
                failures.append(FailedJob(job.job_id, failure))
        except StorageUnavailableError:
            errors += 1
    return UploadReport(len(candidates), tuple(queued), tuple(failures), errors)


def upload_expired(job: Job, policy: MaintenancePolicy, now: datetime) -> bool:
    """Is ``job``'s form past its expiry and the grace? A job without an expiry counts from its creation."""
    return now - (job.upload_expires_at or job.created_at) >= policy.upload_grace


def no_upload_failure(job: Job) -> JobFailure:
    """The failure of an upload whose file never came: when its form expired, which the client needs to know."""
    expired = job.upload_expires_at or job.created_at
    return job_failure(
        NO_UPLOAD.format(expired=_moment(expired)), f"s3://{job.bucket}/{job.object_key} holds no object"
    )


# --- stuck jobs --------------------------------------------------------------------------------------------------


class SweptJobs(Protocol):
    """Job records, as the sweeper finds and changes them."""

    def jobs_created_before(self, status: JobStatus, before: datetime) -> Iterable[Job]:
        """The jobs in ``status`` created before ``before``."""
        ...

    def get_job(self, job_id: UUID) -> Job | None:
        """One job, whole, or None."""
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

    def waiting(self) -> int:
        """How many messages IngestQueue holds that no worker has received yet (visible or delayed)."""
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
    """An action, with the object version to requeue or the failure to fail with."""

    action: SweepAction
    ref: ObjectRef | None = None
    failure: JobFailure | None = None


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What the sweeper found and did."""

    # Queued or processing jobs old enough to be overdue.
    candidates: int
    requeued: tuple[UUID, ...] = ()
    failures: tuple[FailedJob, ...] = ()
    # Overdue queued jobs whose object is stored: their S3 event was lost, or waits behind a backlog.
    waiting: int = 0
    # Of the requeued jobs, the queued ones: stored, never started (their S3 event was lost, most likely).
    requeued_unstarted: int = 0
    # Jobs not examined this run for lack of time; the next run examines them.
    deferred: int = 0
    # Jobs that could not be examined or changed (tried again next run).
    errors: int = 0
    notes: tuple[str, ...] = ()

    @property
    def failed(self) -> tuple[UUID, ...]:
        """The ids of the jobs failed."""
        return tuple(failed.job_id for failed in self.failures)

    @property
    def counts(self) -> Mapping[str, int]:
        """``CandidateJobs``, ``RequeuedJobs``, ``JobsRequeuedUnstarted``, ``StuckJobsFailed``,
        ``OverdueQueuedJobs``, ``DeferredJobs``, ``SweepErrors``."""
        return {
            "CandidateJobs": self.candidates,
            "RequeuedJobs": len(self.requeued),
            "JobsRequeuedUnstarted": self.requeued_unstarted,
            "StuckJobsFailed": len(self.failures),
            "OverdueQueuedJobs": self.waiting,
            "DeferredJobs": self.deferred,
            "SweepErrors": self.errors,
        }

    def summary(self) -> dict[str, object]:
        """The counts, the ids of the jobs requeued and failed, each failure's error id and detail, and what kept
        the sweeper from finishing."""
        return {
            "candidate_jobs": self.candidates,
            "requeued_jobs": [str(job_id) for job_id in self.requeued],
            "requeued_unstarted_jobs": self.requeued_unstarted,
            "failed_jobs": [str(job_id) for job_id in self.failed],
            "failures": [failed.logged() for failed in self.failures],
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
    """A queued job past ``queued_after`` since its creation or its requeue, or a processing job that has not moved
    for ``stuck_after``. Without ``last_commit`` a processing job can only look older than it is."""
    if job.status is JobStatus.QUEUED:
        # A queued job's attempted_at is the sweeper's requeue: no worker start leaves a job queued.
        return now - (job.attempted_at or job.created_at) >= policy.queued_after
    if job.status is JobStatus.PROCESSING:
        return now - last_progress(job, last_commit) >= policy.stuck_after
    return False


def requeue_ref(job: Job, newest: ObjectRef) -> ObjectRef | None:
    """The object version whose S3 event leads the worker back to ``job``, or None when the newest version is
    another one's. An API batch's and an upload's key names its job; a drop's job id comes from its version id, or
    from its ETag where its S3 event carried no version id (an unversioned bucket, or moto), so both are tried. An
    upload started on one version (``object_version``) is only ever led back to that version."""
    unversioned = ObjectRef(newest.bucket, newest.key, etag=newest.etag, size=newest.size)
    for candidate in (newest, unversioned):
        if target_of(candidate).job_id != job.job_id:
            continue
        if job.object_version is None or version_of(candidate) == job.object_version:
            return candidate
    return None


def decide(
    job: Job, newest: ObjectRef | None, since: datetime, queue_busy: Callable[[], bool] = lambda: False
) -> SweepDecision:
    """What to do with an overdue job, given its object's newest version (None: no object), when it last moved,
    and whether IngestQueue holds messages no worker has received yet (asked only when it decides)."""
    ref = None if newest is None else requeue_ref(job, newest)
    if job.status is JobStatus.QUEUED:
        return _decide_queued(job, newest, ref, queue_busy)
    if ref is not None:
        return SweepDecision(SweepAction.REQUEUE, ref=ref)
    where = f"s3://{job.bucket}/{job.object_key}"
    stalled = f"stopped making progress at {_moment(since)}"
    if newest is None:
        return _fail(NOT_RESUMABLE, f"{stalled}, and {where} no longer exists")
    return _fail(NOT_RESUMABLE, f"{stalled}, and the version of {where} it was loading is no longer the newest")


def _decide_queued(
    job: Job, newest: ObjectRef | None, ref: ObjectRef | None, queue_busy: Callable[[], bool]
) -> SweepDecision:
    where = f"s3://{job.bucket}/{job.object_key}"
    if newest is None:
        return _fail(NEVER_STORED, f"queued since {_moment(job.created_at)}, and {where} holds no object")
    if job.attempted_at is None and ref is not None:
        # Stored, yet never started: IngestQueue never had its S3 event (or still holds it behind a backlog,
        # where one more message is harmless). Sent once: attempted_at records it.
        return SweepDecision(SweepAction.REQUEUE, ref=ref)
    if queue_busy():
        # Its S3 event (or the requeued one) may still wait behind a backlog: failed now, the job would be started
        # by the worker later, and its client would see it fail and then complete. The queue's age alarm covers the
        # backlog itself.
        return SweepDecision(SweepAction.LEAVE)
    requeued = "never requeued" if job.attempted_at is None else f"requeued at {_moment(job.attempted_at)}"
    return _fail(NEVER_STARTED, f"queued since {_moment(job.created_at)}, {requeued}; {where} is stored")


def _fail(sentence: str, detail: str) -> SweepDecision:
    return SweepDecision(SweepAction.FAIL, failure=job_failure(sentence, detail))


def _moment(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def requeue_body(ref: ObjectRef, now: datetime) -> str:
    """The S3 event that leads the worker back to ``ref``, signed as the sweeper's."""
    return object_created_body(ref, now, REQUEUED_BY)


def sweep_jobs(
    ports: SweepPorts, policy: MaintenancePolicy, now: datetime, has_time: Callable[[], bool]
) -> SweepReport:
    """Requeue the stuck processing jobs and the stored queued jobs that never started, and fail the queued jobs
    whose batch was never stored or that a requeue did not start. Processing jobs go first, oldest first, so a run
    short of time (``has_time``) spends it where the sweeper matters most."""
    # A job created after a threshold cannot be past it (a job starts after its creation): those are not read.
    jobs = [
        *ports.jobs.jobs_created_before(JobStatus.PROCESSING, now - policy.stuck_after),
        *ports.jobs.jobs_created_before(JobStatus.QUEUED, now - policy.queued_after),
    ]
    # The record alone can only make a job look older than it is: the ledger is read for those it calls overdue.
    overdue = sorted(
        (job for job in jobs if is_overdue(job, None, policy, now)),
        key=lambda job: (job.status is not JobStatus.PROCESSING, job.created_at),
    )
    stuck = [job.job_id for job in overdue if job.status is JobStatus.PROCESSING]
    tally = _SweepTally()
    depth: list[int] = []  # IngestQueue's waiting messages, read once per run and only when a decision needs it

    def queue_busy() -> bool:
        if not depth:
            depth.append(ports.queue.waiting())
        return depth[0] > 0

    try:
        commits = ports.ledger.last_commits(stuck) if stuck else {}
    except StorageUnavailableError as exc:
        # Without the ledger a processing job cannot be judged; the queued ones still can.
        tally.fault(f"{len(stuck)} processing jobs not judged: {exc}", len(stuck))
        overdue = [job for job in overdue if job.status is JobStatus.QUEUED]
        commits = {}
    for examined, listed in enumerate(overdue):
        if not has_time():
            tally.deferred = len(overdue) - examined
            break
        commit = commits.get(listed.job_id)
        job = listed
        try:
            if listed.source is JobSource.UPLOAD and listed.status is JobStatus.PROCESSING:
                # The index projects no object_version, and a stuck upload is led back only to the version its job
                # loads: the record itself says which.
                job = ports.jobs.get_job(listed.job_id) or listed
            if not is_overdue(job, commit, policy, now):
                continue
            newest = ports.objects.newest_version(job.bucket, job.object_key)
            if job.status is JobStatus.QUEUED and newest is not None:
                tally.waiting += 1
            _carry_out(ports, job, decide(job, newest, last_progress(job, commit), queue_busy), now, tally)
        except StorageUnavailableError as exc:
            tally.fault(f"job {job.job_id}: {exc}")
    return tally.report(len(jobs))


@dataclass
class _SweepTally:
    """What a sweep did so far."""

    requeued: list[UUID] = field(default_factory=list)
    failures: list[FailedJob] = field(default_factory=list)
    waiting: int = 0
    requeued_unstarted: int = 0
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
            tuple(self.failures),
            self.waiting,
            self.requeued_unstarted,
            self.deferred,
            self.errors,
            tuple(self.notes),
        )


def _carry_out(ports: SweepPorts, job: Job, decision: SweepDecision, now: datetime, tally: _SweepTally) -> None:
    # Each write is conditional on the job being as it was read: a worker that started it meanwhile wins.
    if decision.ref is not None:
        if job.status is JobStatus.QUEUED:
            # Sent before it is recorded: a queued job is requeued once only, so a send that fails must leave it
            # unrecorded for the next run. Should the record then be refused (a worker started the job meanwhile),
            # the extra message finds the job started or completed and changes nothing.
            ports.queue.send(requeue_body(decision.ref, now))
            if ports.jobs.requeue_job(job, now):
                tally.requeued.append(job.job_id)
                tally.requeued_unstarted += 1
        elif ports.jobs.requeue_job(job, now):
            ports.queue.send(requeue_body(decision.ref, now))
            tally.requeued.append(job.job_id)
    elif decision.failure is not None and ports.jobs.fail_unchanged_job(job, decision.failure.message, now):
        tally.failures.append(FailedJob(job.job_id, decision.failure))
