"""S3 events and batch object keys: which objects an IngestQueue message names, and which job each belongs to.

The worker, the maintenance function and ``sluice redrive`` all read IngestQueue messages; this is the one place
that parses them. A message body is parsed once, at the edge, into an ``IngestMessage``; everything further in
takes that value and never reads the body again.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final
from urllib.parse import quote_plus, unquote_plus
from uuid import UUID, uuid5

BATCH_PREFIX: Final = "incoming"
DROP_PREFIX: Final = "drops"
# ``drops/<tenant>/uploads/`` is reserved: only the forms ``POST /api/v1/uploads`` signs write there.
UPLOAD_FOLDER: Final = "uploads"
# Fixed forever: drop job ids are uuid5(namespace, "<bucket>/<key>#<version or etag>").
DROP_JOB_NAMESPACE: Final = UUID("8f1d5c3e-2b7a-4e6f-9c0d-51a7e3b2c4d6")
_MAX_TENANT_LENGTH = 128


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One object version named by an S3 event."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    # Bytes, as the event says; not part of the object's identity.
    size: int | None = field(default=None, compare=False)


class TargetKind(StrEnum):
    """What an object under the bucket is to the worker."""

    API_BATCH = "api_batch"
    DROP = "drop"
    # ``drops/<tenant>/uploads/<job_id>.<ext>``: a file POSTed with a form the API signed, for a job it recorded.
    UPLOAD = "upload"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class Target:
    """The job an object belongs to, or why it belongs to none."""

    kind: TargetKind
    tenant_id: str = ""
    job_id: UUID | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TargetedObject:
    """An object named by a message, with the job it belongs to."""

    ref: ObjectRef
    target: Target


@dataclass(frozen=True, slots=True)
class IngestMessage:
    """An IngestQueue message, parsed once: the objects its S3 event names (none for ``s3:TestEvent``), or why the
    body is not an S3 event at all."""

    objects: tuple[TargetedObject, ...] = ()
    unreadable: str | None = None

    @property
    def job_ids(self) -> tuple[UUID, ...]:
        """The jobs of the objects named, in order; none for a message that names no job."""
        return tuple(item.target.job_id for item in self.objects if item.target.job_id is not None)

    @property
    def refs(self) -> tuple[ObjectRef, ...]:
        """The object versions named."""
        return tuple(item.ref for item in self.objects)


def parse_message(body: str) -> IngestMessage:
    """Read an SQS message body as an S3 event notification. A body that is not one is a value (``unreadable``
    says why), never an exception: it would fail the same way on every retry."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        return IngestMessage(unreadable="the message is not an S3 event notification (not JSON)")
    if type(event) is not dict:
        return IngestMessage(unreadable="the message is not an S3 event notification")
    if event.get("Event") == "s3:TestEvent":
        return IngestMessage()
    try:
        refs = [_object_ref(record) for record in event["Records"] if _is_object_created(record)]
    except (KeyError, TypeError, AttributeError, ValueError):  # AttributeError: a record that is not an object
        return IngestMessage(unreadable="the message is not an S3 event notification (Records missing or malformed)")
    return IngestMessage(objects=tuple(TargetedObject(ref, target_of(ref)) for ref in refs))


def _is_object_created(record: dict[str, object]) -> bool:
    return str(record.get("eventName", "")).startswith("ObjectCreated")


def _object_ref(record: dict[str, dict[str, dict[str, object]]]) -> ObjectRef:
    """One record's object version; TypeError or ValueError when a field is not what S3 sends."""
    bucket, obj = record["s3"]["bucket"]["name"], record["s3"]["object"]
    key, size = obj["key"], obj.get("size")
    if type(bucket) is not str or type(key) is not str:
        raise TypeError("bucket and key are strings")
    if size is not None and type(size) is not int:
        raise TypeError("size is an integer")
    version_id, etag = _str_or_none(obj.get("versionId")), _str_or_none(obj.get("eTag"))
    # S3 URL-encodes keys in events (a space arrives as '+').
    ref = ObjectRef(bucket=bucket, key=unquote_plus(key), version_id=version_id, etag=etag, size=size)
    # Raises UnicodeEncodeError (a ValueError) for a lone surrogate, which no S3 name holds.
    f"{ref.bucket}{ref.key}{ref.version_id}{ref.etag}".encode()
    return ref


def _str_or_none(value: object) -> str | None:
    if value is not None and type(value) is not str:
        raise TypeError("versionId and eTag are strings")
    return value


def target_of(ref: ObjectRef) -> Target:
    """Which job an object belongs to: ``incoming/<tenant>/.../<job_id>.json``,
    ``drops/<tenant>/uploads/<job_id>.<ext>`` or ``drops/<tenant>/...``."""
    parts = ref.key.split("/")
    if ref.key.endswith("/"):
        return Target(TargetKind.IGNORED, reason="a folder marker, not a file")
    if len(parts) < 3 or parts[0] not in {BATCH_PREFIX, DROP_PREFIX}:
        return Target(TargetKind.IGNORED, reason=f"not under {BATCH_PREFIX}/<tenant>/ or {DROP_PREFIX}/<tenant>/")
    tenant = parts[1]
    if not is_tenant_id(tenant):
        return Target(TargetKind.IGNORED, reason=f"{tenant[:100]!r} is not a tenant id")
    if parts[0] == DROP_PREFIX:
        return _drop_target(ref, tenant, parts[2:])
    try:
        job_id = UUID(parts[-1].removesuffix(".json"))
    except ValueError:
        return Target(TargetKind.IGNORED, reason="an incoming/ object not named <job_id>.json")
    return Target(TargetKind.API_BATCH, tenant_id=tenant, job_id=job_id)


def _drop_target(ref: ObjectRef, tenant: str, rest: list[str]) -> Target:
    """An object under ``drops/<tenant>/``: an upload under its ``uploads/`` folder, a drop anywhere else."""
    if len(rest) > 1 and rest[0] == UPLOAD_FOLDER:
        return _upload_target(tenant, rest[1:])
    return Target(TargetKind.DROP, tenant_id=tenant, job_id=drop_job_id(ref))


def _upload_target(tenant: str, rest: list[str]) -> Target:
    """An object under a tenant's ``uploads/`` folder: its job is the uuid its name starts with. The job's record,
    written when the form was signed, must claim it, so a file put there any other way is never loaded."""
    name = rest[0].split(".", 1)[0] if len(rest) == 1 else ""
    try:
        job_id = UUID(name)
    except ValueError:
        return Target(
            TargetKind.IGNORED,
            tenant_id=tenant,
            reason=f"{DROP_PREFIX}/<tenant>/{UPLOAD_FOLDER}/ is reserved for uploads, named <job_id>.<extension>",
        )
    return Target(TargetKind.UPLOAD, tenant_id=tenant, job_id=job_id)


def version_of(ref: ObjectRef) -> str:
    """What tells one version of a key from another: its version id, or its ETag where the bucket was unversioned
    when it was written (S3 then gives "null", or no version id at all)."""
    return ref.version_id if ref.version_id not in {None, "", "null"} else (ref.etag or "").strip('"')


def drop_job_id(ref: ObjectRef) -> UUID:
    """The job id of one version of a dropped object: the same S3 event twice gives the same job."""
    return uuid5(DROP_JOB_NAMESPACE, f"{ref.bucket}/{ref.key}#{version_of(ref)}")


def upload_object_key(tenant_id: str, job_id: UUID, extension: str) -> str:
    """``drops/<tenant>/uploads/<job_id><extension>``: the key of an upload, chosen by Sluice (the client's file
    name is recorded on the job, never put in a key)."""
    return f"{DROP_PREFIX}/{tenant_id}/{UPLOAD_FOLDER}/{job_id}{extension}"


def batch_object_key(tenant_id: str, created_at: datetime, job_id: UUID) -> str:
    """``incoming/<tenant>/<yyyy>/<mm>/<dd>/<job_id>.json``: the date prefix keeps listings and lifecycle cheap."""
    return f"{BATCH_PREFIX}/{tenant_id}/{created_at:%Y/%m/%d}/{job_id}.json"


def is_tenant_id(text: str) -> bool:
    """Can ``text`` be a tenant id in a key: 1 to 128 ASCII letters, digits, ``_.-``, starting alphanumeric."""
    return (
        0 < len(text) <= _MAX_TENANT_LENGTH
        and text.isascii()
        and text[0].isalnum()
        and all(char.isalnum() or char in "_.-" for char in text)
    )


def object_created_body(ref: ObjectRef, now: datetime, principal: str) -> str:
    """An S3 ObjectCreated event notification for ``ref``, shaped as S3 sends it (the key URL-encoded), so the
    worker handles it like the original."""
    obj: dict[str, object] = {"key": quote_plus(ref.key, safe="/")}
    if ref.size is not None:
        obj["size"] = ref.size
    if ref.etag:
        obj["eTag"] = ref.etag
    if ref.version_id:
        obj["versionId"] = ref.version_id
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": principal},
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": ref.bucket}, "object": obj},
    }
    return json.dumps({"Records": [record]}, separators=(",", ":"))
