"""The fault switches of `make reliability`: off by default, and when on they fail the way real faults do."""

import subprocess
import sys
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from sluice.adapters.faults import INJECTED_EXIT_CODE, EveryNth, FaultyBatchStore, FaultyJobRepository
from sluice.adapters.ingest import build_ingest_service
from sluice.errors import StorageUnavailableError
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice.settings import IngestApiSettings, LoadWorkerSettings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TABLES = {"batch_bucket": "b-bucket", "jobs_table": "jobs", "rate_limit_table": "rate", "idempotency_table": "idem"}


class RecordingJobs:
    def __init__(self) -> None:
        self.created: list[UUID] = []
        self.failed: list[tuple[UUID, str]] = []

    def create_job(self, job: Job) -> None:
        self.created.append(job.job_id)

    def fail_job(self, job_id: UUID, message: str, now: datetime) -> None:
        self.failed.append((job_id, message))


class RecordingBatches:
    bucket = "b-bucket"

    def __init__(self) -> None:
        self.keys: list[str] = []

    def put_batch(self, key: str, body: bytes, *, gzipped: bool, metadata: dict[str, str]) -> None:
        self.keys.append(key)


def a_job() -> Job:
    return Job(
        job_id=uuid4(),
        tenant_id="demo",
        status=JobStatus.QUEUED,
        source=JobSource.API,
        bucket="b-bucket",
        object_key="incoming/demo/x.json",
        created_at=NOW,
        expires_at=0,
    )


def test_every_nth_fires_on_multiples_only() -> None:
    every = EveryNth(3)

    assert [every.fires() for _ in range(7)] == [False, False, True, False, False, True, False]


def test_a_faulty_job_repository_refuses_every_nth_write_and_passes_the_rest_through() -> None:
    inner = RecordingJobs()
    jobs = FaultyJobRepository(inner, every=2)
    first, second = a_job(), a_job()

    jobs.create_job(first)
    with pytest.raises(StorageUnavailableError, match="injected fault"):
        jobs.create_job(second)
    jobs.fail_job(first.job_id, "gone", NOW)

    assert inner.created == [first.job_id]
    assert inner.failed == [(first.job_id, "gone")]


def test_a_faulty_batch_store_refuses_every_nth_put() -> None:
    inner = RecordingBatches()
    batches = FaultyBatchStore(inner, every=1)

    with pytest.raises(StorageUnavailableError, match="batch object write was refused"):
        batches.put_batch("incoming/demo/a.json", b"{}", gzipped=False, metadata={})

    assert (batches.bucket, inner.keys) == ("b-bucket", [])


@pytest.mark.usefixtures("aws_stack")  # the service builds its clients (against an in-process moto)
def test_the_ingest_service_is_faultless_unless_a_switch_is_on() -> None:
    plain = build_ingest_service(IngestApiSettings(**TABLES))  # type: ignore[arg-type]
    faulty = build_ingest_service(
        IngestApiSettings(**TABLES, fault_fail_job_write_every="3", fault_fail_batch_put_every=2)  # type: ignore[arg-type]
    )

    assert not isinstance(plain.ports.jobs, FaultyJobRepository)
    assert not isinstance(plain.ports.batches, FaultyBatchStore)
    assert isinstance(faulty.ports.jobs, FaultyJobRepository)
    assert isinstance(faulty.ports.batches, FaultyBatchStore)


def test_empty_fault_switches_are_off() -> None:
    settings = IngestApiSettings(**TABLES, fault_fail_job_write_every="", fault_fail_batch_put_every="")  # type: ignore[arg-type]
    worker = LoadWorkerSettings(jobs_table="jobs", ingest_queue_url="http://q/1", fault_exit_after_chunk="")

    assert (settings.fault_fail_job_write_every, settings.fault_fail_batch_put_every) == (None, None)
    assert worker.fault_exit_after_chunk is None


def test_the_exit_fault_kills_the_process_right_after_its_chunk_commits() -> None:
    # Run where a killed process cannot take the test session with it.
    script = """
from sluice.adapters.sqs import MessageProgress
progress = MessageProgress("q", "r", visibility_timeout_s=30, heartbeat_s=999, remaining_ms=lambda: 10**6,
                           min_remaining_ms=0, exit_after_chunk=2, client=object())
progress.chunk_committed(1)
print("chunk 1 acknowledged", flush=True)
progress.chunk_committed(2)
print("never printed", flush=True)
"""
    ended = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)

    assert ended.returncode == INJECTED_EXIT_CODE
    assert ended.stdout == "chunk 1 acknowledged\n"
    assert "killed after chunk 2 committed, before the ack" in ended.stderr
