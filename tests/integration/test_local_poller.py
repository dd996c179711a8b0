"""The local SQS event source: the template's mapping read, messages turned into ``aws:sqs`` records, Lambda's
partial batch response rules, and the poller against an in-process moto queue with its dead-letter queue."""

import base64
import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from sluice.adapters.aws import sqs_client
from sluice_tools.local.lambdas import Invocation
from sluice_tools.local.poller import (
    QueuePoller,
    SqsEventSource,
    failed_message_ids,
    sqs_event,
    sqs_event_sources,
    sqs_record,
)
from sluice_tools.local.resources import plan_stack
from sluice_tools.local.template import StackContext, TemplateError

from ..lambdas import template

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

REGION = "eu-central-1"
QUEUE_ARN = "arn:aws:sqs:eu-central-1:123456789012:sluice-test-IngestQueue"


def planned(document: dict[str, Any] | None = None, **parameters: str) -> StackContext:
    overrides = {"DatabaseSecretArn": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:x", **parameters}
    context = StackContext(
        document or template(), stack_name="sluice-test", region=REGION, parameter_overrides=overrides
    )
    return plan_stack(context, "http://127.0.0.1:4566")


# --- the template's event source ---------------------------------------------------------------------------------


def test_the_worker_event_source_follows_the_template() -> None:
    assert sqs_event_sources(planned()) == [
        SqsEventSource(
            function="LoadWorkerFunction",
            name="Batches",
            queue_url="http://127.0.0.1:4566/123456789012/sluice-test-IngestQueue",
            queue_arn=QUEUE_ARN,
            batch_size=10,
            batching_window_s=1,
            report_item_failures=True,
            max_concurrency=5,
            enabled=True,
        )
    ]


def test_the_worker_concurrency_is_a_template_parameter() -> None:
    (source,) = sqs_event_sources(planned(WorkerMaxConcurrency="12"))

    assert source.max_concurrency == 12


def test_an_event_source_on_a_queue_outside_the_template_is_refused() -> None:
    document = copy.deepcopy(template())
    events = document["Resources"]["LoadWorkerFunction"]["Properties"]["Events"]
    events["Batches"]["Properties"]["Queue"] = "arn:aws:sqs:eu-central-1:123456789012:elsewhere"

    with pytest.raises(TemplateError, match="elsewhere"):
        sqs_event_sources(planned(document))


def test_lambdas_defaults_fill_what_an_event_leaves_out() -> None:
    document = copy.deepcopy(template())
    events = document["Resources"]["LoadWorkerFunction"]["Properties"]["Events"]
    events["Batches"]["Properties"] = {"Queue": {"Fn::GetAtt": ["IngestQueue", "Arn"]}, "Enabled": False}

    (source,) = sqs_event_sources(planned(document))

    assert (source.batch_size, source.batching_window_s) == (10, 0)
    assert (source.report_item_failures, source.max_concurrency, source.enabled) == (False, 5, False)


# --- records -----------------------------------------------------------------------------------------------------


def test_a_message_becomes_an_aws_sqs_record() -> None:
    message: MessageTypeDef = {
        "MessageId": "m-1",
        "ReceiptHandle": "handle-1",
        "Body": '{"Records": []}',
        "MD5OfBody": "given-md5",
        "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1700000000000"},
        "MessageAttributes": {
            "kind": {"DataType": "String", "StringValue": "drop"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
            "count": {"DataType": "Number", "StringValue": "3"},
        },
    }

    record = sqs_record(message, QUEUE_ARN, REGION)

    assert record == {
        "messageId": "m-1",
        "receiptHandle": "handle-1",
        "body": '{"Records": []}',
        "attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1700000000000"},
        "messageAttributes": {
            "kind": {"dataType": "String", "stringValue": "drop", "stringListValues": [], "binaryListValues": []},
            "blob": {
                "dataType": "Binary",
                "binaryValue": base64.b64encode(b"\x00\xff").decode(),
                "stringListValues": [],
                "binaryListValues": [],
            },
            "count": {"dataType": "Number", "stringValue": "3", "stringListValues": [], "binaryListValues": []},
        },
        "md5OfBody": "given-md5",
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": REGION,
    }


def test_a_bare_message_gets_empty_attributes_and_its_body_checksum() -> None:
    message: MessageTypeDef = {"MessageId": "m-2", "ReceiptHandle": "handle-2", "Body": "hello"}

    record = sqs_record(message, QUEUE_ARN, REGION)

    assert (record["attributes"], record["messageAttributes"]) == ({}, {})
    assert record["md5OfBody"] == hashlib.md5(b"hello").hexdigest()  # noqa: S324 - SQS's checksum


def test_a_batch_is_one_event_of_records_in_order() -> None:
    messages: list[MessageTypeDef] = [
        {"MessageId": f"m-{n}", "ReceiptHandle": f"h-{n}", "Body": str(n)} for n in range(3)
    ]

    event = sqs_event(messages, QUEUE_ARN, REGION)

    assert [record["messageId"] for record in event["Records"]] == ["m-0", "m-1", "m-2"]


# --- partial batch responses -------------------------------------------------------------------------------------

IDS = ["m-1", "m-2", "m-3"]


def answered(result: Any = None, *, failed: bool = False) -> Invocation:
    error = {"errorType": "RuntimeError", "errorMessage": "boom"} if failed else None
    return Invocation(request_id="r", result=result, error=error)


@pytest.mark.parametrize(
    ("invocation", "report", "expected"),
    [
        (answered(failed=True), True, set(IDS)),
        (answered(failed=True), False, set(IDS)),
        (answered({"batchItemFailures": [{"itemIdentifier": "m-1"}]}), False, set()),
        (answered(None), True, set()),
        (answered({}), True, set()),
        (answered({"batchItemFailures": []}), True, set()),
        (answered({"statusCode": 200}), True, set()),
        (answered({"batchItemFailures": [{"itemIdentifier": "m-2"}]}), True, {"m-2"}),
        (
            answered({"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-3"}]}),
            True,
            {"m-1", "m-3"},
        ),
        (answered({"batchItemFailures": [{"itemIdentifier": "m-9"}]}), True, set(IDS)),
        (answered({"batchItemFailures": [{"itemIdentifier": ""}]}), True, set(IDS)),
        (answered({"batchItemFailures": [{"itemIdentifier": None}]}), True, set(IDS)),
        (answered({"batchItemFailures": [{"id": "m-1"}]}), True, set(IDS)),
        (answered({"batchItemFailures": ["m-1"]}), True, set(IDS)),
        (answered({"batchItemFailures": [{"itemIdentifier": "m-1"}, {}]}), True, set(IDS)),
        (answered({"batchItemFailures": {"itemIdentifier": "m-1"}}), True, set(IDS)),
        (answered({"batchItemFailures": "m-1"}), True, set(IDS)),
        (answered(["m-1"]), True, set(IDS)),
    ],
    ids=[
        "invocation-failed",
        "invocation-failed-without-reporting",
        "not-reporting",
        "null-response",
        "empty-response",
        "empty-list",
        "no-failures-key",
        "one-named",
        "two-named",
        "unknown-id",
        "empty-id",
        "null-id",
        "wrong-key",
        "entry-not-object",
        "one-entry-without-id",
        "not-a-list",
        "a-string",
        "response-not-object",
    ],
)
def test_failed_message_ids_follow_lambdas_rules(invocation: Invocation, report: bool, expected: set[str]) -> None:
    assert failed_message_ids(invocation, IDS, report) == expected


def test_a_null_failure_list_is_a_complete_success() -> None:
    assert failed_message_ids(answered({"batchItemFailures": None}), IDS, report_item_failures=True) == set()


# --- polling a queue ---------------------------------------------------------------------------------------------


@dataclass
class RecordingFunction:
    """A fake ``invoke``: records each event and fails the messages whose bodies are in ``failing``."""

    failing: set[str] = field(default_factory=set)
    crash: bool = False
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, function: str, event: dict[str, Any]) -> Invocation:
        self.calls.append((function, event))
        if self.crash:
            return Invocation("r", error={"errorType": "RuntimeError", "errorMessage": "boom"})
        failures = [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] in self.failing]
        return Invocation("r", result={"batchItemFailures": failures})


@dataclass
class Queues:
    sqs: "SQSClient"
    source: SqsEventSource
    dead_letter_url: str

    def send(self, *bodies: str) -> None:
        for body in bodies:
            self.sqs.send_message(
                QueueUrl=self.source.queue_url,
                MessageBody=body,
                MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
            )

    def hide_received_messages(self) -> None:
        """A received message stays invisible for the rest of the test (the fixture's 0 s hands it out again)."""
        self.sqs.set_queue_attributes(QueueUrl=self.source.queue_url, Attributes={"VisibilityTimeout": "60"})

    def bodies(self, url: str) -> list[str]:
        answer = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return sorted(message["Body"] for message in answer.get("Messages", []))


@pytest.fixture
def queues(aws_stack: StackContext) -> Queues:
    """The template's IngestQueue in moto, turned for speed: messages come back at once, two receives then the DLQ."""
    sqs = sqs_client()
    (source,) = sqs_event_sources(aws_stack)
    # The bucket's notification configuration left S3's test event on the queue.
    sqs.purge_queue(QueueUrl=source.queue_url)
    dead_letter_arn = aws_stack.get_att("IngestDeadLetterQueue", "Arn")
    sqs.set_queue_attributes(
        QueueUrl=source.queue_url,
        Attributes={
            "VisibilityTimeout": "0",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": 2}),
        },
    )
    # No batching window: a poll returns with what one receive brings.
    return Queues(sqs, dataclasses.replace(source, batching_window_s=0), aws_stack.ref("IngestDeadLetterQueue"))


def test_a_poll_deletes_all_but_the_messages_the_function_names(queues: Queues) -> None:
    queues.send("one", "two", "three")
    function = RecordingFunction(failing={"two"})
    batches: list[tuple[str, int, int, bool]] = []
    poller = QueuePoller(
        queues.source,
        queues.sqs,
        function,
        REGION,
        on_batch=lambda source, received, failed, invocation: batches.append(
            (source.function, received, failed, invocation.failed)
        ),
    )

    poller.poll_once()

    ((name, event),) = function.calls
    assert name == "LoadWorkerFunction"
    assert sorted(record["body"] for record in event["Records"]) == ["one", "three", "two"]
    record = event["Records"][0]
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == (
        "aws:sqs",
        queues.source.queue_arn,
        REGION,
    )
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["kind"]["stringValue"] == "test"
    assert batches == [("LoadWorkerFunction", 3, 1, False)]
    assert queues.bodies(queues.source.queue_url) == ["two"]


def test_a_failed_invocation_deletes_nothing(queues: Queues) -> None:
    queues.send("one", "two")
    poller = QueuePoller(queues.source, queues.sqs, RecordingFunction(crash=True), REGION)

    poller.poll_once()

    assert queues.bodies(queues.source.queue_url) == ["one", "two"]


def test_without_report_batch_item_failures_a_success_deletes_everything(queues: Queues) -> None:
    queues.send("one", "two")
    source = dataclasses.replace(queues.source, report_item_failures=False)
    poller = QueuePoller(source, queues.sqs, RecordingFunction(failing={"two"}), REGION)

    poller.poll_once()

    assert queues.bodies(queues.source.queue_url) == []


def test_a_batch_is_at_most_batch_size_messages(queues: Queues) -> None:
    queues.send(*(f"m{n}" for n in range(5)))
    function = RecordingFunction()
    poller = QueuePoller(dataclasses.replace(queues.source, batch_size=3), queues.sqs, function, REGION)

    poller.poll_once()

    assert len(function.calls[0][1]["Records"]) == 3
    assert len(queues.bodies(queues.source.queue_url)) == 2


def test_a_message_failing_max_receive_count_times_moves_to_the_dead_letter_queue(queues: Queues) -> None:
    queues.send("poison")
    function = RecordingFunction(failing={"poison"})
    poller = QueuePoller(queues.source, queues.sqs, function, REGION)

    poller.poll_once()
    poller.poll_once()

    counts = [event["Records"][0]["attributes"]["ApproximateReceiveCount"] for _, event in function.calls]
    assert counts == ["1", "2"]
    # The next receive finds the message past maxReceiveCount: SQS parks it instead of handing it out.
    assert queues.bodies(queues.source.queue_url) == []
    assert queues.bodies(queues.dead_letter_url) == ["poison"]


def test_a_batch_gathers_messages_sent_within_the_batching_window(queues: Queues) -> None:
    queues.hide_received_messages()
    queues.send("first")
    function = RecordingFunction()
    poller = QueuePoller(dataclasses.replace(queues.source, batching_window_s=1), queues.sqs, function, REGION)
    sent_late: list[str] = []

    def send_after_the_first_receive(**_: Any) -> None:
        # Sent from the polling thread itself, so the test does not depend on how threads are scheduled.
        if not sent_late:
            sent_late.append("second")
            queues.send("second")

    queues.sqs.meta.events.register("after-call.sqs.ReceiveMessage", send_after_the_first_receive)
    try:
        poller.poll_once()
    finally:
        queues.sqs.meta.events.unregister("after-call.sqs.ReceiveMessage", send_after_the_first_receive)

    ((_, event),) = function.calls
    assert [record["body"] for record in event["Records"]] == ["first", "second"]


def test_the_batching_window_is_waited_out_with_long_polls(queues: Queues) -> None:
    waits: list[int] = []

    def record_wait(params: dict[str, Any], **_: Any) -> None:
        waits.append(params["WaitTimeSeconds"])

    queues.sqs.meta.events.register("provide-client-params.sqs.ReceiveMessage", record_wait)
    try:
        queues.hide_received_messages()
        queues.send("alone")
        source = dataclasses.replace(queues.source, batching_window_s=1)
        QueuePoller(source, queues.sqs, RecordingFunction(), REGION).poll_once()
    finally:
        queues.sqs.meta.events.unregister("provide-client-params.sqs.ReceiveMessage", record_wait)

    assert len(waits) <= 3, f"{len(waits)} ReceiveMessage calls, waits {sorted(set(waits))}"
