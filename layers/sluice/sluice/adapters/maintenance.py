"""MaintenanceFunction's adapters: chunks in TimescaleDB, the dead-letter queue, object versions in S3, requeues."""

from collections.abc import Sequence
from contextlib import suppress
from datetime import datetime
from typing import TYPE_CHECKING, Final, LiteralString
from uuid import UUID

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from sluice.adapters.aws import s3_client, sqs_client
from sluice.adapters.timescale import DatabaseConnector
from sluice.domain.maintenance import (
    ParkedMessage,
)
from sluice.domain.objects import ObjectRef
from sluice.errors import StorageUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import ChangeMessageVisibilityBatchRequestEntryTypeDef

# The sweeper examines no further job with less than this left of the invocation: enough for the job at hand and
# for the metrics to be written.
SWEEP_RESERVE_MS: Final = 15_000
# A HEAD of a key that holds no object (or whose newest version is a delete marker).
_NO_OBJECT = frozenset({"404", "NoSuchKey", "NotFound"})
# SQS hands out at most ten messages per receive and changes at most ten visibilities per call.
_SQS_BATCH = 10
_HAS_RETENTION_POLICY: LiteralString = (
    "SELECT EXISTS (SELECT FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'"
    " AND hypertable_schema = current_schema() AND hypertable_name = %s)"
)
_DROP_CHUNKS: LiteralString = "SELECT drop_chunks(%s::regclass, older_than => make_interval(years => %s::int))"
_LAST_COMMITS: LiteralString = (
    "SELECT job_id, max(committed_at) FROM ingest_ledger WHERE job_id = ANY(%s) GROUP BY job_id"
)


class TimescaleMaintenanceStore:
    """The database side of maintenance: a hypertable's chunks and the ledger's last commits."""

    def __init__(self, connector: DatabaseConnector) -> None:
        self._connector = connector

    def has_retention_policy(self, hypertable: str) -> bool:
        """Whether a TimescaleDB retention policy drops the hypertable's old chunks (the Timescale-licensed build
        adds one on readings in migration 0002 and on the rollups in 0009; the Apache build cannot)."""
        try:
            row = self._connector.checked_connection().execute(_HAS_RETENTION_POLICY, (hypertable,)).fetchone()
        except psycopg.Error as exc:
            raise StorageUnavailableError(f"looking for a retention policy on {hypertable} failed: {exc}") from exc
        return bool(row and row[0])

    def drop_chunks(self, hypertable: str, older_than_years: int) -> list[str]:
        """Drop the hypertable's chunks older than ``older_than_years``; return their names. Only the hypertable's
        owner may. The chunks' locks are waited for 10 s at most, so a long query on old data postpones the drop to
        the next run instead of queueing every other query behind it."""
        try:
            conn = self._connector.connection()
            with conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '10s'")
                rows = conn.execute(_DROP_CHUNKS, (hypertable, older_than_years)).fetchall()
        except psycopg.Error as exc:
            raise StorageUnavailableError(f"dropping old chunks of {hypertable} failed: {exc}") from exc
        return [str(row[0]) for row in rows]

    def last_commits(self, job_ids: Sequence[UUID]) -> dict[UUID, datetime]:
        """The newest ``committed_at`` of each of ``job_ids`` that has ledger rows."""
        try:
            rows = self._connector.checked_connection().execute(_LAST_COMMITS, (list(job_ids),)).fetchall()
        except psycopg.Error as exc:
            raise StorageUnavailableError(f"reading the ledger failed: {exc}") from exc
        return {row[0]: row[1] for row in rows}


class S3ObjectProbe:
    """Looks at batch objects without reading them (HEAD, which S3ReadPolicy's s3:GetObject allows)."""

    def __init__(self, client: "S3Client | None" = None) -> None:
        self._client = client or s3_client()

    def newest_version(self, bucket: str, key: str) -> ObjectRef | None:
        """The key's newest version as an S3 event would name it (ETag without quotes), or None."""
        try:
            answer = self._client.head_object(Bucket=bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _NO_OBJECT:
                return None
            raise StorageUnavailableError(f"looking at s3://{bucket}/{key} failed: {exc}") from exc
        return ObjectRef(
            bucket=bucket,
            key=key,
            version_id=answer.get("VersionId"),
            etag=answer.get("ETag", "").strip('"') or None,
            size=answer.get("ContentLength"),
        )


class SqsJobRequeue:
    """Sends requeued S3 events to IngestQueue."""

    def __init__(self, queue_url: str, client: "SQSClient | None" = None) -> None:
        self._queue_url = queue_url
        self._client = client or sqs_client()

    def send(self, message_body: str) -> None:
        """Send one message."""
        try:
            self._client.send_message(QueueUrl=self._queue_url, MessageBody=message_body)
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailableError(f"sending to IngestQueue failed: {exc}") from exc

    def waiting(self) -> int:
        """How many messages IngestQueue holds that no worker has received yet (visible or delayed)."""
        try:
            attributes = self._client.get_queue_attributes(
                QueueUrl=self._queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
            )["Attributes"]
        except (BotoCoreError, ClientError, KeyError) as exc:
            raise StorageUnavailableError(f"reading IngestQueue's depth failed: {exc}") from exc
        return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesDelayed", 0)
        )


class SqsDeadLetters:
    """Reads IngestDeadLetterQueue without taking anything out of it: messages are received with a short
    visibility timeout, never deleted, and made visible again once all were read, so ``sluice redrive`` finds
    them all."""

    def __init__(self, queue_url: str, visibility_s: int, max_messages: int, client: "SQSClient | None" = None) -> None:
        self._queue_url = queue_url
        self._visibility_s = visibility_s
        self._max_messages = max_messages
        self._client = client or sqs_client()

    def parked_messages(self) -> list[ParkedMessage]:
        """Up to ``max_messages`` parked messages, each once."""
        found: dict[str, tuple[ParkedMessage, str]] = {}
        try:
            while len(found) < self._max_messages:
                # A 1 s long poll asks every SQS server; a short poll may answer "none" for a queue holding a few.
                batch = self._client.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=_SQS_BATCH,
                    VisibilityTimeout=self._visibility_s,
                    WaitTimeSeconds=1,
                ).get("Messages", [])
                if not batch:
                    break
                for message in batch:
                    # A message read twice (its visibility ran out meanwhile) keeps its newest receipt handle.
                    found[message["MessageId"]] = (
                        ParkedMessage(message["MessageId"], message.get("Body", "")),
                        message["ReceiptHandle"],
                    )
        except (BotoCoreError, ClientError) as exc:
            self._release([handle for _, handle in found.values()])
            raise StorageUnavailableError(f"reading the dead-letter queue failed: {exc}") from exc
        self._release([handle for _, handle in found.values()])
        return [message for message, _ in found.values()]

    def _release(self, handles: list[str]) -> None:
        for start in range(0, len(handles), _SQS_BATCH):
            entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
                {"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for n, handle in enumerate(handles[start : start + _SQS_BATCH])
            ]
            # Best effort: a message not released becomes visible anyway when its short timeout runs out.
            with suppress(BotoCoreError, ClientError):
                self._client.change_message_visibility_batch(QueueUrl=self._queue_url, Entries=entries)
