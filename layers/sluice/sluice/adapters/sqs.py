"""SQS: keeping a message invisible while its object is worked on, and stopping before the invocation ends."""

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from sluice.adapters.aws import sqs_client
from sluice.errors import OutOfTimeError, StorageUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class MessageProgress:
    """After each committed chunk: extend the message's visibility (at most every heartbeat) and refuse to start
    another chunk when the invocation has too little time left."""

    def __init__(  # noqa: PLR0913 - the message, the limits and the two clocks
        self,
        queue_url: str,
        receipt_handle: str,
        *,
        visibility_timeout_s: int,
        heartbeat_s: int,
        remaining_ms: Callable[[], int],
        min_remaining_ms: int,
        client: "SQSClient | None" = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue_url = queue_url
        self._receipt_handle = receipt_handle
        self._visibility_timeout_s = visibility_timeout_s
        self._heartbeat_s = heartbeat_s
        self._remaining_ms = remaining_ms
        self._min_remaining_ms = min_remaining_ms
        self._client = client or sqs_client()
        self._monotonic = monotonic
        self._last_extended = monotonic()

    def chunk_committed(self, chunk_no: int) -> None:
        """Keep the message ours; raise OutOfTimeError when no further chunk should start."""
        self._keep(f"after chunk {chunk_no}: the message is retried and resumes at chunk {chunk_no + 1}")

    def still_reading(self) -> None:
        """The same between commits, while the object is read: a file of blank lines commits nothing for long."""
        self._keep("while reading: the message is retried and resumes after its last committed chunk")

    def _keep(self, where: str) -> None:
        if self._monotonic() - self._last_extended >= self._heartbeat_s:
            self._change_visibility(self._visibility_timeout_s)
            self._last_extended = self._monotonic()
        remaining = self._remaining_ms()
        if remaining < self._min_remaining_ms:
            # Visible again at once: the retry resumes now rather than when the extended timeout runs out.
            self._change_visibility(0)
            raise OutOfTimeError(f"{remaining} ms left {where}")

    def _change_visibility(self, seconds: int) -> None:
        try:
            self._client.change_message_visibility(
                QueueUrl=self._queue_url, ReceiptHandle=self._receipt_handle, VisibilityTimeout=seconds
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailableError(f"changing the message's visibility failed: {exc}") from exc
