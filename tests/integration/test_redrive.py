"""`sluice redrive` against template.yaml's queues in moto: parked messages go back to IngestQueue intact, and a
redriven batch is loaded exactly once by the worker, with the real TimescaleDB."""

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from uuid import UUID

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.stub import Stubber

from sluice.adapters.aws import sqs_client
from sluice.errors import StorageUnavailableError
from sluice.models.jobs import JobStatus
from sluice_tools.cli import main
from sluice_tools.local.template import StackContext
from sluice_tools.redrive import QueueRedrive, RedriveQueues, describe, queue_region

from ..lambdas import handler_module
from ..paths import REPO_ROOT
from ..worker_harness import WorkerHarness, s3_event_body
from .test_load_worker import api_batch, assert_accounted, configure, reading, stored

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

TENANT = "demo"
JOB = UUID("0b6f3f0e-8a53-4c0e-9a59-4c1d2b3a4f51")


def dead_letter_url(stack: StackContext) -> str:
    return str(stack.ref("IngestDeadLetterQueue"))


def queue_url(stack: StackContext) -> str:
    return str(stack.ref("IngestQueue"))


def urls(stack: StackContext) -> list[str]:
    return ["--queue-url", queue_url(stack), "--dlq-url", dead_letter_url(stack)]


def park(stack: StackContext, *bodies: str, **attributes: "MessageAttributeValueTypeDef") -> list[str]:
    """Put messages straight into the dead-letter queue, as SQS does after their fifth receive."""
    sqs = sqs_client()
    return [
        sqs.send_message(QueueUrl=dead_letter_url(stack), MessageBody=body, MessageAttributes=attributes)["MessageId"]
        for body in bodies
    ]


def drain(url: str) -> list[dict[str, Any]]:
    """Every message visible on a queue now (received, so hidden for a minute), less the s3:TestEvent S3 sent to
    IngestQueue when the bucket's notifications were set up."""
    found: list[dict[str, Any]] = []
    while (
        batch := sqs_client()
        .receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=60)
        .get("Messages", [])
    ):
        found.extend(message for message in batch if '"s3:TestEvent"' not in message["Body"])  # type: ignore[misc]
    return found


def bodies(stack: StackContext, count: int) -> list[str]:
    bucket = str(stack.ref("BatchBucket"))
    return [s3_event_body(bucket, f"drops/{TENANT}/export {number}.csv") for number in range(count)]


# --- moving ----------------------------------------------------------------------------------------------------------


def test_every_parked_message_goes_back_to_the_queue_intact(
    aws_stack: StackContext, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = bodies(aws_stack, 12)
    park(aws_stack, *sent[:11])
    park(aws_stack, sent[11], trace={"DataType": "String", "StringValue": "parked-by-test"})

    code = main(["redrive", *urls(aws_stack)])

    assert code == 0
    moved = drain(queue_url(aws_stack))
    assert sorted(message["Body"] for message in moved) == sorted(sent)
    (with_attribute,) = [message for message in moved if message.get("MessageAttributes")]
    assert with_attribute["Body"] == sent[11]
    assert with_attribute["MessageAttributes"] == {"trace": {"DataType": "String", "StringValue": "parked-by-test"}}
    assert drain(dead_letter_url(aws_stack)) == []
    out = capsys.readouterr().out
    assert out.rstrip().endswith(f"moved 12 message(s) from {dead_letter_url(aws_stack)} to {queue_url(aws_stack)}")
    assert f"s3://{aws_stack.ref('BatchBucket')}/drops/{TENANT}/export 0.csv  job " in out


def test_a_dry_run_lists_objects_and_jobs_and_moves_nothing(
    aws_stack: StackContext, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = str(aws_stack.ref("BatchBucket"))
    api_key = f"incoming/{TENANT}/2026/11/20/{JOB}.json"
    ids = park(aws_stack, s3_event_body(bucket, api_key), "not an S3 event", *bodies(aws_stack, 11))

    code = main(["redrive", "--dry-run", *urls(aws_stack)])

    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"dry run: 13 message(s) in {dead_letter_url(aws_stack)}; nothing moved"
    assert f"{ids[0]}  s3://{bucket}/{api_key}  job {JOB}" in lines
    assert f"{ids[1]}  (the message is not an S3 event notification (not JSON))" in lines
    assert drain(queue_url(aws_stack)) == []
    # Released at once, not after the hold: all thirteen are visible again.
    assert sorted(message["MessageId"] for message in drain(dead_letter_url(aws_stack))) == sorted(ids)


def test_max_moves_at_most_that_many_and_leaves_the_rest_parked(
    aws_stack: StackContext, capsys: pytest.CaptureFixture[str]
) -> None:
    park(aws_stack, *bodies(aws_stack, 14))

    assert main(["redrive", "--max", "12", *urls(aws_stack)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("moved 12 message(s)")
    assert main(["redrive", "--dry-run", "--max", "1", *urls(aws_stack)]) == 0

    assert capsys.readouterr().out.splitlines()[-1].startswith("dry run: 1 message(s)")
    assert len(drain(queue_url(aws_stack))) == 12
    assert len(drain(dead_letter_url(aws_stack))) == 2


def test_the_local_stacks_queues_are_found_by_stack_name(
    aws_stack: StackContext, capsys: pytest.CaptureFixture[str]
) -> None:
    park(aws_stack, *bodies(aws_stack, 2))
    # moto in-process answers on AWS's own endpoint; `make run`'s would be http://127.0.0.1:4566.
    endpoint = "https://sqs.eu-central-1.amazonaws.com"

    code = main(["--root", str(REPO_ROOT), "redrive", "--stack-name", "sluice-test", "--endpoint-url", endpoint])

    assert code == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"moved 2 message(s) from {endpoint}/123456789012/sluice-test-IngestDeadLetterQueue"
        f" to {endpoint}/123456789012/sluice-test-IngestQueue"
    )
    assert len(drain(queue_url(aws_stack))) == 2


# --- refusing and failing --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--queue-url", "https://sqs.eu-central-1.amazonaws.com/1/q"], "pass both --queue-url and --dlq-url"),
        (["--max", "0"], "--max must be at least 1"),
    ],
)
def test_inconsistent_options_are_refused(arguments: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        main(["redrive", *arguments])


def test_a_source_queue_that_does_not_exist_leaves_every_message_parked_and_visible(
    aws_stack: StackContext, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = park(aws_stack, *bodies(aws_stack, 3))
    missing = "https://sqs.eu-central-1.amazonaws.com/123456789012/no-such-queue"

    code = main(["redrive", "--queue-url", missing, "--dlq-url", dead_letter_url(aws_stack)])

    assert code == 1
    error = capsys.readouterr().err
    assert error.startswith("sluice redrive: moved 0 message(s), then stopped: sending to the source queue: no such")
    assert sorted(message["MessageId"] for message in drain(dead_letter_url(aws_stack))) == sorted(ids)


def test_an_unreachable_local_aws_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--root", str(REPO_ROOT), "redrive", "--endpoint-url", "http://127.0.0.1:1"])

    assert code == 1
    error = capsys.readouterr().err
    assert "sluice redrive: moved 0 message(s), then stopped: receiving from the dead-letter queue failed" in error
    assert "Could not connect to the endpoint URL" in error


@pytest.fixture
def stubbed() -> Iterator[tuple["SQSClient", Stubber]]:
    """An SQS client whose answers a test scripts: SQS's partial failures, which moto never gives."""
    client = boto3.client("sqs", region_name="eu-central-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


QUEUES = RedriveQueues("https://sqs.eu-central-1.amazonaws.com/1/dlq", "https://sqs.eu-central-1.amazonaws.com/1/q")


def received(count: int) -> dict[str, Any]:
    return {
        "Messages": [
            {"MessageId": f"m{number}", "ReceiptHandle": f"r{number}", "Body": "{}", "MessageAttributes": {}}
            for number in range(count)
        ]
    }


def test_a_message_sent_but_not_deleted_counts_as_moved_and_is_reported(
    stubbed: tuple["SQSClient", Stubber],
) -> None:
    client, stubber = stubbed
    stubber.add_response("receive_message", received(2))
    failure = {"Id": "1", "SenderFault": False, "Code": "InternalError", "Message": "try again"}
    stubber.add_response("send_message_batch", {"Successful": [_sent("0")], "Failed": [failure]})
    stubber.add_response("change_message_visibility_batch", {"Successful": [{"Id": "0"}], "Failed": []})
    refused = {"Id": "0", "SenderFault": True, "Code": "ReceiptHandleIsInvalid", "Message": "expired"}
    stubber.add_response("delete_message_batch", {"Successful": [], "Failed": [refused]})
    mover = QueueRedrive(QUEUES, client, wait_seconds=0)

    with pytest.raises(StorageUnavailableError, match="1 message\\(s\\) went to the source queue but are still"):
        mover.move()

    assert [message.message_id for message in mover.moved] == ["m0"]


def test_a_message_the_queue_refused_stays_parked_and_is_reported(stubbed: tuple["SQSClient", Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_response("receive_message", received(1))
    failure = {"Id": "0", "SenderFault": True, "Code": "InvalidMessageContents", "Message": "bad"}
    stubber.add_response("send_message_batch", {"Successful": [], "Failed": [failure]})
    stubber.add_client_error("change_message_visibility_batch", "AWS.SimpleQueueService.NonExistentQueue")
    mover = QueueRedrive(QUEUES, client, wait_seconds=0)

    with pytest.raises(StorageUnavailableError, match="could not be sent to the source queue and stay parked"):
        mover.move()

    assert mover.moved == []


def test_a_refused_receive_is_a_clear_error(stubbed: tuple["SQSClient", Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("receive_message", "AccessDenied", "not allowed")

    with pytest.raises(StorageUnavailableError, match=r"receiving from the dead-letter queue failed: .*AccessDenied"):
        QueueRedrive(QUEUES, client, wait_seconds=0).parked()


def _sent(entry_id: str) -> dict[str, str]:
    return {"Id": entry_id, "MessageId": f"new-{entry_id}", "MD5OfMessageBody": "0" * 32}


def test_queue_urls_name_their_region() -> None:
    assert queue_region("https://sqs.us-west-2.amazonaws.com/123456789012/q") == "us-west-2"
    assert queue_region("http://127.0.0.1:4566/123456789012/q") is None


def test_a_test_event_names_no_object() -> None:
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})

    parked = describe({"MessageId": "m", "ReceiptHandle": "r", "Body": body})

    assert (parked.objects, parked.job_ids, parked.note) == ((), (), "names no object (s3:TestEvent)")


# --- end to end: parked, redriven, loaded once -----------------------------------------------------------------------


def let_sqs_park(worker: WorkerHarness, messages: list[dict[str, Any]]) -> None:
    """Receive the messages again until IngestQueue's redrive policy moves them to the dead-letter queue."""
    for message in messages:
        sqs_client().change_message_visibility(
            QueueUrl=worker.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    while sqs_client().receive_message(QueueUrl=worker.queue_url, VisibilityTimeout=0).get("Messages"):
        pass


def test_a_parked_batch_is_redriven_and_loaded_exactly_once(
    worker: WorkerHarness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    system_id = UUID(str(worker.query("INSERT INTO systems (tenant_id, name) VALUES ('demo', 'p') RETURNING id")[0][0]))
    # Given a batch whose fifth receive crashed after its first chunk committed: its job failed, its message parked.
    configure(monkeypatch, SLUICE_CHUNK_READINGS="2")
    failing = handler_module("LoadWorkerFunction")
    worker.module, healthy = failing, worker.module
    worker.crash_after_chunk(0)
    job_id = api_batch(worker, system_id, [reading(i) for i in range(5)] + [reading(0)])
    messages = worker.receive_objects()
    for message in messages:
        message["Attributes"]["ApproximateReceiveCount"] = "5"
    with pytest.raises(BatchProcessingError, match="crash after chunk 0"):
        worker.invoke(worker.event(messages))
    failing.get_service().connector.close()
    worker.module = healthy
    worker.crash_after_chunk(None)
    let_sqs_park(worker, messages)
    assert worker.job(job_id).status is JobStatus.FAILED
    chunk_0 = worker.query("SELECT committed_at FROM ingest_ledger WHERE job_id = %s AND chunk_no = 0", job_id)
    capsys.readouterr()  # the worker's logs and metrics

    # When it is redriven and the worker takes it
    assert main(["redrive", *urls(worker.stack)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{messages[0]['MessageId']}  s3://{worker.bucket}/{worker.job(job_id).object_key}  job {job_id}",
        f"moved 1 message(s) from {dead_letter_url(worker.stack)} to {worker.queue_url}",
    ]
    assert worker.deliver() == {"batchItemFailures": []}

    # Then the job resumed after its committed chunk and every reading landed once
    assert_accounted(worker, job_id, total=6)
    assert stored(worker, job_id) == 5
    assert worker.query("SELECT chunk_no FROM ingest_ledger WHERE job_id = %s ORDER BY 1", job_id) == [(0,), (1,), (2,)]
    assert worker.query("SELECT committed_at FROM ingest_ledger WHERE job_id = %s AND chunk_no = 0", job_id) == chunk_0
    assert worker.job(job_id).error_message is None  # the parked job's "gave up after 5 attempts" is gone

    # And a second copy (a redrive that died between send and delete) changes nothing
    completed_at = worker.job(job_id).completed_at
    park(worker.stack, messages[0]["Body"])
    assert main(["redrive", *urls(worker.stack)]) == 0
    assert worker.deliver() == {"batchItemFailures": []}
    assert worker.job(job_id).completed_at == completed_at
    assert_accounted(worker, job_id, total=6)
