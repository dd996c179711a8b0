"""Alerts and webhooks end to end on `make run`'s stack: a subscription made through the API, readings posted
through the ingest API, AlertEvaluatorFunction invoked as its schedule does, and the twin's every-minute
WebhookDispatcherFunction sending to a real receiver on this machine that verifies every signature.

Each test counts what a receiver keeps (it drops a repeated webhook-id, as the Standard Webhooks specification tells
it to) and also what arrived at all: nothing may be missing, and nothing may arrive twice."""

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus
from uuid import uuid4

import pytest

from ..stack_harness import (
    SYSTEM,
    RunningStack,
    eventually,
    finished_job,
    http,
    minute_text,
    running_stack,
    token,
)
from ..webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.db

STACK = "sluice-notify"
ALL_EVENTS = ["alarm.raised", "alarm.cleared", "alarm.acknowledged", "job.completed", "job.failed"]
SCOPES = "ingest:write jobs:read alerts:read alerts:write"
# Long enough for the twin's scheduled dispatcher, which always has a run listening, and for a job to land.
DELIVERY_S = 90


@pytest.fixture(scope="module")
def stack(server_dsn: str) -> Iterator[RunningStack]:
    with running_stack(server_dsn, STACK) as running:
        yield running


def subscribe(stack: RunningStack, bearer: str, receiver: WebhookReceiver, path: str) -> dict[str, Any]:
    """A subscription to every event, through the API; the receiver learns its secret to verify with."""
    made = http("POST", f"{stack.api}/api/v1/webhooks", bearer, {"url": receiver.url_for(path), "events": ALL_EVENTS})
    assert made.status == 201, made.body
    receiver.url_for(path, made.body["secret"])
    subscription: dict[str, Any] = made.body
    return subscription


def post_readings(stack: RunningStack, bearer: str, sensor: str, readings: list[tuple[str, float]]) -> str:
    """A batch through the ingest API, landed; its job id."""
    body = {
        "system_id": SYSTEM,
        "readings": [
            {"sensor_id": sensor, "timestamp": at, "value": value, "unit": "bar", "quality": 95}
            for at, value in readings
        ],
    }
    accepted = http("POST", f"{stack.api}/api/v1/data/ingest", bearer, body)
    assert accepted.status == 202, accepted.body
    job_id: str = accepted.body["job_id"]
    assert finished_job(stack, bearer, job_id)["status"] == "completed"
    return job_id


def queue_idle(stack: RunningStack) -> bool:
    """Nothing waiting on IngestQueue and nothing in flight."""
    attributes = stack.sqs().get_queue_attributes(
        QueueUrl=stack.names().ref("IngestQueue"),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(value == "0" for value in attributes.values())


def evaluate(stack: RunningStack) -> dict[str, Any]:
    """One run of AlertEvaluatorFunction, as its schedule invokes it."""
    invoked = stack.invoke("AlertEvaluatorFunction", "alert-evaluator-schedule.json")
    assert invoked.returncode == 0, invoked.stderr
    result: dict[str, Any] = json.loads(invoked.stdout)
    assert result["failed"] == 0, result
    return result


def kept(receiver: WebhookReceiver, path: str) -> list[tuple[str, str]]:
    """(type, key of what it is about) of what the receiver kept, in arrival order."""
    return [
        (d.payload["type"], d.payload["data"].get("id") or d.payload["data"]["job_id"]) for d in receiver.accepted(path)
    ]


def wait_kept(receiver: WebhookReceiver, path: str, count: int) -> list[tuple[str, str]]:
    eventually(lambda: True if len(receiver.accepted(path)) >= count else None, DELIVERY_S, f"{count} deliveries")
    return kept(receiver, path)


def test_a_threshold_alarm_raises_once_is_acknowledged_and_clears_each_announced_once(
    stack: RunningStack, webhook_receiver: WebhookReceiver
) -> None:
    bearer = token(stack, scope=SCOPES)
    path, sensor = "/threshold", str(uuid4())
    subscribe(stack, bearer, webhook_receiver, path)
    rule = {
        "name": f"high pressure {sensor[:8]}", "system_id": SYSTEM, "sensor_id": sensor, "unit": "bar",
        "condition": "above", "threshold": 300.0, "clear_threshold": 250.0, "for_seconds": 180,
        "severity": "critical",
    }  # fmt: skip
    made = http("POST", f"{stack.api}/api/v1/alert-rules", bearer, rule)
    assert made.status == 201, made.body

    # Three minutes above the threshold: one alarm, however often the rules are evaluated.
    first_job = post_readings(stack, bearer, sensor, [(minute_text(n), 350.0) for n in (5, 4, 3)])
    evaluate(stack)
    evaluate(stack)
    arrived = wait_kept(webhook_receiver, path, 2)
    assert Counter(kind for kind, _ in arrived) == {"job.completed": 1, "alarm.raised": 1}
    [alarm_id] = [about for kind, about in arrived if kind == "alarm.raised"]
    assert ("job.completed", first_job) in arrived

    acknowledged = http("POST", f"{stack.api}/api/v1/alarms/{alarm_id}/acknowledge", bearer, {"note": "on it"})
    assert acknowledged.status == 200, acknowledged.body
    wait_kept(webhook_receiver, path, 3)

    # A minute back under the clear threshold clears it.
    second_job = post_readings(stack, bearer, sensor, [(minute_text(2), 200.0)])
    evaluate(stack)
    arrived = wait_kept(webhook_receiver, path, 5)

    assert Counter(kind for kind, _ in arrived) == {
        "job.completed": 2, "alarm.raised": 1, "alarm.acknowledged": 1, "alarm.cleared": 1}  # fmt: skip
    assert ("job.completed", second_job) in arrived
    assert all(delivery.verified for delivery in webhook_receiver.received(path))
    assert len(webhook_receiver.received(path)) == len(webhook_receiver.distinct_ids(path)) == 5
    shown = http("GET", f"{stack.api}/api/v1/alarms/{alarm_id}", bearer)
    assert shown.body["status"] == "cleared"
    assert shown.body["acknowledged_by"] == "e2e-operator"
    assert [step["event"] for step in shown.body["history"]] == ["raised", "acknowledged", "cleared"]


def test_a_silent_sensor_raises_and_a_new_reading_clears_it(
    stack: RunningStack, webhook_receiver: WebhookReceiver
) -> None:
    bearer = token(stack, scope=SCOPES)
    path, sensor = "/silent", str(uuid4())
    subscribe(stack, bearer, webhook_receiver, path)
    rule = {"name": f"silent {sensor[:8]}", "kind": "silent", "system_id": SYSTEM, "sensor_id": sensor,
            "after_seconds": 120, "severity": "warning"}  # fmt: skip
    assert http("POST", f"{stack.api}/api/v1/alert-rules", bearer, rule).status == 201

    post_readings(stack, bearer, sensor, [(minute_text(4), 120.0)])
    evaluate(stack)
    wait_kept(webhook_receiver, path, 2)
    post_readings(stack, bearer, sensor, [(minute_text(0, second=0), 121.0)])
    evaluate(stack)
    arrived = wait_kept(webhook_receiver, path, 4)

    assert Counter(kind for kind, _ in arrived) == {"job.completed": 2, "alarm.raised": 1, "alarm.cleared": 1}


def test_a_failed_job_is_announced_once_even_when_its_message_comes_again(
    stack: RunningStack, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    bearer = token(stack, scope=SCOPES)
    path = "/jobs"
    subscribe(stack, bearer, webhook_receiver, path)
    bucket = stack.names().ref("BatchBucket")
    drop = tmp_path / f"broken-{uuid4().hex[:6]}.csv.gz"
    drop.write_bytes(b"this is not gzip")
    queue = stack.names().ref("IngestQueue")
    sent: list[str] = []

    copied = stack.aws("s3", "cp", str(drop), f"s3://{bucket}/drops/demo/")
    assert copied.returncode == 0, copied.stderr
    [(kind, job_id)] = wait_kept(webhook_receiver, path, 1)
    assert kind == "job.failed"
    assert finished_job(stack, bearer, job_id)["status"] == "failed"

    # The same S3 event again, as a redelivery would bring it (moto's events carry no versionId, so a drop's job
    # id comes from the ETag): the job is finished, and says so once.
    key = f"drops/demo/{drop.name}"
    head = stack.s3().head_object(Bucket=bucket, Key=key)
    found = {"key": quote_plus(key), "size": head["ContentLength"], "eTag": head["ETag"].strip('"')}
    record = {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
              "s3": {"bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": found}}  # fmt: skip
    for _ in range(3):
        sent.append(
            stack.sqs().send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": [record]}))["MessageId"]
        )
    time.sleep(15)

    assert kept(webhook_receiver, path) == [("job.failed", job_id)]
    assert len(webhook_receiver.received(path)) == 1
    assert len(sent) == 3
