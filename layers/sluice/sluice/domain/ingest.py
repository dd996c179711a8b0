"""Accepting a batch: check the envelope, take a job, store the batch; the readings themselves are the worker's.

The order is the promise: the job record is written before the batch object, because the object's S3 event is
what starts the worker, and the worker must find its job. A batch whose object could not be stored fails its job
and the client is told to send it again, so nothing is ever half accepted.
"""

import hashlib
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid4

from pydantic import ValidationError

from sluice.domain.formats import RepeatedKeys, loads_lenient
from sluice.domain.objects import batch_object_key
from sluice.domain.ratelimit import PrincipalBudget
from sluice.errors import (
    InvalidRequestError,
    PayloadTooLargeError,
    Problem,
    StorageUnavailableError,
)
from sluice.limits import MAX_ERROR_DETAILS
from sluice.models.api import IngestRequest, error_details, more_details
from sluice.models.jobs import Job, JobSource, JobStatus

IDEMPOTENCY_KEY_MAX_LENGTH = 255


@dataclass(frozen=True, slots=True)
class IngestCall:
    """One ingest request as the HTTP edge hands it over: a verified caller and the bytes it sent."""

    tenant_id: str
    principal: str
    body: bytes
    # Content-Encoding: gzip (the HTTP edge has checked the media type and the encoding).
    gzipped: bool = False
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch whose envelope passed: what to store, and what the job records about it."""

    system_id: UUID
    total_readings: int
    # The body exactly as sent (still gzip-compressed when it came so); the worker parses these bytes.
    body: bytes
    gzipped: bool
    # SHA-256 of the decoded JSON: the same readings sent plain or gzipped are the same request.
    sha256: str


@dataclass(frozen=True, slots=True)
class AcceptedBatch:
    """The outcome of an accepted request."""

    job_id: UUID
    total_readings: int
    # True when an Idempotency-Key retry got the original job back instead of a new one.
    replayed: bool


@dataclass(frozen=True, slots=True)
class IngestPolicy:
    """The limits the API enforces."""

    max_body_bytes: int
    job_retention: timedelta


class JobRepository(Protocol):
    """Where job records live."""

    def create_job(self, job: Job) -> None:
        """Write a new job record; raise StorageUnavailableError when it cannot be written."""

    def fail_job(self, job_id: UUID, message: str, now: datetime) -> None:
        """Mark a job that never got its batch as failed."""


class BatchStore(Protocol):
    """Where batch objects are stored; their creation is what enqueues them."""

    @property
    def bucket(self) -> str:
        """The bucket batches go to."""

    def put_batch(self, key: str, body: bytes, *, gzipped: bool, metadata: dict[str, str]) -> None:
        """Store one batch object; raise StorageUnavailableError when it cannot be stored."""


class IdempotencyGuard(Protocol):
    """Remembers the outcome of requests that carry an Idempotency-Key."""

    def run_once(self, scope: str, key: str, fingerprint: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``action`` the first time (scope, key) is seen and return its result; return the remembered result
        after that. Raise IdempotencyKeyReusedError when the fingerprint differs from the first request's and
        IdempotencyInProgressError while the first request is still running. A failed action is forgotten."""


@dataclass(frozen=True, slots=True)
class IngestPorts:
    """Everything accepting a batch talks to."""

    jobs: JobRepository
    batches: BatchStore
    # Each principal's ingest requests, in the same kind of budget as its reads and reviews.
    limiter: PrincipalBudget
    idempotency: IdempotencyGuard


def accept_batch(
    call: IngestCall,
    ports: IngestPorts,
    policy: IngestPolicy,
    now: datetime,
) -> AcceptedBatch:
    """Rate-limit, check and store one batch; return its job."""
    ports.limiter.spend(call.tenant_id, call.principal, now)
    # Idempotency keys are the principal's own: another device's key never replays this one's batch.
    caller_key = f"{call.tenant_id}/{call.principal}"
    key = check_idempotency_key(call.idempotency_key)
    batch = read_batch(call.body, policy.max_body_bytes, gzipped=call.gzipped)

    stored: list[UUID] = []

    def store() -> dict[str, Any]:
        job = api_job(call, batch, ports.batches.bucket, policy, now)
        store_batch(job, batch, ports, now)
        stored.append(job.job_id)
        return {"job_id": str(job.job_id), "total_readings": batch.total_readings}

    if key is None:
        return _accepted(store(), replayed=False)
    remembered = ports.idempotency.run_once(caller_key, key, batch.sha256, store)
    # The guard either ran ``store`` (a first request) or handed back what an earlier request stored.
    return _accepted(remembered, replayed=not stored)


def api_job(call: IngestCall, batch: Batch, bucket: str, policy: IngestPolicy, now: datetime) -> Job:
    """A new, queued job for a batch sent to the API."""
    job_id = uuid4()
    return Job(
        job_id=job_id,
        tenant_id=call.tenant_id,
        status=JobStatus.QUEUED,
        source=JobSource.API,
        system_id=batch.system_id,
        created_by=call.principal,
        total_readings=batch.total_readings,
        bucket=bucket,
        object_key=batch_object_key(call.tenant_id, now, job_id),
        created_at=now,
        expires_at=int((now + policy.job_retention).timestamp()),
    )


def store_batch(job: Job, batch: Batch, ports: IngestPorts, now: datetime) -> None:
    """Write the job record, then the batch object; on a failed store, fail the job and re-raise."""
    ports.jobs.create_job(job)
    metadata = {"job-id": str(job.job_id), "tenant-id": job.tenant_id, "readings": str(batch.total_readings)}
    try:
        ports.batches.put_batch(job.object_key, batch.body, gzipped=batch.gzipped, metadata=metadata)
    except StorageUnavailableError as exc:
        try:
            ports.jobs.fail_job(job.job_id, "the batch could not be stored; nothing was accepted, send it again", now)
        except StorageUnavailableError as mark_exc:
            # The job stays queued with no object; the stuck-job sweeper fails it later.
            exc.add_note(f"marking job {job.job_id} failed did not work either: {mark_exc}")
        raise


def check_idempotency_key(value: str | None) -> str | None:
    """Return the Idempotency-Key, or None when absent; refuse one that is empty, too long or not printable ASCII."""
    if value is None:
        return None
    if not 1 <= len(value) <= IDEMPOTENCY_KEY_MAX_LENGTH or not all("!" <= char <= "~" for char in value):
        raise InvalidRequestError(
            "the Idempotency-Key header is not a usable key",
            [
                Problem(
                    field="Idempotency-Key",
                    reason=f"must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters without spaces",
                )
            ],
        )
    return value


def read_batch(body: bytes, max_bytes: int, *, gzipped: bool) -> Batch:
    """Check the size (sent and decoded) and the envelope; count the readings, judge none."""
    if len(body) > max_bytes:
        raise _too_large(len(body), max_bytes, "the body")
    text = _gunzip(body, max_bytes) if gzipped else body
    document = _parse_json(text)
    check_envelope_names(document)
    try:
        envelope = IngestRequest.model_validate(document)
    except ValidationError as exc:
        raise InvalidRequestError("the batch envelope is not valid", error_details(exc)) from None
    return Batch(
        system_id=envelope.system_id,
        total_readings=len(envelope.readings),
        body=body,
        gzipped=gzipped,
        sha256=hashlib.sha256(text).hexdigest(),
    )


def check_envelope_names(document: Any) -> None:
    """Refuse an envelope that names a field twice (which value was meant is unknowable, and the drop envelope
    refuses it too) or whose field names are not valid Unicode (the model cannot name those; the details can).
    A reading that names a field twice is the worker's: it is quarantined as ``parse_error``."""
    if type(document) is RepeatedKeys:
        repeated = list(document.repeated())
        raise InvalidRequestError(
            "the batch envelope names a field more than once",
            [
                Problem(field=name, reason="named more than once; send each field once")
                for name in repeated[:MAX_ERROR_DETAILS]
            ]
            + more_details(len(repeated)),
        )
    if type(document) is dict:
        unreadable = [name for name in document if not _is_unicode(name)]
        if unreadable:
            raise InvalidRequestError(
                "the batch envelope is not valid",
                [
                    Problem(field=name, reason="not a field of the batch envelope (nor valid Unicode)")
                    for name in unreadable[:MAX_ERROR_DETAILS]
                ]
                + more_details(len(unreadable)),
            )


def _is_unicode(text: str) -> bool:
    # A JSON "\ud800" escape decodes to a lone surrogate, which no UTF-8 text (or response) can carry.
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _accepted(result: dict[str, Any], *, replayed: bool) -> AcceptedBatch:
    return AcceptedBatch(job_id=UUID(result["job_id"]), total_readings=int(result["total_readings"]), replayed=replayed)


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    # Decompress at most one byte past the limit: a small bomb must not become a large allocation.
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        text = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise _not_gzip(f"not a gzip stream ({exc})") from None
    if len(text) > max_bytes:
        raise _too_large(len(text), max_bytes, "the decompressed body", at_least=True)
    if not inflater.eof:
        raise _not_gzip("the gzip stream is truncated")
    if inflater.unused_data:
        # The worker must read exactly what was checked here; a second member or trailing bytes would differ.
        raise _not_gzip("there are bytes after the end of the gzip stream")
    return text


def _parse_json(text: bytes) -> Any:
    try:
        decoded = text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _malformed(f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return loads_lenient(decoded)
    except json.JSONDecodeError as exc:
        raise _malformed(f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise _malformed("the body nests too deeply to be a batch") from None


def _too_large(size: int, max_bytes: int, what: str, *, at_least: bool = False) -> PayloadTooLargeError:
    got = f"more than {max_bytes}" if at_least else str(size)
    return PayloadTooLargeError(
        f"{what} is larger than {max_bytes} bytes; split the batch",
        [Problem(field="body", reason=f"{what} has {got} bytes, the limit is {max_bytes}")],
    )


def _not_gzip(reason: str) -> InvalidRequestError:
    return InvalidRequestError(
        "Content-Encoding says gzip but the body cannot be decompressed",
        [Problem(field="body", reason=reason)],
    )


def _malformed(reason: str) -> InvalidRequestError:
    return InvalidRequestError("the body is not a JSON batch", [Problem(field="body", reason=reason)])
