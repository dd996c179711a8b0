"""Fault switches for `make reliability` and the tests: real failures injected where real ones happen.

One seam: ``with_faults(service, switches)`` wraps a function's wired service. Only the local runtime
(``sluice_tools.local.bootstrap``, from ``SLUICE_FAULT_*`` variables it passes to function processes) and tests call
it. None of this is in the Lambda layer, and the functions' settings know no fault switch, so nothing in a
deployment can turn one on (a test builds the layer and checks).

Each switch fails the way the real thing fails: an S3 or DynamoDB write refused (StorageUnavailableError, as the
adapters raise for a refused call) or the execution environment dying on the spot (``os._exit``: no exception
handler, no ``finally``, no ack — what an out-of-memory kill or a lost host looks like to SQS).
"""

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from uuid import UUID

from sluice.domain.dispatch import AttemptResult
from sluice.domain.evaluation import Applied, EvaluationStore, TenantData, TenantSession, Transition, Window
from sluice.domain.ingest import BatchStore, JobRepository
from sluice.domain.load import ChunkWrite, LoadCounts, Progress, ReadingSink
from sluice.errors import SluiceError, StorageUnavailableError
from sluice.models.jobs import Job
from sluice.models.readings import QuarantineReason
from sluice.services.alert_evaluator import AlertEvaluatorService
from sluice.services.ingest_api import IngestService
from sluice.services.load_worker import LoadService
from sluice.services.webhook_dispatcher import WebhookDispatcher, WebhookSender
from sluice_tools.settings import FaultSwitches

# What a process killed by the fault reports; distinct from Python's 1 so a log reader can tell the two apart.
INJECTED_EXIT_CODE = 86


class InjectedFaultError(SluiceError):
    """A fault switched on for a test; never raised in normal operation."""


class EveryNth:
    """Fires on the n-th, 2n-th, ... call in this execution environment."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._calls = 0

    def fires(self) -> bool:
        self._calls += 1
        return self._calls % self._n == 0


class FaultyJobRepository:
    """A job repository whose ``create_job`` is refused every n-th time: the batch is answered 503, nothing kept."""

    def __init__(self, inner: JobRepository, every: int) -> None:
        self._inner = inner
        self._every = EveryNth(every)

    def create_job(self, job: Job) -> None:
        if self._every.fires():
            raise StorageUnavailableError("injected fault: the job record write was refused (SLUICE_FAULT_*)")
        self._inner.create_job(job)

    def fail_job(self, job_id: UUID, message: str, now: datetime) -> None:
        self._inner.fail_job(job_id, message, now)


class FaultyBatchStore:
    """A batch store whose ``put_batch`` is refused every n-th time, after the job record was written."""

    def __init__(self, inner: BatchStore, every: int) -> None:
        self._inner = inner
        self._every = EveryNth(every)

    @property
    def bucket(self) -> str:
        return self._inner.bucket

    def put_batch(self, key: str, body: bytes, *, gzipped: bool, metadata: dict[str, str]) -> None:
        if self._every.fires():
            raise StorageUnavailableError("injected fault: the batch object write was refused (SLUICE_FAULT_*)")
        self._inner.put_batch(key, body, gzipped=gzipped, metadata=metadata)


def die(reason: str) -> None:
    """End the execution environment at once, the way a killed process ends."""
    os.write(2, f"injected fault: {reason}: the process exits with {INJECTED_EXIT_CODE}\n".encode())
    os._exit(INJECTED_EXIT_CODE)


class FaultyProgress:
    """A message's progress that fails right after a chunk commits, before the next one starts (and before the
    message is acknowledged): by an exception (``crash_after_chunk``) or by the process dying (``exit_after_chunk``)."""

    def __init__(self, inner: Progress, *, crash_after_chunk: int | None, exit_after_chunk: int | None) -> None:
        self._inner = inner
        self._crash_after_chunk = crash_after_chunk
        self._exit_after_chunk = exit_after_chunk

    def chunk_committed(self, chunk_no: int) -> None:
        if chunk_no == self._crash_after_chunk:
            raise InjectedFaultError(f"crash after chunk {chunk_no} (SLUICE_FAULT_CRASH_AFTER_CHUNK)")
        if chunk_no == self._exit_after_chunk:
            die(f"killed after chunk {chunk_no} committed, before the ack (SLUICE_FAULT_EXIT_AFTER_CHUNK)")
        self._inner.chunk_committed(chunk_no)

    def still_reading(self) -> None:
        self._inner.still_reading()


class MidGroupExit:
    """A reading sink that kills the process while the database reads a group's second chunk (its COPY of several
    jobs' readings under way, nothing committed), once: ``marker`` is created just before, and while it exists the
    sink writes normally, so the retry shows the recovery."""

    def __init__(self, inner: ReadingSink, marker: Path) -> None:
        self._inner = inner
        self._marker = marker

    def tenant_systems(self, tenant_id: str) -> set[UUID]:
        return self._inner.tenant_systems(tenant_id)

    def committed_chunks(self, job_id: UUID) -> set[int]:
        return self._inner.committed_chunks(job_id)

    def job_counts(self, job_ids: Sequence[UUID]) -> dict[UUID, LoadCounts]:
        return self._inner.job_counts(job_ids)

    def quarantine_reasons(self, job_ids: Sequence[UUID]) -> dict[UUID, dict[QuarantineReason, int]]:
        return self._inner.quarantine_reasons(job_ids)

    def write_chunks(self, writes: Sequence[ChunkWrite], meanwhile: Callable[[], None] | None = None) -> list[bool]:
        if len(writes) < 2 or self._marker.exists():
            return self._inner.write_chunks(writes, meanwhile)
        chunk = writes[1][1]
        rows = chunk.valid_rows
        marker = self._marker

        def dying_rows() -> Iterator[tuple[object, ...]]:
            for row in rows():
                yield row
                marker.touch()
                die("killed in the middle of a group's COPY (SLUICE_FAULT_EXIT_MID_GROUP_ONCE)")

        chunk.valid_rows = dying_rows  # type: ignore[method-assign]
        return self._inner.write_chunks(writes, meanwhile)


class EvaluationExit:
    """An evaluation store whose first tenant session with something to write kills the process after writing,
    before the commit, once (``marker`` is created just before): the rolled-back run must leave nothing, and the
    next run must raise and announce everything once."""

    def __init__(self, inner: EvaluationStore, marker: Path) -> None:
        self._inner = inner
        self._marker = marker

    def tenants(self) -> list[str]:
        return self._inner.tenants()

    @contextmanager
    def session(self, tenant_id: str) -> Iterator[TenantSession | None]:
        with self._inner.session(tenant_id) as session:
            yield None if session is None else _DyingSession(session, self._marker)


class _DyingSession:
    def __init__(self, inner: TenantSession, marker: Path) -> None:
        self._inner = inner
        self._marker = marker

    def read(self, window: Window) -> TenantData:
        return self._inner.read(window)

    def apply(self, transitions: Sequence[Transition], now: datetime) -> Applied:
        applied = self._inner.apply(transitions, now)
        if applied.deliveries and not self._marker.exists():
            self._marker.touch()
            die("killed after writing a tenant's alarms, before the commit (SLUICE_FAULT_EXIT_IN_EVALUATION_ONCE)")
        return applied


class SendThenExit:
    """A webhook sender that kills the process right after a receiver accepted a delivery, before the dispatcher
    records it, once (``marker`` is created just before): the delivery is sent again after its lease, with the same
    webhook-id, which a receiver drops as a repeat."""

    def __init__(self, inner: WebhookSender, marker: Path) -> None:
        self._inner = inner
        self._marker = marker

    def send(self, url: str, headers: dict[str, str], body: str, started_at: datetime) -> AttemptResult:
        result = self._inner.send(url, headers, body, started_at)
        if result.delivered and not self._marker.exists():
            self._marker.touch()
            die("killed after a receiver accepted a delivery, before it was recorded (SLUICE_FAULT_EXIT_AFTER_*)")
        return result


@dataclass(frozen=True, slots=True)
class FaultyLoadService(LoadService):
    """The worker's service, its messages' progress wrapped in ``FaultyProgress``."""

    crash_after_chunk: int | None = None
    exit_after_chunk: int | None = None

    def progress_for(self, receipt_handle: str, remaining_ms: Callable[[], int], receive_count: int = 1) -> Progress:
        # The process-killing fault fires on a message's first receive only, so its retry shows the recovery.
        return FaultyProgress(
            LoadService.progress_for(self, receipt_handle, remaining_ms, receive_count),
            crash_after_chunk=self.crash_after_chunk,
            exit_after_chunk=self.exit_after_chunk if receive_count == 1 else None,
        )


def with_faults(service: object, switches: FaultSwitches) -> object:
    """``service`` with the switches that apply to it turned on; unchanged when none does."""
    if isinstance(service, IngestService):
        ports = service.ports
        if switches.fail_job_write_every:
            ports = replace(ports, jobs=FaultyJobRepository(ports.jobs, switches.fail_job_write_every))
        if switches.fail_batch_put_every:
            ports = replace(ports, batches=FaultyBatchStore(ports.batches, switches.fail_batch_put_every))
        return replace(service, ports=ports)
    if isinstance(service, WebhookDispatcher) and switches.exit_after_webhook_send_once is not None:
        service.sender = SendThenExit(service.sender, switches.exit_after_webhook_send_once)
        return service
    if isinstance(service, AlertEvaluatorService) and switches.exit_in_evaluation_once is not None:
        return replace(service, store=EvaluationExit(service.store, switches.exit_in_evaluation_once))
    if isinstance(service, LoadService) and switches.exit_mid_group_once is not None:
        sink = MidGroupExit(service.ports.sink, switches.exit_mid_group_once)
        service = replace(service, ports=replace(service.ports, sink=sink))
    if isinstance(service, LoadService) and (
        switches.crash_after_chunk is not None or switches.exit_after_chunk is not None
    ):
        fields = {name: getattr(service, name) for name in LoadService.__dataclass_fields__}
        return FaultyLoadService(
            **fields, crash_after_chunk=switches.crash_after_chunk, exit_after_chunk=switches.exit_after_chunk
        )
    return service
