"""The fault switches of `make reliability` (a development tool, ``sluice_tools.faults``): off by default, out of
reach of a deployment, and when on they fail the way real faults do."""

import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from sluice.domain.chunks import ChunkStream, SystemBook
from sluice.domain.formats import Record
from sluice.domain.load import ChunkWrite, LoadPolicy, job_for
from sluice.domain.objects import ObjectRef, target_of
from sluice.domain.validation import ReadingValidator
from sluice.errors import StorageUnavailableError
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice.services.ingest_api import IngestService, build_ingest_service
from sluice.services.load_worker import LoadService, build_load_service
from sluice.settings import IngestApiSettings, LoadWorkerSettings
from sluice_tools.faults import (
    INJECTED_EXIT_CODE,
    EveryNth,
    FaultyBatchStore,
    FaultyJobRepository,
    FaultyLoadService,
    FaultyProgress,
    InjectedFaultError,
    MidGroupExit,
    with_faults,
)
from sluice_tools.local.template import resources_of_type
from sluice_tools.settings import FaultSwitches

from ..lambdas import template

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TABLES = {"batch_bucket": "b-bucket", "jobs_table": "jobs", "rate_limit_table": "rate", "idempotency_table": "idem"}
SWITCH_NAMES = (
    "crash_after_chunk",
    "exit_after_chunk",
    "exit_mid_group_once",
    "exit_in_evaluation_once",
    "exit_after_webhook_send_once",
    "fail_job_write_every",
    "fail_batch_put_every",
)


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


class RecordingProgress:
    def __init__(self) -> None:
        self.committed: list[int] = []
        self.reads = 0

    def chunk_committed(self, chunk_no: int) -> None:
        self.committed.append(chunk_no)

    def still_reading(self) -> None:
        self.reads += 1


class Died(BaseException):
    """Raised instead of ending the test session, where the exit fault would kill the process."""


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


@pytest.fixture
def ingest_service(aws_stack: object) -> IngestService:
    """IngestApiFunction's service as its handler builds it (clients against an in-process moto), its job and
    batch ports replaced by recording fakes."""
    built = build_ingest_service(IngestApiSettings(**TABLES))  # type: ignore[arg-type]
    return replace(built, ports=replace(built.ports, jobs=RecordingJobs(), batches=RecordingBatches()))


@pytest.fixture
def load_service(aws_stack: object) -> LoadService:
    """LoadWorkerFunction's service as its handler builds it; no database is reached until a message is loaded."""
    settings = LoadWorkerSettings(
        jobs_table="jobs", ingest_queue_url="https://sqs.local/ingest", db_dsn="postgresql://nobody@127.0.0.1:1/x"
    )
    return build_load_service(settings)


# --- the faults ----------------------------------------------------------------------------------------------------


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


def test_a_faulty_progress_crashes_right_after_its_chunk_and_passes_the_rest_through() -> None:
    inner = RecordingProgress()
    progress = FaultyProgress(inner, crash_after_chunk=1, exit_after_chunk=None)

    progress.chunk_committed(0)
    with pytest.raises(InjectedFaultError, match="crash after chunk 1"):
        progress.chunk_committed(1)
    progress.chunk_committed(2)
    progress.still_reading()

    assert (inner.committed, inner.reads) == ([0, 2], 1)


# --- switching them on -----------------------------------------------------------------------------------------


def test_the_ingest_service_is_faultless_unless_a_switch_is_on(ingest_service: IngestService) -> None:
    plain = with_faults(ingest_service, FaultSwitches())
    faulty = with_faults(ingest_service, FaultSwitches(fail_job_write_every=3, fail_batch_put_every=2))

    assert plain == ingest_service
    assert isinstance(plain, IngestService)
    assert not isinstance(plain.ports.jobs, FaultyJobRepository)
    assert not isinstance(plain.ports.batches, FaultyBatchStore)
    assert isinstance(faulty, IngestService)
    assert isinstance(faulty.ports.jobs, FaultyJobRepository)
    assert isinstance(faulty.ports.batches, FaultyBatchStore)
    # Everything else is the wired service's own.
    assert (faulty.policy, faulty.tenant_claim, faulty.idempotency) == (
        ingest_service.policy,
        ingest_service.tenant_claim,
        ingest_service.idempotency,
    )
    assert (faulty.ports.limiter, faulty.ports.idempotency) == (
        ingest_service.ports.limiter,
        ingest_service.ports.idempotency,
    )
    assert faulty.ports.batches.bucket == "b-bucket"


def test_the_ingest_faults_wrap_the_wired_ports(ingest_service: IngestService) -> None:
    faulty = with_faults(ingest_service, FaultSwitches(fail_job_write_every=3, fail_batch_put_every=2))
    assert isinstance(faulty, IngestService)
    jobs, batches = ingest_service.ports.jobs, ingest_service.ports.batches
    assert isinstance(jobs, RecordingJobs)
    assert isinstance(batches, RecordingBatches)
    written = [a_job() for _ in range(3)]

    faulty.ports.jobs.create_job(written[0])
    faulty.ports.jobs.create_job(written[1])
    with pytest.raises(StorageUnavailableError, match="job record write was refused"):
        faulty.ports.jobs.create_job(written[2])
    faulty.ports.batches.put_batch("incoming/demo/a.json", b"{}", gzipped=False, metadata={})
    with pytest.raises(StorageUnavailableError, match="batch object write was refused"):
        faulty.ports.batches.put_batch("incoming/demo/b.json", b"{}", gzipped=False, metadata={})

    assert jobs.created == [written[0].job_id, written[1].job_id]
    assert batches.keys == ["incoming/demo/a.json"]


def test_a_switch_for_one_function_leaves_the_other_alone(
    ingest_service: IngestService, load_service: LoadService
) -> None:
    assert with_faults(load_service, FaultSwitches(fail_job_write_every=1, fail_batch_put_every=1)) is load_service
    unchanged = with_faults(ingest_service, FaultSwitches(crash_after_chunk=0, exit_after_chunk=0))
    assert unchanged == ingest_service
    other = object()  # neither function's service: nothing applies to it
    assert with_faults(other, FaultSwitches(crash_after_chunk=0, fail_job_write_every=1)) is other


def test_the_load_service_is_faultless_unless_a_switch_is_on(load_service: LoadService) -> None:
    assert with_faults(load_service, FaultSwitches()) is load_service

    faulty = with_faults(load_service, FaultSwitches(crash_after_chunk=1))

    assert isinstance(faulty, FaultyLoadService)
    assert (faulty.ports, faulty.policy, faulty.connector, faulty.objects, faulty.settings) == (
        load_service.ports,
        load_service.policy,
        load_service.connector,
        load_service.objects,
        load_service.settings,
    )
    progress = faulty.progress_for("receipt", lambda: 10**6)
    progress.chunk_committed(0)  # the wired progress: well within the heartbeat and the time budget
    with pytest.raises(InjectedFaultError, match="crash after chunk 1"):
        progress.chunk_committed(1)


def test_the_exit_fault_fires_on_a_messages_first_receive_only(
    load_service: LoadService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def died(reason: str) -> None:
        raise Died(reason)

    monkeypatch.setattr("sluice_tools.faults.die", died)
    faulty = with_faults(load_service, FaultSwitches(exit_after_chunk=0))
    assert isinstance(faulty, FaultyLoadService)

    faulty.progress_for("receipt", lambda: 10**6, receive_count=2).chunk_committed(0)  # the retry shows recovery
    with pytest.raises(Died, match="killed after chunk 0 committed, before the ack"):
        faulty.progress_for("receipt", lambda: 10**6, receive_count=1).chunk_committed(0)


SYSTEM = uuid4()


def chunk_of(job: Job) -> ChunkStream:
    """A chunk of two valid readings."""
    records = [
        Record(
            n,
            str(SYSTEM),
            {
                "sensor_id": str(SYSTEM),
                "timestamp": f"2026-11-22T11:0{n}:00Z",
                "value": 200.0,
                "unit": "bar",
                "quality": 95,
            },
        )
        for n in range(2)
    ]
    return ChunkStream(0, iter(records), ReadingValidator(NOW), SystemBook(job, {SYSTEM}))


def test_the_mid_group_exit_kills_the_process_inside_a_groups_copy_once(
    load_service: LoadService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def died(reason: str) -> None:
        raise Died(reason)

    monkeypatch.setattr("sluice_tools.faults.die", died)
    marker = tmp_path / "died"
    faulty = with_faults(load_service, FaultSwitches(exit_mid_group_once=marker))
    assert isinstance(faulty, LoadService)
    sink = faulty.ports.sink
    assert isinstance(sink, MidGroupExit)
    read: list[tuple[UUID, int]] = []

    class ReadingEveryRow:
        def write_chunks(self, writes: Sequence[ChunkWrite], meanwhile: Callable[[], None] | None = None) -> list[bool]:
            for job, chunk in writes:
                read.extend((job.job_id, 0) for _ in chunk.valid_rows())
            return [True for _ in writes]

    sink._inner = ReadingEveryRow()  # type: ignore[assignment]

    def group() -> list[ChunkWrite]:
        jobs = [
            job_for(
                ObjectRef("b", f"drops/demo/{name}.ndjson"),
                target_of(ObjectRef("b", f"drops/demo/{name}.ndjson")),
                LoadPolicy(10, timedelta(days=1)),
                NOW,
            )
            for name in "ab"
        ]
        return [(job, chunk_of(job)) for job in jobs]

    assert sink.write_chunks(group()[:1]) == [True]  # one job's chunk: not a group
    assert len(read) == 2
    read.clear()
    with pytest.raises(Died, match="middle of a group's COPY"):
        sink.write_chunks(group())
    assert marker.exists()
    assert len(read) == 3  # the first chunk's two rows and one of the second's, then the process ended
    assert sink.write_chunks(group()) == [True, True]  # once only: the retry shows the recovery


def test_fault_switches_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_FAULT_FAIL_JOB_WRITE_EVERY", "3")
    monkeypatch.setenv("SLUICE_FAULT_EXIT_AFTER_CHUNK", "0")

    switches = FaultSwitches()

    assert (switches.fail_job_write_every, switches.exit_after_chunk) == (3, 0)
    assert switches.any_on


def test_empty_fault_switches_are_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SWITCH_NAMES:
        monkeypatch.setenv(f"SLUICE_FAULT_{name.upper()}", "")
    given: dict[str, Any] = dict.fromkeys(SWITCH_NAMES, "")

    for switches in (FaultSwitches(), FaultSwitches(**given)):
        assert switches.model_dump() == dict.fromkeys(SWITCH_NAMES)
        assert not switches.any_on


# --- out of a deployment's reach --------------------------------------------------------------------------------


def test_the_template_declares_no_fault_switch_for_any_function() -> None:
    parsed = template()
    functions = resources_of_type(parsed, "AWS::Serverless::Function")
    declared = {"Globals": parsed["Globals"]["Function"].get("Environment", {}).get("Variables", {})}
    for name, function in functions.items():
        declared[name] = function["Properties"].get("Environment", {}).get("Variables", {})

    assert len(functions) >= 6
    assert declared["Globals"], "Globals declares the functions' shared variables"
    assert {
        where: sorted(name for name in variables if name.upper().startswith("SLUICE_FAULT_"))
        for where, variables in declared.items()
    } == {where: [] for where in declared}


def test_the_exit_fault_kills_the_process_right_after_its_chunk_commits() -> None:
    # Run where a killed process cannot take the test session with it.
    script = """
from sluice.adapters.sqs import MessageProgress
from sluice_tools.faults import FaultyProgress
inner = MessageProgress("q", "r", visibility_timeout_s=30, heartbeat_s=999, remaining_ms=lambda: 10**6,
                        min_remaining_ms=0, client=object())
progress = FaultyProgress(inner, crash_after_chunk=None, exit_after_chunk=2)
progress.chunk_committed(1)
print("chunk 1 acknowledged", flush=True)
progress.chunk_committed(2)
print("never printed", flush=True)
"""
    ended = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)

    assert ended.returncode == INJECTED_EXIT_CODE
    assert ended.stdout == "chunk 1 acknowledged\n"
    assert "killed after chunk 2 committed, before the ack" in ended.stderr
