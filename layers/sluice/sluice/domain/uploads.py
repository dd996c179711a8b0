"""Creating an upload: a job that waits for a file, and a form that lets its client POST that file straight to S3.

The order is the promise: the request is checked, the form is signed (pure computation: nothing is written), then
the job record is written, then the form is answered. A record therefore never exists for a form that was not
signed, and a form whose record could not be written is never handed out (503): the worker starts an upload's job
only when its record exists, so a file POSTed with a form no record backs would never be loaded.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid4

from sluice.domain.formats import GZIP_SUFFIX, layout_of
from sluice.domain.ingest import IdempotencyGuard, check_idempotency_key
from sluice.domain.objects import upload_object_key
from sluice.domain.ratelimit import PrincipalBudget
from sluice.errors import InvalidRequestError, Problem, UnreadableObjectError
from sluice.models.api import UploadRequest
from sluice.models.jobs import Job, JobSource, JobStatus

# The most one S3 POST may carry (5 GiB): a larger file needs a multipart upload, which a form cannot do.
S3_POST_MAX_BYTES = 5 * 1024**3


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    """The bounds of an upload: its largest file, how long its form lives, how long its job is kept."""

    max_bytes: int
    expiry: timedelta
    job_retention: timedelta


@dataclass(frozen=True, slots=True)
class UploadCall:
    """One upload request as the HTTP edge hands it over: a verified caller and the parsed body."""

    tenant_id: str
    principal: str
    request: UploadRequest
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class SignedForm:
    """A presigned S3 POST: where to send it, and the fields to send with the file."""

    url: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class FormRequest:
    """What a form lets its holder do: POST one body of 1 to ``max_bytes`` bytes to ``key`` until it expires."""

    key: str
    max_bytes: int
    gzipped: bool
    expires_in_s: int


class FormSigner(Protocol):
    """Signs S3 POST forms; pure computation with the caller's credentials, no request is made."""

    def sign_form(self, form: FormRequest) -> SignedForm:
        """A form whose policy pins ``form.key``, the length range and, for gzip, the Content-Encoding."""
        ...


class UploadJobs(Protocol):
    """Where upload jobs are recorded."""

    def create_job(self, job: Job) -> None:
        """Write a new job record; raise StorageUnavailableError when it cannot be written."""
        ...


@dataclass(frozen=True, slots=True)
class UploadPorts:
    """Everything creating an upload talks to."""

    jobs: UploadJobs
    signer: FormSigner
    bucket: str
    # The principal's ingest budget: an upload is an ingest request like a batch.
    limiter: PrincipalBudget
    idempotency: IdempotencyGuard


@dataclass(frozen=True, slots=True)
class CreatedUpload:
    """An upload's job and its form; ``replayed`` when an Idempotency-Key retry got the first answer back."""

    job_id: UUID
    form: SignedForm
    expires_at: datetime
    replayed: bool


@dataclass(frozen=True, slots=True)
class UploadFile:
    """A checked upload request: the extension its key gets, and whether the file is gzip."""

    extension: str
    gzipped: bool


def create_upload(call: UploadCall, ports: UploadPorts, policy: UploadPolicy, now: datetime) -> CreatedUpload:
    """Spend the caller's ingest budget, check the request, sign its form and record its job."""
    ports.limiter.spend(call.tenant_id, call.principal, now)
    key = check_idempotency_key(call.idempotency_key)
    upload = check_upload(call.request, policy.max_bytes)
    created: list[UUID] = []

    def sign_and_record() -> dict[str, Any]:
        job = upload_job(call, upload, ports.bucket, policy, now)
        form = ports.signer.sign_form(
            FormRequest(job.object_key, call.request.size, upload.gzipped, int(policy.expiry.total_seconds()))
        )
        # Only once the form exists: a record never stands for a form that was not signed.
        ports.jobs.create_job(job)
        created.append(job.job_id)
        return {
            "job_id": str(job.job_id),
            "url": form.url,
            "fields": form.fields,
            "expires_at": (job.upload_expires_at or now).isoformat(),
        }

    if key is None:
        return _created(sign_and_record(), replayed=False)
    # Idempotency keys are the principal's own, as for batches; the same key with another body is refused (422).
    remembered = ports.idempotency.run_once(
        f"{call.tenant_id}/{call.principal}/uploads", key, request_fingerprint(call.request), sign_and_record
    )
    return _created(remembered, replayed=not created)


def check_upload(request: UploadRequest, max_bytes: int) -> UploadFile:
    """The key's extension and the encoding of a valid request; 400 naming the field otherwise."""
    if request.size > max_bytes:
        raise InvalidRequestError(
            "the file is too large to upload",
            [Problem(field="size", reason=f"{request.size} bytes; at most {max_bytes} per upload")],
        )
    if "/" in request.filename or "\\" in request.filename or not request.filename.isprintable():
        raise InvalidRequestError(
            "the file name is not usable",
            [Problem(field="filename", reason="a file name alone: printable, without '/' or '\\'")],
        )
    try:
        layout = layout_of(request.filename, request.content_encoding)
    except UnreadableObjectError as exc:
        raise InvalidRequestError(
            "the file's format is not known", [Problem(field="filename", reason=str(exc))]
        ) from None
    # The format's own extension, whatever the client's spelling (.JSONL, .Csv): the worker reads the key's.
    return UploadFile(f".{layout.format}{GZIP_SUFFIX if layout.gzipped else ''}", layout.gzipped)


def upload_job(call: UploadCall, upload: UploadFile, bucket: str, policy: UploadPolicy, now: datetime) -> Job:
    """A new job awaiting its upload, under a key Sluice chose."""
    job_id = uuid4()
    return Job(
        job_id=job_id,
        tenant_id=call.tenant_id,
        status=JobStatus.AWAITING_UPLOAD,
        source=JobSource.UPLOAD,
        created_by=call.principal,
        bucket=bucket,
        object_key=upload_object_key(call.tenant_id, job_id, upload.extension),
        created_at=now,
        expires_at=int((now + policy.job_retention).timestamp()),
        filename=call.request.filename,
        size=call.request.size,
        upload_expires_at=now + policy.expiry,
    )


def request_fingerprint(request: UploadRequest) -> str:
    """SHA-256 of the request as parsed: the same file announced again is the same request."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _created(result: dict[str, Any], *, replayed: bool) -> CreatedUpload:
    return CreatedUpload(
        job_id=UUID(result["job_id"]),
        form=SignedForm(url=result["url"], fields=dict(result["fields"])),
        expires_at=datetime.fromisoformat(result["expires_at"]),
        replayed=replayed,
    )
