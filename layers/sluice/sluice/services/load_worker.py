"""LoadWorkerFunction's wiring: settings -> S3, DynamoDB, SQS and the database connector -> the load ports.

Every method takes an ``IngestMessage``: the handler parses each SQS body once and hands the parsed value here.
"""

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sluice.adapters.concurrency import ThreadedCalls
from sluice.adapters.dynamodb import DynamoJobStore
from sluice.adapters.s3 import S3ObjectSource
from sluice.adapters.sqs import MessageProgress
from sluice.adapters.timescale import DatabaseConnector, TimescaleReadingSink, create_staging_table, database_dsn
from sluice.domain.failures import JobFailure
from sluice.domain.load import (
    LoadPolicy,
    LoadPorts,
    MessageOutcome,
    Progress,
    load_messages,
    park_message,
    parked_failure,
)
from sluice.domain.objects import IngestMessage
from sluice.settings import LoadWorkerSettings, get_load_worker_settings


@dataclass(frozen=True, slots=True)
class LoadService:
    """What the worker needs, built once per execution environment."""

    ports: LoadPorts
    policy: LoadPolicy
    connector: DatabaseConnector
    objects: S3ObjectSource
    settings: LoadWorkerSettings

    def read_ahead(self, messages: Iterable[IngestMessage]) -> None:
        """Start reading the small objects an invocation's messages name (see S3ObjectSource)."""
        self.objects.forget_read_ahead()
        self.objects.read_ahead([ref for message in messages for ref in message.refs])

    def load(self, messages: Sequence[IngestMessage], progress: Sequence[Progress]) -> list[MessageOutcome]:
        """Load the objects an invocation's IngestQueue messages name (``progress``: each message's own); per
        message, its reports or the exception that fails it."""
        # Database down: fail here, before any job is marked processing. A message naming no job (s3:TestEvent, not
        # an S3 event) needs no database: it is reported at once rather than retried and parked through an outage.
        try:
            if any(message.job_ids for message in messages):
                self.connector.checked_connection()
        except Exception as exc:
            outcomes: list[MessageOutcome] = [exc for _ in messages]
            calm = [index for index, message in enumerate(messages) if not message.job_ids]
            answers = self._load([messages[i] for i in calm], [progress[i] for i in calm])
            for index, outcome in zip(calm, answers, strict=True):
                outcomes[index] = outcome
            return outcomes
        return self._load(messages, progress)

    def _load(self, messages: Sequence[IngestMessage], progress: Sequence[Progress]) -> list[MessageOutcome]:
        with cyclic_gc_paused():
            return load_messages(messages, self.ports, self.policy, progress=progress, clock=utc_now)

    def is_last_attempt(self, receive_count: int) -> bool:
        """Is this receive of a message its last before SQS parks it in the dead-letter queue?"""
        return receive_count >= self.settings.max_receive_count

    def park(self, message: IngestMessage, error: BaseException, receive_count: int) -> tuple[JobFailure, list[UUID]]:
        """Fail the jobs of a message whose last attempt failed, saying where the message went and quoting an
        error id; return the failure (whose detail is the error, for the log) and the jobs failed."""
        failure = parked_failure(receive_count, error)
        return failure, park_message(message, self.ports.jobs, failure.message, utc_now())

    def progress_for(self, receipt_handle: str, remaining_ms: Callable[[], int], receive_count: int = 1) -> Progress:
        """The visibility keeper and time budget of one IngestQueue message (``receive_count``: which receive of it
        this is, for the fault switches of the local runtime, which wrap this method)."""
        return MessageProgress(
            self.settings.ingest_queue_url,
            receipt_handle,
            visibility_timeout_s=self.settings.visibility_timeout_seconds,
            heartbeat_s=self.settings.visibility_heartbeat_seconds,
            remaining_ms=remaining_ms,
            min_remaining_ms=self.settings.min_remaining_ms,
        )


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while an object is loaded. A chunk allocates a few objects per reading,
    none in reference cycles (reference counting frees them), yet each allocation burst would start collections
    that walk every live object: measured here, they took a third of the worker's time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def utc_now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)


def build_load_service(settings: LoadWorkerSettings) -> LoadService:
    """The AWS- and database-backed ports of LoadWorkerFunction."""
    connector = DatabaseConnector(
        lambda: database_dsn(settings),
        settings.db_statement_timeout_ms,
        application_name="sluice-load-worker",
        prepare=create_staging_table,
    )
    policy = LoadPolicy(
        chunk_readings=settings.chunk_readings, job_retention=timedelta(days=settings.job_retention_days)
    )
    # The objects loaded together are the ones read ahead: both are held whole in memory.
    objects = S3ObjectSource(read_ahead_max_bytes=policy.small_object_bytes)
    ports = LoadPorts(
        jobs=DynamoJobStore(settings.jobs_table),
        objects=objects,
        sink=TimescaleReadingSink(connector),
        background=ThreadedCalls(),
    )
    return LoadService(ports=ports, policy=policy, connector=connector, objects=objects, settings=settings)


def wire_load_service() -> LoadService:
    """The service from the function's environment; each execution environment builds it once."""
    return build_load_service(get_load_worker_settings())
