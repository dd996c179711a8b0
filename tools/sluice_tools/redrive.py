"""Redriving parked batches: every message of IngestDeadLetterQueue back to IngestQueue (``sluice redrive``).

Each message is sent to IngestQueue first and deleted from the dead-letter queue only once the send succeeded.
A crash in between leaves it in both queues, so the worker gets it twice; that is harmless, as any redelivery
is: the ledger skips every chunk already committed and a completed job is not started again.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from sluice.adapters.aws import CLIENT_CONFIG
from sluice.domain.objects import parse_message
from sluice.errors import StorageUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef, MessageTypeDef

# SQS hands out at most ten messages per receive.
RECEIVE_MAX = 10
# How long a received message stays hidden while it is sent and deleted (or, in a dry run, listed). Should the
# command die meanwhile, the message shows up again in the dead-letter queue after this: nothing is lost.
HOLD_SECONDS = 120
_AWS_QUEUE_URL = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?/")


@dataclass(frozen=True, slots=True)
class RedriveQueues:
    """Where parked messages are and where they go back to."""

    dead_letter_url: str
    queue_url: str


@dataclass(frozen=True, slots=True)
class ParkedMessage:
    """A message of the dead-letter queue, with the objects its S3 event names and their jobs."""

    message_id: str
    objects: tuple[str, ...]
    job_ids: tuple[UUID, ...]
    note: str = ""


class QueueRedrive:
    """Moves (or, in a dry run, lists) the messages of a dead-letter queue back to its source queue."""

    def __init__(self, queues: RedriveQueues, client: "SQSClient", *, wait_seconds: int = 1) -> None:
        self._queues = queues
        self._client = client
        self._wait_seconds = wait_seconds
        # What moved so far: still true after a failure half way.
        self.moved: list[ParkedMessage] = []

    def move(self, limit: int | None = None) -> list[ParkedMessage]:
        """Move every message (at most ``limit``) to the source queue, body and message attributes unchanged."""
        while limit is None or len(self.moved) < limit:
            wanted = RECEIVE_MAX if limit is None else min(RECEIVE_MAX, limit - len(self.moved))
            messages = self._receive(wanted)
            if not messages:
                break
            self._send_then_delete(messages)
        return self.moved

    def parked(self, limit: int | None = None) -> list[ParkedMessage]:
        """List the messages (at most ``limit``) without moving any: each is received, described and released."""
        held: dict[str, MessageTypeDef] = {}
        try:
            while limit is None or len(held) < limit:
                wanted = RECEIVE_MAX if limit is None else min(RECEIVE_MAX, limit - len(held))
                messages = self._receive(wanted)
                # A message seen already came back because its hold ran out: the queue holds nothing newer.
                new = [message for message in messages if message["MessageId"] not in held]
                held.update((message["MessageId"], message) for message in messages)
                if not new:
                    break
        finally:
            self._release(list(held.values()))
        return [describe(message) for message in held.values()]

    def _receive(self, count: int) -> list["MessageTypeDef"]:
        answer = self._call(
            "receiving from the dead-letter queue",
            lambda: self._client.receive_message(
                QueueUrl=self._queues.dead_letter_url,
                MaxNumberOfMessages=count,
                VisibilityTimeout=HOLD_SECONDS,
                # Long polling asks every SQS server: an empty answer means an empty queue.
                WaitTimeSeconds=self._wait_seconds,
                MessageAttributeNames=["All"],
            ),
        )
        return list(answer.get("Messages", []))

    def _send_then_delete(self, messages: Sequence["MessageTypeDef"]) -> None:
        entries = []
        for index, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
            attributes = message_attributes(message.get("MessageAttributes", {}))
            if attributes:
                entry["MessageAttributes"] = attributes
            entries.append(entry)
        try:
            sent = self._call(
                "sending to the source queue",
                lambda: self._client.send_message_batch(QueueUrl=self._queues.queue_url, Entries=entries),  # type: ignore[arg-type]
            )
        except StorageUnavailableError:
            self._release(messages)
            raise
        done = [messages[int(entry["Id"])] for entry in sent.get("Successful", [])]
        failed = [(messages[int(entry["Id"])], entry) for entry in sent.get("Failed", [])]
        self._release([message for message, _ in failed])
        # Only what reached the source queue leaves the dead-letter queue. Should the delete fail, the message is
        # in both queues: the worker gets it now, and again after a later redrive, which the ledger makes harmless.
        self.moved.extend(describe(message) for message in done)
        if done:
            deleted = self._call(
                "deleting moved messages from the dead-letter queue (they were sent: a later redrive repeats them)",
                lambda: self._client.delete_message_batch(
                    QueueUrl=self._queues.dead_letter_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                ),
            )
            if deleted.get("Failed"):
                raise StorageUnavailableError(
                    f"{len(deleted['Failed'])} message(s) went to the source queue but are still in the dead-letter "
                    f"queue ({_reasons(deleted['Failed'])}); a later redrive sends them again, harmlessly"
                )
        if failed:
            raise StorageUnavailableError(
                f"{len(failed)} message(s) could not be sent to the source queue and stay parked "
                f"({_reasons([entry for _, entry in failed])})"
            )

    def _release(self, messages: Sequence["MessageTypeDef"]) -> None:
        """Make held messages visible again at once (best effort: otherwise they come back after the hold)."""
        for start in range(0, len(messages), RECEIVE_MAX):
            batch = messages[start : start + RECEIVE_MAX]
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(batch)
            ]
            try:
                self._client.change_message_visibility_batch(
                    QueueUrl=self._queues.dead_letter_url,
                    Entries=entries,  # type: ignore[arg-type]
                )
            except (BotoCoreError, ClientError):
                return

    def _call[T](self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
                raise StorageUnavailableError(
                    f"{what}: no such queue ({self._queues.dead_letter_url} or {self._queues.queue_url})"
                ) from exc
            raise StorageUnavailableError(f"{what} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailableError(f"{what} failed: {exc}") from exc


def _reasons(failures: Sequence[Any]) -> str:
    return "; ".join(sorted({f"{entry['Code']}: {entry.get('Message', '')}" for entry in failures}))


def describe(message: "MessageTypeDef") -> ParkedMessage:
    """The objects and jobs a parked message's S3 event names."""
    message_id = message["MessageId"]
    parsed = parse_message(message["Body"])
    if parsed.unreadable is not None:
        return ParkedMessage(message_id, (), (), note=parsed.unreadable)
    objects = tuple(f"s3://{ref.bucket}/{ref.key}" for ref in parsed.refs)
    return ParkedMessage(message_id, objects, parsed.job_ids, note="" if objects else "names no object (s3:TestEvent)")


def message_attributes(received: Mapping[str, Any]) -> dict[str, "MessageAttributeValueTypeDef"]:
    """Received message attributes in the shape SendMessage takes (the list forms SQS does not accept left out)."""
    kept: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in received.items():
        attribute: dict[str, Any] = {"DataType": value["DataType"]}
        for field in ("StringValue", "BinaryValue"):
            if field in value:
                attribute[field] = value[field]
        kept[name] = attribute  # type: ignore[assignment]
    return kept


def queue_region(queue_url: str) -> str | None:
    """The region of an AWS queue URL (``https://sqs.<region>.amazonaws.com/...``); None for any other URL."""
    found = _AWS_QUEUE_URL.match(queue_url)
    return found.group(1) if found else None


def redrive_client(region: str, endpoint_url: str | None, credentials: Mapping[str, str] | None = None) -> "SQSClient":
    """An SQS client for the command: AWS's own endpoint and credentials, or a local endpoint with ``credentials``."""
    session = boto3.session.Session(
        region_name=region,
        aws_access_key_id=(credentials or {}).get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=(credentials or {}).get("AWS_SECRET_ACCESS_KEY"),
    )
    return session.client("sqs", endpoint_url=endpoint_url, config=CLIENT_CONFIG)


def show_parked(message: ParkedMessage) -> str:
    """One line per message: its id, objects and jobs."""
    parts = [message.message_id]
    parts += list(message.objects)
    parts += [f"job {job_id}" for job_id in message.job_ids]
    if message.note:
        parts.append(f"({message.note})")
    return "  ".join(parts)
