"""S3: where batch objects are stored. Storing one is what enqueues it (S3 event notification to IngestQueue)."""

import io
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from sluice.adapters.aws import s3_client, s3_form_client
from sluice.domain.load import OpenedObject
from sluice.domain.objects import ObjectRef
from sluice.domain.uploads import FormRequest, SignedForm
from sluice.errors import StorageUnavailableError, UnreadableObjectError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef, GetObjectRequestTypeDef, PutObjectRequestTypeDef

# The object (or the version the event named) is gone: reading it again will not help.
_GONE = frozenset({"NoSuchKey", "NoSuchVersion", "404"})
# The key's newest version is not the one the event named (If-Match refused).
_REPLACED = frozenset({"PreconditionFailed", "412"})
OBJECT_REPLACED: Final = "the object was replaced before it was loaded, and the version its event named is gone"
OBJECT_GONE: Final = "the object no longer exists: it was deleted or expired before it was loaded"


class S3BatchStore:
    """Puts batch objects into the batch bucket."""

    def __init__(self, bucket: str, client: "S3Client | None" = None) -> None:
        self._bucket = bucket
        self._client = client or s3_client()

    @property
    def bucket(self) -> str:
        """The bucket batches go to."""
        return self._bucket

    def put_batch(self, key: str, body: bytes, *, gzipped: bool, metadata: dict[str, str]) -> None:
        """Store one batch object, keeping gzip bodies compressed and saying so in Content-Encoding."""
        request: PutObjectRequestTypeDef = {
            "Bucket": self._bucket,
            "Key": key,
            "Body": body,
            "ContentType": "application/json",
            "Metadata": metadata,
        }
        if gzipped:
            request["ContentEncoding"] = "gzip"
        try:
            self._client.put_object(**request)
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailableError(f"storing s3://{self._bucket}/{key} failed: {exc}") from exc


class S3FormSigner:
    """Signs S3 POST forms for uploads with the function's own credentials (which must allow s3:PutObject on the
    key). Signing makes no request: it cannot fail on S3, only on missing credentials."""

    def __init__(self, bucket: str, client: "S3Client | None" = None) -> None:
        self._bucket = bucket
        self._client = client or s3_form_client()

    def sign_form(self, form: FormRequest) -> SignedForm:
        """A form whose policy allows exactly ``form.key``, 1 to ``form.max_bytes`` bytes and, for gzip, only
        ``Content-Encoding: gzip``; it expires ``form.expires_in_s`` seconds from now."""
        fields: dict[str, str] = {}
        conditions: list[object] = [["content-length-range", 1, form.max_bytes]]
        if form.gzipped:
            # Stored with the encoding it has, as the API stores gzip batches: the worker reads it from the key too.
            fields["Content-Encoding"] = "gzip"
            conditions.append({"Content-Encoding": "gzip"})
        try:
            # boto3 adds the exact {"key": ...} and {"bucket": ...} conditions itself, and every signing field.
            signed = self._client.generate_presigned_post(
                Bucket=self._bucket, Key=form.key, Fields=fields, Conditions=conditions, ExpiresIn=form.expires_in_s
            )
        except BotoCoreError as exc:
            raise StorageUnavailableError(f"signing an upload form for s3://{self._bucket} failed: {exc}") from exc
        return SignedForm(url=signed["url"], fields={name: str(value) for name, value in signed["fields"].items()})


class S3ObjectSource:
    """Opens batch objects for streaming, at the version their S3 event named.

    Small objects (API batches) can be read ahead in background threads while earlier messages of the same
    invocation are loaded: a GET is mostly waiting, and it then overlaps the worker's parsing and COPY."""

    def __init__(self, client: "S3Client | None" = None, read_ahead_max_bytes: int = 8 * 1024 * 1024) -> None:
        self._client = client or s3_client()
        self._read_ahead_max_bytes = read_ahead_max_bytes
        self._ahead: dict[ObjectRef, Future[OpenedObject]] = {}
        # One thread per message of a full invocation (the event source hands over ten at most).
        self._pool = ThreadPoolExecutor(max_workers=10, thread_name_prefix="s3-read-ahead")

    def read_ahead(self, refs: Iterable[ObjectRef]) -> None:
        """Start reading the small objects among ``refs`` whole, in the background, for ``open_object``."""
        for ref in refs:
            if ref.size is not None and ref.size <= self._read_ahead_max_bytes and ref not in self._ahead:
                self._ahead[ref] = self._pool.submit(self._read_whole, ref)

    def forget_read_ahead(self) -> None:
        """Drop what was read ahead and not used; called when an invocation ends."""
        for future in self._ahead.values():
            future.cancel()
        self._ahead.clear()

    def open_object(self, ref: ObjectRef) -> OpenedObject:
        """The object read ahead, if it was; else start a GET whose body is read as the worker goes."""
        ahead = self._ahead.pop(ref, None)
        if ahead is not None:
            try:
                return ahead.result()
            except StorageUnavailableError:
                pass  # a fault while reading ahead: read it now, and let a fault here fail the message
        return self._open(ref)

    def _read_whole(self, ref: ObjectRef) -> OpenedObject:
        opened = self._open(ref)
        try:
            data = opened.body.read()
        except (BotoCoreError, OSError) as exc:
            raise StorageUnavailableError(f"reading s3://{ref.bucket}/{ref.key} failed: {exc}") from exc
        return OpenedObject(body=io.BytesIO(data), content_encoding=opened.content_encoding, size=opened.size)

    def _open(self, ref: ObjectRef) -> OpenedObject:
        request: GetObjectRequestTypeDef = {"Bucket": ref.bucket, "Key": ref.key}
        etag = (ref.etag or "").strip('"')
        if ref.version_id and ref.version_id != "null":
            # Pinning the version keeps the chunks of a retry the same even if the key was overwritten since.
            request["VersionId"] = ref.version_id
        elif etag:
            # An event without a version id (an unversioned bucket, or the local S3, whose events carry none) still
            # names its version by the ETag, which is what a drop's job id and an upload's pinned version come from:
            # a key overwritten since (a file dropped again, a form POSTed twice) must not have the newer bytes
            # loaded under the older version's job.
            request["IfMatch"] = f'"{etag}"'
        try:
            answer = self._client.get_object(**request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in _GONE:
                # Said to the job's client: no bucket name, which is the deployment's, not the tenant's.
                raise UnreadableObjectError(OBJECT_GONE) from None
            if code not in _REPLACED or "IfMatch" not in request:
                raise StorageUnavailableError(f"reading s3://{ref.bucket}/{ref.key} failed: {exc}") from exc
            answer = self._open_replaced(ref, etag)
        except BotoCoreError as exc:
            raise StorageUnavailableError(f"reading s3://{ref.bucket}/{ref.key} failed: {exc}") from exc
        return OpenedObject(
            body=answer["Body"],  # type: ignore[arg-type]
            content_encoding=answer.get("ContentEncoding"),
            size=answer.get("ContentLength"),
        )

    def _open_replaced(self, ref: ObjectRef, etag: str) -> "GetObjectOutputTypeDef":
        """The version of ``ref.key`` whose ETag is ``etag``, found among the key's versions: the local S3 keeps
        every version but names none in its events. In AWS a versioned bucket's events carry the version id, so
        this is only reached for an unversioned bucket, where the version is gone (and listing versions is not
        granted: AccessDenied says as much)."""
        try:
            listing = self._client.list_object_versions(Bucket=ref.bucket, Prefix=ref.key)
            version = next(
                (
                    each["VersionId"]
                    for each in listing.get("Versions", [])
                    if each.get("Key") == ref.key and each.get("ETag", "").strip('"') == etag
                ),
                None,
            )
            if version is None:
                raise UnreadableObjectError(OBJECT_REPLACED)
            return self._client.get_object(Bucket=ref.bucket, Key=ref.key, VersionId=version)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in _GONE or code == "AccessDenied":
                raise UnreadableObjectError(OBJECT_REPLACED) from None
            raise StorageUnavailableError(f"reading s3://{ref.bucket}/{ref.key} failed: {exc}") from exc
