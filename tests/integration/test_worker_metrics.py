"""What the pipeline tells CloudWatch and its logs about a known batch: the EMF documents LoadWorkerFunction and
IngestApiFunction print (counts, quarantine reasons, latency, batch sizes), and the job id on every log line the
worker writes for a message."""

import io
import json
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest

from sluice.adapters.aws import sqs_client
from sluice.settings import get_ingest_api_settings
from sluice_tools.local.template import StackContext, function_environment

from ..api_client import call, claims
from ..lambdas import handler_module
from ..worker_harness import WorkerHarness, s3_event_body
from .test_load_worker import api_batch, csv_drop, reading

Documents = list[dict[str, Any]]


@pytest.fixture
def system_id(worker: WorkerHarness) -> UUID:
    return UUID(str(worker.query("INSERT INTO systems (tenant_id, name) VALUES ('demo', 'p') RETURNING id")[0][0]))


@pytest.fixture
def log_lines(worker: WorkerHarness, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Documents]:
    """The worker's log lines from now on. Powertools' handler keeps the stream it was first made with, so it is
    pointed at a buffer of this test's own."""
    buffer = io.StringIO()
    monkeypatch.setattr(worker.module.logger.registered_handler, "stream", buffer)
    return lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]


def emf_documents(output: str) -> Documents:
    """The CloudWatch embedded metric format documents among printed lines."""
    documents = [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "Sluice"
        assert document["service"] == "sluice"
    return documents


def metric(documents: Documents, name: str, dimensions: tuple[str, ...] = ("service",)) -> tuple[str, list[float]]:
    """A metric's unit and values, from the one document that has it under exactly ``dimensions``."""
    (found,) = [
        (entry["Unit"], document[name])
        for document in documents
        for directive in document["_aws"]["CloudWatchMetrics"]
        if directive["Dimensions"] == [list(dimensions)]
        for entry in directive["Metrics"]
        if entry["Name"] == name
    ]
    return found


def by_reason(documents: Documents) -> dict[str, float]:
    found: dict[str, float] = {}
    for document in documents:
        if document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["reason", "service"]]:
            unit, (value,) = metric([document], "QuarantinedReadings", ("reason", "service"))
            assert unit == "Count"
            assert document["reason"] not in found  # one document per reason and invocation
            found[document["reason"]] = value
    return found


# --- LoadWorkerFunction ----------------------------------------------------------------------------------------------


def test_a_known_batch_and_drop_publish_counts_sizes_latency_and_reasons(
    worker: WorkerHarness, system_id: UUID, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an API batch with every reason but system_not_found, and a drop with two bad rows of three
    mixed = [
        reading(0),
        reading(1, unit="psi"),
        reading(2, value=950.0),
        reading(3, quality=20),
        reading(4, timestamp="2026-11-20T08:00:00"),
        reading(0),
        "not a reading",
        {"sensor_id": "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8", "timestamp": reading(7)["timestamp"], "value": 1.0},
        reading(8),
    ]
    batch_job = api_batch(worker, system_id, mixed)
    rows = [{"system_id": system_id} | reading(20), {"system_id": system_id} | reading(21, value=-3.0)]
    rows.append({"system_id": uuid4()} | reading(22))
    worker.put("drops/demo/metrics.csv", csv_drop(rows))
    capsys.readouterr()

    # When one invocation handles both (and S3's test event, which names no object)
    assert worker.deliver() == {"batchItemFailures": []}

    # Then the invocation's document carries each job's counts, size and latency
    documents = emf_documents(capsys.readouterr().out)
    assert metric(documents, "ReceivedMessages") == ("Count", [3.0])
    assert metric(documents, "JobsCompleted") == ("Count", [1.0, 1.0])
    unit, inserted = metric(documents, "InsertedReadings")
    assert (unit, sorted(inserted)) == ("Count", [1.0, 2.0])
    assert sorted(metric(documents, "QuarantinedReadings")[1]) == [2.0, 7.0]
    assert sorted(metric(documents, "DuplicateReadings")[1]) == [0.0, 1.0]
    assert sorted(metric(documents, "ReadingsPerObject")[1]) == [3.0, 9.0]
    jobs = [worker.job(batch_job), worker.job_by_key("drops/demo/metrics.csv")]
    latencies = []
    for job in jobs:
        assert job.completed_at is not None
        latencies.append(float(int((job.completed_at - job.created_at).total_seconds() * 1000)))
    unit, published = metric(documents, "JobLatencyMs")
    assert (unit, sorted(published)) == ("Milliseconds", sorted(latencies))
    # And one document per reason, summed over the invocation, adding up to the quarantined readings
    assert by_reason(documents) == {
        "duplicate": 1.0,
        "invalid_timestamp": 1.0,
        "invalid_unit": 1.0,
        "low_quality": 1.0,
        "out_of_range": 2.0,
        "parse_error": 2.0,
        "system_not_found": 1.0,
    }
    assert sum(by_reason(documents).values()) == 9.0


def test_a_clean_batch_publishes_no_reasons(
    worker: WorkerHarness, system_id: UUID, capsys: pytest.CaptureFixture[str]
) -> None:
    api_batch(worker, system_id, [reading(i) for i in range(4)])
    capsys.readouterr()

    worker.deliver()

    documents = emf_documents(capsys.readouterr().out)
    assert metric(documents, "QuarantinedReadings") == ("Count", [0.0])
    assert metric(documents, "ReadingsPerObject") == ("Count", [4.0])
    assert by_reason(documents) == {}


def test_every_log_line_of_a_message_carries_its_job_id_and_no_other(
    worker: WorkerHarness, system_id: UUID, log_lines: Callable[[], Documents]
) -> None:
    # Given a batch that loads, a drop whose bucket is gone (a fault: retried) and a message that names no object
    good_job = api_batch(worker, system_id, [reading(0)])
    for body in (s3_event_body("no-such-bucket", "drops/demo/lost.csv"), "not an S3 event"):
        sqs_client().send_message(QueueUrl=worker.queue_url, MessageBody=body)
    received = worker.receive_objects()
    messages = [next(m for m in received if marker in m["Body"]) for marker in ("incoming", "no-such-bucket", "not an")]

    # When one invocation handles the three
    response = worker.invoke(worker.event(messages))

    # Then each line written for a message carries that message's job, under both keys, and nothing leaks on
    (failed,) = response["batchItemFailures"]
    lines = [(line["message"].split(":")[0], line.get("job_id"), line.get("correlation_id")) for line in log_lines()]
    lost_job = str(worker.job_by_key("drops/demo/lost.csv").job_id)
    assert lines == [
        ("object handled", str(good_job), str(good_job)),
        ("message failed", lost_job, lost_job),
        ("object handled", None, None),
    ]
    assert failed["itemIdentifier"] == messages[1]["MessageId"]
    assert "job_id" not in worker.module.logger.get_current_keys()


# --- IngestApiFunction ------------------------------------------------------------------------------------------------


def test_an_accepted_batch_publishes_its_size_once_and_logs_its_job(
    aws_stack: StackContext, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in function_environment(aws_stack, "IngestApiFunction").items():
        monkeypatch.setenv(name, value)
    get_ingest_api_settings.cache_clear()
    api = handler_module("IngestApiFunction")
    buffer = io.StringIO()
    monkeypatch.setattr(api.logger.registered_handler, "stream", buffer)
    body = {"system_id": "3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01", "readings": [reading(i) for i in range(7)]}
    verified, headers = claims("ingest:write"), {"idempotency-key": "metrics-1"}

    first = call(api, "POST", "/api/v1/data/ingest", verified=verified, body=body, headers=headers)
    first_documents = emf_documents(capsys.readouterr().out)
    replay = call(api, "POST", "/api/v1/data/ingest", verified=verified, body=body, headers=headers)
    replay_documents = emf_documents(capsys.readouterr().out)

    assert (first.status, replay.status) == (202, 202)
    assert metric(first_documents, "ReadingsPerBatch") == ("Count", [7.0])
    assert metric(first_documents, "AcceptedReadings") == ("Count", [7.0])
    assert metric(replay_documents, "AcceptedReadings") == ("Count", [7.0])
    with pytest.raises(ValueError, match="not enough values"):
        metric(replay_documents, "ReadingsPerBatch")  # a replay is not a new batch
    (accepted, _) = [json.loads(line) for line in buffer.getvalue().splitlines() if "batch accepted" in line]
    assert accepted["job_id"] == accepted["correlation_id"] == first.body["job_id"]
    get_ingest_api_settings.cache_clear()
