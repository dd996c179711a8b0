"""The maintenance domain without AWS or a database: when a job is stuck, what becomes of it, what a requeued event
looks like, which parked jobs fail, and that one step's fault stops no other. The ports are in-memory fakes."""

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from sluice.domain.maintenance import (
    NEVER_STARTED,
    NEVER_STORED,
    NOT_RESUMABLE,
    PARKED_WITHOUT_A_WORD,
    REQUEUED_BY,
    DeadLetterReport,
    HypertableRetention,
    MaintenancePolicy,
    ParkedMessage,
    Report,
    RetentionReport,
    SweepAction,
    SweepPorts,
    apply_retention,
    decide,
    fail_parked_jobs,
    is_overdue,
    last_progress,
    requeue_body,
    requeue_ref,
    run_steps,
    sweep_jobs,
)
from sluice.domain.objects import ObjectRef, drop_job_id, parse_message, target_of
from sluice.errors import StorageUnavailableError
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice_tools.local.stack import scheduled_events
from sluice_tools.local.template import StackContext

from ..lambdas import template

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
POLICY = MaintenancePolicy(
    retention_years=5, rollup_retention_years=10, stuck_after=timedelta(minutes=45), queued_after=timedelta(minutes=15)
)
BUCKET = "sluice-batches-123456789012-eu-central-1"


def api_job(status: JobStatus = JobStatus.QUEUED, age: timedelta = timedelta(hours=1), **changes: object) -> Job:
    job_id = uuid4()
    fields: dict[str, object] = {
        "job_id": job_id,
        "tenant_id": "demo",
        "status": status,
        "source": JobSource.API,
        "bucket": BUCKET,
        "object_key": f"incoming/demo/2026/11/20/{job_id}.json",
        "created_at": NOW - age,
        "expires_at": 0,
    }
    if status is not JobStatus.QUEUED:
        fields["started_at"] = NOW - age
    return Job.model_validate(fields | changes)


def drop_job(ref: ObjectRef, age: timedelta = timedelta(hours=1)) -> Job:
    return Job(
        job_id=drop_job_id(ref),
        tenant_id="demo",
        status=JobStatus.PROCESSING,
        source=JobSource.DROP,
        bucket=ref.bucket,
        object_key=ref.key,
        created_at=NOW - age,
        started_at=NOW - age,
        expires_at=0,
    )


def newest(job: Job, version_id: str | None = "v2", etag: str = "e" * 32) -> ObjectRef:
    return ObjectRef(job.bucket, job.object_key, version_id=version_id, etag=etag, size=123)


# --- when a job counts as stuck ----------------------------------------------------------------------------------


def test_a_job_last_moved_at_its_latest_start_requeue_or_committed_chunk() -> None:
    job = api_job(JobStatus.PROCESSING, attempted_at=NOW - timedelta(minutes=50))

    assert last_progress(job, None) == NOW - timedelta(minutes=50)
    assert last_progress(job, NOW - timedelta(minutes=5)) == NOW - timedelta(minutes=5)
    assert last_progress(api_job(age=timedelta(minutes=3)), None) == NOW - timedelta(minutes=3)  # never started


def test_a_processing_job_is_overdue_only_when_nothing_moved_for_the_threshold() -> None:
    job = api_job(JobStatus.PROCESSING, age=timedelta(hours=2))

    assert is_overdue(job, None, POLICY, NOW)
    assert is_overdue(job, NOW - timedelta(minutes=45), POLICY, NOW)
    assert not is_overdue(job, NOW - timedelta(minutes=44), POLICY, NOW)  # a chunk committed since
    assert not is_overdue(api_job(JobStatus.PROCESSING, age=timedelta(minutes=44)), None, POLICY, NOW)


def test_a_queued_job_is_overdue_after_the_threshold_since_its_creation_or_requeue_and_a_finished_one_never() -> None:
    assert is_overdue(api_job(age=timedelta(minutes=15)), None, POLICY, NOW)
    assert not is_overdue(api_job(age=timedelta(minutes=14)), None, POLICY, NOW)
    requeued = api_job(age=timedelta(hours=1), attempted_at=NOW - timedelta(minutes=14))
    assert not is_overdue(requeued, None, POLICY, NOW)
    assert is_overdue(requeued, None, POLICY, NOW + timedelta(minutes=1))
    for status in (JobStatus.COMPLETED, JobStatus.FAILED):
        assert not is_overdue(api_job(status, age=timedelta(days=30)), None, POLICY, NOW)


# --- what becomes of an overdue job ------------------------------------------------------------------------------


def test_a_queued_job_without_its_object_fails_saying_it_was_never_accepted() -> None:
    job = api_job()

    never = decide(job, None, NOW)

    assert never.action is SweepAction.FAIL
    assert never.failure is not None
    assert never.failure.sentence == NEVER_STORED
    assert "never stored" in NEVER_STORED
    assert "send it again" in NEVER_STORED
    assert f"s3://{BUCKET}/{job.object_key} holds no object" in never.failure.detail


def test_a_queued_job_whose_object_is_stored_but_never_started_is_requeued_once_then_failed() -> None:
    # Given a batch stored an hour ago whose S3 event never reached IngestQueue
    job = api_job()

    # When the sweeper finds it, then finds it still queued after its requeue
    first = decide(job, newest(job), NOW)
    again = decide(job.model_copy(update={"attempted_at": NOW - timedelta(minutes=20)}), newest(job), NOW)

    # Then its S3 event is sent once, and after that it fails saying so
    assert (first.action, first.ref) == (SweepAction.REQUEUE, newest(job))
    assert again.action is SweepAction.FAIL
    assert again.failure is not None
    assert again.failure.sentence == NEVER_STARTED
    assert "requeued at 2026-11-20 11:40:00 UTC" in again.failure.detail


def test_a_stuck_api_batch_is_requeued_at_the_version_it_has() -> None:
    job = api_job(JobStatus.PROCESSING)

    decision = decide(job, newest(job), NOW)

    assert decision.action is SweepAction.REQUEUE
    assert decision.ref == newest(job)


def test_a_stuck_drop_is_requeued_with_what_named_its_job_a_version_id_or_else_the_etag() -> None:
    versioned = ObjectRef(BUCKET, "drops/demo/a.csv", version_id="v1", etag="e" * 32)
    keyed_by_etag = ObjectRef(BUCKET, "drops/demo/a.csv", etag="e" * 32)

    as_in_aws = requeue_ref(drop_job(versioned), versioned)
    as_in_moto = requeue_ref(drop_job(keyed_by_etag), versioned)  # HEAD gives a version id the event lacked

    assert as_in_aws == versioned
    assert as_in_moto == ObjectRef(BUCKET, "drops/demo/a.csv", etag="e" * 32)
    assert as_in_moto is not None
    assert as_in_moto.version_id is None


def test_a_stuck_drop_whose_key_holds_a_newer_version_fails_saying_why() -> None:
    loading = ObjectRef(BUCKET, "drops/demo/a.csv", version_id="v1", etag="e" * 32)
    job = drop_job(loading)

    decision = decide(job, ObjectRef(BUCKET, "drops/demo/a.csv", version_id="v2", etag="f" * 32), NOW)

    assert decision.action is SweepAction.FAIL
    assert decision.failure is not None
    assert decision.failure.sentence == NOT_RESUMABLE
    assert "Readings it committed stay stored" in decision.failure.message
    assert "no longer the newest" in decision.failure.detail
    assert "2026-11-20 12:00:00 UTC" in decision.failure.detail


def test_a_stuck_job_whose_object_is_gone_fails_saying_so() -> None:
    job = api_job(JobStatus.PROCESSING)

    decision = decide(job, None, NOW - timedelta(hours=1))

    assert decision.action is SweepAction.FAIL
    assert decision.failure is not None
    assert f"s3://{BUCKET}/{job.object_key} no longer exists" in decision.failure.detail


def test_what_a_failed_jobs_client_reads_names_no_bucket_key_or_moment_only_an_error_id() -> None:
    # The detail goes to the log; the job record, which any token of the tenant reads, gets a fixed sentence.
    job = api_job(JobStatus.PROCESSING)
    replaced = drop_job(ObjectRef(BUCKET, "drops/demo/a.csv", version_id="v1"))
    decisions = [
        decide(job, None, NOW),
        decide(replaced, ObjectRef(BUCKET, "drops/demo/a.csv", version_id="v2"), NOW),
        decide(api_job(), None, NOW),
        decide(api_job(attempted_at=NOW - timedelta(minutes=20)), newest(job), NOW),
    ]

    for decision in decisions:
        assert decision.failure is not None
        message = decision.failure.message
        assert message.startswith(decision.failure.sentence)
        assert message.endswith(f"Quote error id {decision.failure.error_id} to support.")
        assert len(decision.failure.error_id) == 16
        assert BUCKET not in message
        assert "incoming/" not in message
        assert "drops/" not in message
        assert "2026" not in message
    assert len({decision.failure.error_id for decision in decisions if decision.failure is not None}) == 4


def test_a_requeued_event_reads_back_as_the_same_object_and_job() -> None:
    ref = ObjectRef(BUCKET, "drops/demo/press 17+export (2).csv", version_id="v1", etag="e" * 32, size=99)

    body = requeue_body(ref, NOW)
    message = parse_message(body)
    (read_back,) = message.refs

    assert message.unreadable is None
    assert read_back == ref
    assert read_back.size == 99
    assert target_of(read_back).job_id == drop_job_id(ref)
    assert message.job_ids == (drop_job_id(ref),)
    record = json.loads(body)["Records"][0]
    assert record["s3"]["object"]["key"] == "drops/demo/press+17%2Bexport+%282%29.csv"
    assert record["userIdentity"] == {"principalId": REQUEUED_BY}
    assert record["eventTime"] == "2026-11-20T12:00:00.000Z"


def test_an_unversioned_requeue_carries_no_version_id() -> None:
    body = json.loads(requeue_body(ObjectRef(BUCKET, "drops/demo/a.csv"), NOW))

    assert body["Records"][0]["s3"]["object"] == {"key": "drops/demo/a.csv"}


# --- the sweep ---------------------------------------------------------------------------------------------------


@dataclass
class FakeJobs:
    jobs: list[Job]
    refuse: set[UUID] = field(default_factory=set)
    broken: set[UUID] = field(default_factory=set)
    requeued: list[UUID] = field(default_factory=list)
    failed: dict[UUID, str] = field(default_factory=dict)

    asked: list[tuple[JobStatus, datetime]] = field(default_factory=list)

    def jobs_created_before(self, status: JobStatus, before: datetime) -> Iterable[Job]:
        self.asked.append((status, before))
        return [job for job in self.jobs if job.status is status and job.created_at < before]

    def get_job(self, job_id: UUID) -> Job | None:
        return next((job for job in self.jobs if job.job_id == job_id), None)

    def requeue_job(self, job: Job, now: datetime) -> bool:
        if job.job_id in self.refuse:
            return False
        self.requeued.append(job.job_id)
        self.jobs = [each.model_copy(update={"attempted_at": now}) if each == job else each for each in self.jobs]
        return True

    def fail_unchanged_job(self, job: Job, message: str, now: datetime) -> bool:
        if job.job_id in self.broken:
            raise StorageUnavailableError("throttled")
        if job.job_id in self.refuse:
            return False
        self.failed[job.job_id] = message
        return True


@dataclass
class FakeLedger:
    commits: dict[UUID, datetime] = field(default_factory=dict)
    down: bool = False
    asked: list[list[UUID]] = field(default_factory=list)

    def last_commits(self, job_ids: Sequence[UUID]) -> Mapping[UUID, datetime]:
        self.asked.append(list(job_ids))
        if self.down:
            raise StorageUnavailableError("database down")
        return {job_id: self.commits[job_id] for job_id in job_ids if job_id in self.commits}


@dataclass
class FakeBucket:
    objects: dict[str, ObjectRef] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)

    def newest_version(self, bucket: str, key: str) -> ObjectRef | None:
        if key in self.broken:
            raise StorageUnavailableError("access denied")
        return self.objects.get(key)


@dataclass
class FakeQueue:
    sent: list[str] = field(default_factory=list)
    down: bool = False
    # Messages waiting in IngestQueue that no worker received yet.
    backlog: int = 0
    depth_reads: int = 0

    def send(self, message_body: str) -> None:
        if self.down:
            raise StorageUnavailableError("IngestQueue unreachable")
        self.sent.append(message_body)

    def waiting(self) -> int:
        self.depth_reads += 1
        if self.down:
            raise StorageUnavailableError("IngestQueue unreachable")
        return self.backlog


def ports(jobs: FakeJobs, bucket: FakeBucket, ledger: FakeLedger | None = None) -> SweepPorts:
    return SweepPorts(jobs=jobs, ledger=ledger or FakeLedger(), objects=bucket, queue=FakeQueue())


def stored(*jobs: Job) -> FakeBucket:
    return FakeBucket({job.object_key: newest(job) for job in jobs})


def always() -> bool:
    return True


def test_the_sweep_requeues_stuck_and_unstarted_jobs_fails_unstored_ones_and_leaves_the_rest() -> None:
    stuck = api_job(JobStatus.PROCESSING)
    moving = api_job(JobStatus.PROCESSING)  # started an hour ago, committed a chunk a minute ago
    unstored, lost, fresh = api_job(), api_job(), api_job(age=timedelta(minutes=1))
    done = api_job(JobStatus.COMPLETED, age=timedelta(days=3))
    jobs = FakeJobs([stuck, moving, unstored, lost, fresh, done])
    ledger = FakeLedger({moving.job_id: NOW - timedelta(minutes=1)})
    swept = ports(jobs, stored(stuck, moving, lost), ledger)

    report = sweep_jobs(swept, POLICY, NOW, always)

    assert report.requeued == (stuck.job_id, lost.job_id)
    assert report.failed == (unstored.job_id,)
    (failure,) = [failed.failure for failed in report.failures]
    assert jobs.failed == {unstored.job_id: failure.message}
    assert failure.message.startswith(NEVER_STORED)
    assert (report.candidates, report.waiting, report.errors, report.deferred) == (4, 1, 0, 0)
    assert ledger.asked == [[stuck.job_id, moving.job_id]]  # only processing jobs that look overdue
    # Only jobs old enough to be past a threshold are read: the fresh queued job and the completed one are not.
    assert jobs.asked == [
        (JobStatus.PROCESSING, NOW - timedelta(minutes=45)),
        (JobStatus.QUEUED, NOW - timedelta(minutes=15)),
    ]
    assert isinstance(swept.queue, FakeQueue)
    assert [parse_message(body).job_ids for body in swept.queue.sent] == [(stuck.job_id,), (lost.job_id,)]
    assert report.counts == {
        "CandidateJobs": 4,
        "RequeuedJobs": 2,
        "JobsRequeuedUnstarted": 1,
        "StuckJobsFailed": 1,
        "OverdueQueuedJobs": 1,
        "DeferredJobs": 0,
        "SweepErrors": 0,
    }
    summary = report.summary()
    assert summary["requeued_jobs"] == [str(stuck.job_id), str(lost.job_id)]
    assert summary["failures"] == [
        {
            "job_id": str(unstored.job_id),
            "error_id": failure.error_id,
            "detail": f"queued since 2026-11-20 11:00:00 UTC, and s3://{BUCKET}/{unstored.object_key} holds no object",
        }
    ]


def test_a_stored_job_whose_s3_event_was_lost_is_requeued_once_then_failed_a_deadline_later() -> None:
    # Given a batch accepted an hour ago, its object stored, its S3 event lost
    lost = api_job()
    jobs = FakeJobs([lost])
    swept = ports(jobs, stored(lost))
    assert isinstance(swept.queue, FakeQueue)

    # When the sweeper runs now, 14 minutes later, and 15 minutes later
    first = sweep_jobs(swept, POLICY, NOW, always)
    early = sweep_jobs(swept, POLICY, NOW + timedelta(minutes=14), always)
    late = sweep_jobs(swept, POLICY, NOW + timedelta(minutes=15), always)

    # Then its S3 event is sent once, recorded on the job, and the job fails after a deadline with nothing more sent
    assert (first.requeued, first.requeued_unstarted, jobs.requeued) == ((lost.job_id,), 1, [lost.job_id])
    assert parse_message(swept.queue.sent[0]).job_ids == (lost.job_id,)
    assert (early.requeued, early.failed) == ((), ())
    assert (late.requeued, late.failed, len(swept.queue.sent)) == ((), (lost.job_id,), 1)
    (failed,) = late.failures
    assert failed.failure.sentence == NEVER_STARTED
    assert jobs.failed[lost.job_id] == failed.failure.message
    assert "requeued at 2026-11-20 12:00:00 UTC" in failed.failure.detail


def test_a_requeued_job_is_not_failed_while_ingest_queue_holds_a_backlog() -> None:
    # Given two jobs requeued a deadline ago whose messages may still wait behind a backlog of 40 messages
    waiting = [api_job(), api_job()]
    jobs = FakeJobs(waiting)
    queue = FakeQueue(backlog=40)
    swept = SweepPorts(jobs=jobs, ledger=FakeLedger(), objects=stored(*waiting), queue=queue)
    sweep_jobs(swept, POLICY, NOW, always)

    # When the sweeper runs a deadline later, with the backlog still there, and again once it drained
    busy = sweep_jobs(swept, POLICY, NOW + timedelta(minutes=15), always)
    queue.backlog = 0
    drained = sweep_jobs(swept, POLICY, NOW + timedelta(minutes=30), always)

    # Then the jobs are left (the worker will start them) while messages wait, and failed only after; the depth is
    # read once per run that needs it
    assert (busy.failed, busy.waiting, busy.errors) == ((), 2, 0)
    assert set(drained.failed) == {job.job_id for job in waiting}
    assert queue.depth_reads == 2


def test_an_unstarted_job_whose_requeue_could_not_be_sent_is_not_recorded_as_requeued() -> None:
    # Requeued once only: a send that fails must leave the job for the next run, not marked as sent.
    lost = api_job()
    jobs = FakeJobs([lost])
    swept = SweepPorts(jobs=jobs, ledger=FakeLedger(), objects=stored(lost), queue=FakeQueue(down=True))

    report = sweep_jobs(swept, POLICY, NOW, always)

    assert (report.requeued, report.failed, report.errors, jobs.requeued) == ((), (), 1, [])
    assert report.notes == (f"job {lost.job_id}: IngestQueue unreachable",)


def test_a_job_that_changed_since_it_was_read_is_neither_requeued_nor_failed() -> None:
    started_meanwhile, sent_meanwhile = api_job(JobStatus.PROCESSING), api_job()
    jobs = FakeJobs([started_meanwhile, sent_meanwhile], refuse={started_meanwhile.job_id, sent_meanwhile.job_id})
    swept = ports(jobs, stored(started_meanwhile))

    report = sweep_jobs(swept, POLICY, NOW, always)

    assert (report.requeued, report.failed, report.errors) == ((), (), 0)
    assert isinstance(swept.queue, FakeQueue)
    assert swept.queue.sent == []


def test_a_fault_on_one_job_is_counted_and_the_others_are_swept() -> None:
    unreadable, unwritable, fine = api_job(JobStatus.PROCESSING, age=timedelta(hours=3)), api_job(), api_job()
    jobs = FakeJobs([unreadable, unwritable, fine], broken={unwritable.job_id})
    bucket = FakeBucket(broken={unreadable.object_key})

    report = sweep_jobs(ports(jobs, bucket), POLICY, NOW, always)

    assert report.failed == (fine.job_id,)
    assert report.errors == 2
    assert report.notes == (f"job {unreadable.job_id}: access denied", f"job {unwritable.job_id}: throttled")


def test_without_the_ledger_only_queued_jobs_are_judged() -> None:
    stuck, unstored = api_job(JobStatus.PROCESSING), api_job()
    jobs = FakeJobs([stuck, unstored])

    report = sweep_jobs(ports(jobs, stored(stuck), FakeLedger(down=True)), POLICY, NOW, always)

    assert (report.requeued, report.failed, report.errors) == ((), (unstored.job_id,), 1)
    assert report.notes == ("1 processing jobs not judged: database down",)


def test_a_sweep_short_of_time_takes_the_oldest_processing_jobs_first_and_defers_the_rest() -> None:
    older, newer = api_job(JobStatus.PROCESSING, age=timedelta(hours=5)), api_job(JobStatus.PROCESSING)
    unstored = api_job(age=timedelta(days=1))  # the oldest of all, but queued
    jobs = FakeJobs([unstored, newer, older])
    budget = iter([True, False])

    report = sweep_jobs(ports(jobs, stored(older, newer)), POLICY, NOW, lambda: next(budget))

    assert report.requeued == (older.job_id,)
    assert report.deferred == 2
    assert report.counts["DeferredJobs"] == 2


def test_a_sweep_lists_at_most_ten_faults() -> None:
    jobs = [api_job() for _ in range(12)]

    report = sweep_jobs(ports(FakeJobs(jobs, broken={job.job_id for job in jobs}), FakeBucket()), POLICY, NOW, always)

    assert report.errors == 12
    assert len(report.notes) == 10


# --- dead letters ------------------------------------------------------------------------------------------------


@dataclass
class FakeDeadLetters:
    messages: list[ParkedMessage]

    def parked_messages(self) -> list[ParkedMessage]:
        return list(self.messages)


@dataclass
class FakeParkedJobs:
    jobs: dict[UUID, Job]
    broken: set[UUID] = field(default_factory=set)
    # Started again by a worker after the dead-letter step read them (a redrive in between).
    restarted: set[UUID] = field(default_factory=set)
    parked: dict[UUID, str] = field(default_factory=dict)

    def get_job(self, job_id: UUID) -> Job | None:
        if job_id in self.broken:
            raise StorageUnavailableError("throttled")
        return self.jobs.get(job_id)

    def fail_unchanged_job(self, job: Job, message: str, now: datetime) -> bool:
        if job.job_id in self.restarted:
            return False
        self.parked[job.job_id] = message
        return True


def parked(*jobs: Job) -> ParkedMessage:
    records = [
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": job.bucket}, "object": {"key": job.object_key}}}
        for job in jobs
    ]
    return ParkedMessage(str(uuid4()), json.dumps({"Records": records}))


def test_unfinished_jobs_of_parked_messages_fail_and_finished_ones_are_left() -> None:
    queued, processing = api_job(), api_job(JobStatus.PROCESSING)
    completed, failed = api_job(JobStatus.COMPLETED), api_job(JobStatus.FAILED, error_message="not gzip")
    unknown = api_job()  # its record expired
    jobs = FakeParkedJobs({job.job_id: job for job in (queued, processing, completed, failed)})
    messages = [parked(queued, processing), parked(completed), parked(failed), parked(unknown), parked(queued)]
    messages.append(ParkedMessage("m", "not an S3 event"))

    report = fail_parked_jobs(FakeDeadLetters(messages), jobs, NOW)

    assert report.failed_jobs == (queued.job_id, processing.job_id)
    assert jobs.parked == {each.job_id: each.failure.message for each in report.failures}
    assert all(each.failure.sentence == PARKED_WITHOUT_A_WORD for each in report.failures)
    assert report.counts == {"ParkedMessages": 6, "ParkedJobsFailed": 2, "DeadLetterErrors": 0}
    assert report.summary()["failed_jobs"] == [str(queued.job_id), str(processing.job_id)]
    logged = report.summary()["failures"]
    assert isinstance(logged, list)
    assert [entry["error_id"] for entry in logged] == [each.failure.error_id for each in report.failures]
    assert "is in the dead-letter queue" in logged[0]["detail"]


def test_a_job_that_cannot_be_read_is_counted_and_the_others_are_failed() -> None:
    unreadable, queued = api_job(), api_job()
    jobs = FakeParkedJobs({queued.job_id: queued}, broken={unreadable.job_id})

    report = fail_parked_jobs(FakeDeadLetters([parked(unreadable), parked(queued)]), jobs, NOW)

    assert (report.failed_jobs, report.errors) == ((queued.job_id,), 1)


def test_a_job_restarted_after_it_was_read_is_not_failed() -> None:
    redriven, parked_still = api_job(JobStatus.PROCESSING), api_job()
    jobs = FakeParkedJobs({job.job_id: job for job in (redriven, parked_still)}, restarted={redriven.job_id})

    report = fail_parked_jobs(FakeDeadLetters([parked(redriven), parked(parked_still)]), jobs, NOW)

    assert report.failed_jobs == (parked_still.job_id,)
    assert redriven.job_id not in jobs.parked


def test_the_parked_message_says_it_can_be_redriven() -> None:
    assert PARKED_WITHOUT_A_WORD.startswith("Gave up")
    assert "dead-letter queue" in PARKED_WITHOUT_A_WORD
    assert "redriven" in PARKED_WITHOUT_A_WORD


def test_the_jobs_of_a_message_are_those_of_its_objects() -> None:
    api, drop = api_job(), ObjectRef(BUCKET, "drops/demo/a.csv", etag="e" * 32)
    body = json.dumps(
        {
            "Records": [
                {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, **more}}}
                for key, more in ((api.object_key, {}), (drop.key, {"eTag": drop.etag}), ("elsewhere/x", {}))
            ]
        }
    )

    assert parse_message(body).job_ids == (api.job_id, drop_job_id(drop))
    assert parse_message('{"Event": "s3:TestEvent"}').job_ids == ()
    assert parse_message("{").job_ids == ()


# --- retention ---------------------------------------------------------------------------------------------------


@dataclass
class FakeChunks:
    policies: set[str]
    old: dict[str, list[str]]
    dropped: list[tuple[str, int]] = field(default_factory=list)

    def has_retention_policy(self, hypertable: str) -> bool:
        return hypertable in self.policies

    def drop_chunks(self, hypertable: str, older_than_years: int) -> list[str]:
        self.dropped.append((hypertable, older_than_years))
        return self.old.get(hypertable, [])


def test_old_chunks_are_dropped_where_no_policy_does_it_the_rollups_after_longer() -> None:
    chunks = FakeChunks(policies=set(), old={"readings": ["_hyper_1_1_chunk"], "readings_1m": ["_hyper_9_2_chunk"]})

    report = apply_retention(chunks, POLICY)

    assert chunks.dropped == [("readings", 5), ("readings_1m", 10), ("readings_1h", 10)]
    assert report == RetentionReport(
        (
            HypertableRetention("readings", 5, policy_in_place=False, dropped_chunks=("_hyper_1_1_chunk",)),
            HypertableRetention("readings_1m", 10, policy_in_place=False, dropped_chunks=("_hyper_9_2_chunk",)),
            HypertableRetention("readings_1h", 10, policy_in_place=False),
        )
    )
    assert report.counts == {"DroppedChunks": 2}
    assert report.summary()["hypertables"] == [table.summary() for table in report.hypertables]
    assert report.hypertables[0].summary() == {
        "hypertable": "readings",
        "retention_years": 5,
        "policy_in_place": False,
        "dropped_chunks": ["_hyper_1_1_chunk"],
    }


def test_a_retention_policy_is_left_to_drop_its_hypertables_chunks_and_no_other() -> None:
    chunks = FakeChunks(policies={"readings", "readings_1h"}, old={"readings_1m": ["_hyper_9_2_chunk"]})

    report = apply_retention(chunks, POLICY)

    assert chunks.dropped == [("readings_1m", 10)]
    assert [(table.hypertable, table.policy_in_place, table.dropped_chunks) for table in report.hypertables] == [
        ("readings", True, ()),
        ("readings_1m", False, ("_hyper_9_2_chunk",)),
        ("readings_1h", True, ()),
    ]


# --- a run -------------------------------------------------------------------------------------------------------


def test_a_step_that_raises_stops_no_other() -> None:
    def broken() -> Report:
        raise RuntimeError("database down")

    results = run_steps({"first": lambda: DeadLetterReport(1), "broken": broken, "last": lambda: DeadLetterReport(2)})

    assert [(result.step, result.report is None) for result in results] == [
        ("first", False),
        ("broken", True),
        ("last", False),
    ]
    assert str(results[1].error) == "database down"
    assert isinstance(results[2].report, DeadLetterReport)
    assert results[2].report.messages == 2


def test_the_local_runtime_fires_the_maintenance_schedule() -> None:
    events = scheduled_events(StackContext(template(), stack_name="sluice-local", region="eu-central-1"))

    by_function = {event.function: event for event in events}
    assert len(by_function) == len(events)
    maintenance = by_function["MaintenanceFunction"]
    assert (maintenance.name, maintenance.schedule.expression) == ("Schedule", "rate(15 minutes)")
    after = datetime(2026, 11, 20, 12, 7, tzinfo=UTC)
    assert maintenance.schedule.next_after(after) == datetime(2026, 11, 20, 12, 15, tzinfo=UTC)
    # The alert evaluator, every minute (the rules' resolution).
    evaluator = by_function["AlertEvaluatorFunction"]
    assert evaluator.schedule.next_after(after) == datetime(2026, 11, 20, 12, 8, tzinfo=UTC)
