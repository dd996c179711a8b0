"""Fault switches for `make reliability`: real failures injected where real ones happen, off unless a
``SLUICE_FAULT_*`` setting turns them on. The local runtime passes those variables to functions; the template never
declares them, so no deployed function runs with one on.

Each switch fails the way the real thing fails: an S3 or DynamoDB write refused (StorageUnavailableError, as the
adapters raise for a refused call) or the execution environment dying on the spot (``os._exit``: no exception
handler, no ``finally``, no ack — what an out-of-memory kill or a lost host looks like to SQS).
"""

import os
from datetime import datetime
from uuid import UUID

from sluice.domain.ingest import BatchStore, JobRepository
from sluice.errors import StorageUnavailableError
from sluice.models.jobs import Job

# What a process killed by the fault reports; distinct from Python's 1 so a log reader can tell the two apart.
INJECTED_EXIT_CODE = 86


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
