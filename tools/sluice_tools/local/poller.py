"""An SQS event source mapping, locally: polls a queue and invokes a function the way Lambda's poller does.

What Lambda does and this does too: receive up to BatchSize messages, waiting at most
MaximumBatchingWindowInSeconds to fill the batch; invoke the function with the ``aws:sqs`` event; on success
delete the batch, or with ReportBatchItemFailures delete all but the messages the function names (a malformed
answer fails the whole batch); on a function error delete nothing. Messages not deleted come back after the
queue's visibility timeout, and SQS itself moves one to the dead-letter queue once its receive count passes the
redrive policy's maxReceiveCount. ScalingConfig.MaximumConcurrency is the number of concurrent pollers.
"""

import base64
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sluice_tools.local.lambdas import Invocation
from sluice_tools.local.template import StackContext, TemplateError, created_resources_of_type

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

logger = logging.getLogger(__name__)
# Lambda's defaults for an SQS event source.
_DEFAULT_BATCH_SIZE = 10
_DEFAULT_CONCURRENCY = 5
# Long polls are cut to this so a stop request is noticed promptly (Lambda itself polls for 20 s).
_POLL_SECONDS = 1


@dataclass(frozen=True, slots=True)
class SqsEventSource:
    """One SQS event of a function in the template, resolved."""

    function: str
    name: str
    queue_url: str
    queue_arn: str
    batch_size: int
    batching_window_s: int
    report_item_failures: bool
    max_concurrency: int
    enabled: bool = True


def sqs_event_sources(context: StackContext) -> list[SqsEventSource]:
    """Every ``Type: SQS`` event of the template's functions (their queues must be created already)."""
    by_arn = {context.get_att(name, "Arn"): name for name in created_resources_of_type(context, "AWS::SQS::Queue")}
    sources: list[SqsEventSource] = []
    for logical_id, function in created_resources_of_type(context, "AWS::Serverless::Function").items():
        for name, event in function["Properties"].get("Events", {}).items():
            if event["Type"] != "SQS":
                continue
            properties = context.resolve(event["Properties"])
            queue = by_arn.get(properties["Queue"])
            if queue is None:
                raise TemplateError(f"{logical_id}.{name}: the queue {properties['Queue']} is not in the template")
            sources.append(
                SqsEventSource(
                    function=logical_id,
                    name=name,
                    queue_url=context.ref(queue),
                    queue_arn=str(properties["Queue"]),
                    batch_size=int(properties.get("BatchSize", _DEFAULT_BATCH_SIZE)),
                    batching_window_s=int(properties.get("MaximumBatchingWindowInSeconds", 0)),
                    report_item_failures="ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []),
                    max_concurrency=int(
                        properties.get("ScalingConfig", {}).get("MaximumConcurrency", _DEFAULT_CONCURRENCY)
                    ),
                    enabled=bool(properties.get("Enabled", True)),
                )
            )
    return sources


def sqs_event(messages: Sequence["MessageTypeDef"], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's poller sends for a batch of received messages."""
    return {"Records": [sqs_record(message, queue_arn, region) for message in messages]}


def sqs_record(message: "MessageTypeDef", queue_arn: str, region: str) -> dict[str, Any]:
    """One message as an ``aws:sqs`` record (attribute names as Lambda writes them: camelCase values)."""
    body = message.get("Body", "")
    attributes: dict[str, Any] = {}
    for name, attribute in message.get("MessageAttributes", {}).items():
        entry: dict[str, Any] = {"dataType": attribute["DataType"], "stringListValues": [], "binaryListValues": []}
        if "StringValue" in attribute:
            entry["stringValue"] = attribute["StringValue"]
        if "BinaryValue" in attribute:
            entry["binaryValue"] = base64.b64encode(attribute["BinaryValue"]).decode()
        attributes[name] = entry
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def failed_message_ids(invocation: Invocation, message_ids: Sequence[str], report_item_failures: bool) -> set[str]:
    """Which messages of a batch stay on the queue after this invocation."""
    if invocation.failed:
        return set(message_ids)
    result = invocation.result
    if not report_item_failures or result is None or (isinstance(result, dict) and "batchItemFailures" not in result):
        return set()
    failures = result.get("batchItemFailures") if isinstance(result, dict) else "not a response"
    if failures is None:  # a null list, like an empty one, is complete success
        return set()
    identifiers = (
        [failure.get("itemIdentifier") if isinstance(failure, dict) else None for failure in failures]
        if isinstance(failures, list)
        else [None]
    )
    if all(isinstance(identifier, str) and identifier in message_ids for identifier in identifiers):
        return {str(identifier) for identifier in identifiers}
    # Lambda treats a malformed answer (not a list, an entry without a known itemIdentifier) as the whole batch
    # failing.
    return set(message_ids)


class QueuePoller:
    """The pollers of one SQS event source: ``max_concurrency`` threads that receive, invoke and delete."""

    def __init__(
        self,
        source: SqsEventSource,
        sqs: "SQSClient",
        invoke: Callable[[str, dict[str, Any]], Invocation],
        region: str,
        on_batch: Callable[[SqsEventSource, int, int, Invocation], None] | None = None,
    ) -> None:
        self.source = source
        self._sqs = sqs
        self._invoke = invoke
        self._region = region
        self._on_batch = on_batch
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"poller-{source.function}-{n}", daemon=True)
            for n in range(source.max_concurrency)
        ]

    def start(self) -> None:
        """Start polling."""
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 10) -> None:
        """Stop polling; a batch being invoked keeps its messages unless its invocation finishes in time. Waits at
        most ``timeout_s`` in all, however many threads poll."""
        self._stopping.set()
        ends = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, ends - time.monotonic()))

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # a poller outlives any one failure, as Lambda's does
                if self._stopping.wait(1):
                    return  # stopping: the local AWS may be gone already (Ctrl-C reaches it too)
                logger.warning("polling %s failed (%s); trying again", self.source.queue_url, exc)

    def receive_batch(self) -> list["MessageTypeDef"]:
        """Up to BatchSize messages, gathered for at most the batching window once the first arrives."""
        messages: list[MessageTypeDef] = []
        window_ends: float | None = None
        while len(messages) < self.source.batch_size and not self._stopping.is_set():
            wait = _POLL_SECONDS
            if window_ends is not None:
                remaining = window_ends - time.monotonic()
                if remaining <= 0:
                    break
                # Whole seconds only: SQS long polls in seconds, so the window may run up to a second over.
                wait = min(_POLL_SECONDS, math.ceil(remaining))
            answer = self._sqs.receive_message(
                QueueUrl=self.source.queue_url,
                MaxNumberOfMessages=min(10, self.source.batch_size - len(messages)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages.extend(answer.get("Messages", []))
            if messages and window_ends is None:
                window_ends = time.monotonic() + self.source.batching_window_s
        return messages

    def poll_once(self) -> None:
        """Receive one batch, invoke the function with it, delete what succeeded."""
        messages = self.receive_batch()
        if not messages:
            return
        invocation = self._invoke(self.source.function, sqs_event(messages, self.source.queue_arn, self._region))
        ids = [message["MessageId"] for message in messages]
        failed = failed_message_ids(invocation, ids, self.source.report_item_failures)
        done = [message for message in messages if message["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self._sqs.delete_message_batch(
                QueueUrl=self.source.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]}
                    for n, message in enumerate(done[start : start + 10])
                ],
            )
        if self._on_batch is not None:
            self._on_batch(self.source, len(messages), len(failed), invocation)
