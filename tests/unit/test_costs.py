"""The bench's cost figures: hand-worked usages priced by tests/bench/costs.py, and the ingest side measured through
IngestApiFunction's real handler against template.yaml's stack in moto."""

import json
import os
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import unquote_plus
from uuid import UUID

import pytest

from sluice.adapters.aws import dynamodb_client, s3_client, sqs_client
from sluice.adapters.dynamodb import job_from_item
from sluice_tools.local.template import StackContext

from ..bench.api_ingest import measure_ingest
from ..bench.corpus import api_batches, make_corpus
from ..bench.costs import (
    PRICES,
    PRICES_READ_ON,
    CostBreakdown,
    DynamoItemCounter,
    LambdaTally,
    Usage,
    cost_per_million,
    database_cost_per_million,
    item_size_bytes,
    metered_api_requests,
    report_lines,
    template_memory_mb,
)

MILLION = 1_000_000


def test_lambda_gb_seconds_come_from_billed_time_and_the_templates_memory() -> None:
    # Given 1,000 worker invocations of 0.1 s at LoadWorkerFunction's 1024 MB: 100 GB-s
    usage = Usage(readings=MILLION)
    for _ in range(1_000):
        usage.worker.add(0.1)

    cost = cost_per_million(usage)

    assert usage.worker.billed_s == pytest.approx(100.0)
    assert cost.lambda_gb_s == pytest.approx(100 * 0.0000133334)
    assert cost.lambda_requests == pytest.approx(1_000 * 0.20 / MILLION)


def test_each_invocation_is_billed_up_to_the_next_millisecond() -> None:
    tally = LambdaTally("IngestApiFunction")
    tally.add(0.0101)  # 10.1 ms: 11 billed
    tally.add(0.3)  # exactly 300 ms, however floating point writes it
    assert tally.invocations == 2
    assert tally.billed_s == pytest.approx(0.311)
    assert tally.gb_seconds == pytest.approx(0.311 * 1024 / 1024)


def test_memory_sizes_are_the_functions_own_or_the_globals() -> None:
    assert template_memory_mb("IngestApiFunction") == 1024
    assert template_memory_mb("LoadWorkerFunction") == 1024
    assert template_memory_mb("ConsoleFunction") == 128
    # QuarantineFunction names no MemorySize: the Globals' 512 MB applies
    assert template_memory_mb("QuarantineFunction") == 512


def test_a_smaller_function_costs_less_per_second() -> None:
    usage = Usage(readings=MILLION, worker=LambdaTally("QuarantineFunction"))
    usage.worker.add(2.0)
    assert cost_per_million(usage).lambda_gb_s == pytest.approx(1.0 * PRICES.lambda_arm_gb_second.usd)


def test_http_api_requests_are_metered_per_512_kb() -> None:
    kb512 = 512 * 1024
    assert metered_api_requests([0, 1, kb512]) == 3
    assert metered_api_requests([kb512 + 1]) == 2
    # a 10,000-reading batch of about 1.2 MB is three requests
    assert metered_api_requests([1_200_000]) == 3

    usage = Usage(readings=20_000, api_request_bytes=[1_200_000, 1_200_000])
    assert cost_per_million(usage).api_gateway == pytest.approx(6 * 1.00 / MILLION * 50)


def test_dynamodb_units_round_up_per_request() -> None:
    # Given a 1,500-byte item: 2 write units per write, 1 read unit per strongly consistent read (4 KB)
    usage = Usage(
        readings=MILLION,
        calls=Counter({"dynamodb.PutItem": 10, "dynamodb.UpdateItem": 10, "dynamodb.GetItem": 10}),
        dynamodb_item_bytes=1_500,
    )
    assert cost_per_million(usage).dynamodb == pytest.approx((40 * 0.625 + 10 * 0.125) / MILLION)

    usage.dynamodb_item_bytes = 4_097  # 5 write units, 2 read units
    assert cost_per_million(usage).dynamodb == pytest.approx((100 * 0.625 + 20 * 0.125) / MILLION)


def test_a_transaction_costs_two_units_per_item_and_needs_its_items_counted() -> None:
    usage = Usage(readings=MILLION, calls=Counter({"dynamodb.TransactWriteItems": 2}), dynamodb_item_bytes=500)
    with pytest.raises(ValueError, match="dynamodb_items"):
        cost_per_million(usage)

    usage.dynamodb_items["dynamodb.TransactWriteItems"] = 6
    assert cost_per_million(usage).dynamodb == pytest.approx(12 * 0.625 / MILLION)


@pytest.mark.parametrize("name", ["dynamodb.Scan", "kinesis.PutRecord"])
def test_a_call_without_a_price_rule_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        cost_per_million(Usage(readings=MILLION, calls=Counter({name: 1})))


def test_api_batches_pay_the_puts_gets_and_the_messages_aws_sends_for_them() -> None:
    # Given 10 batches stored by the ingest handler and loaded by the worker in one invocation
    usage = Usage(
        readings=10_000,
        calls=Counter(
            {"s3.PutObject": 10, "s3.GetObject": 10, "s3.DeleteObject": 3, "secretsmanager.GetSecretValue": 1}
        ),
        queue_message_bytes=1_500,
    )
    usage.worker.add(0.5)

    cost = cost_per_million(usage)

    # 10 PUTs and 10 GETs; deletes and the secret are free of a per-reading price
    assert cost.s3 == pytest.approx((10 * 0.005 / 1_000 + 10 * 0.0004 / 1_000) * 100)
    # S3 sends 10 messages; the poller receives the 15 KB in one request and deletes them in one
    assert cost.sqs == pytest.approx(12 * 0.40 / MILLION * 100)


def test_a_receive_is_billed_per_64_kb_of_messages() -> None:
    usage = Usage(readings=MILLION, calls=Counter({"s3.PutObject": 10}), queue_message_bytes=8 * 1024)
    usage.worker.add(1.0)
    # 10 sends, 80 KB received (2 requests), 1 delete
    assert cost_per_million(usage).sqs == pytest.approx(13 * 0.40 / MILLION)


def test_a_drop_pays_the_clients_put_and_no_api() -> None:
    usage = Usage(readings=MILLION, uploaded_objects=1, calls=Counter({"s3.GetObject": 1, "dynamodb.UpdateItem": 2}))
    usage.worker.add(8.0)

    cost = cost_per_million(usage)

    assert cost.api_gateway == 0
    assert usage.ingest.invocations == 0
    assert cost.s3 == pytest.approx(0.005 / 1_000 + 0.0004 / 1_000)
    assert cost.sqs == pytest.approx(3 * 0.40 / MILLION)  # S3's message, a receive, a delete
    assert cost.lambda_gb_s == pytest.approx(8.0 * 0.0000133334)
    assert cost.total == pytest.approx(
        cost.lambda_gb_s + cost.lambda_requests + cost.api_gateway + cost.s3 + cost.sqs + cost.dynamodb
    )


def test_costs_are_per_million_readings() -> None:
    small = Usage(readings=1_000, calls=Counter({"s3.PutObject": 1}))
    large = Usage(readings=MILLION, calls=Counter({"s3.PutObject": 1_000}))
    assert cost_per_million(small).s3 == pytest.approx(cost_per_million(large).s3)
    assert cost_per_million(small).sqs == pytest.approx(cost_per_million(large).sqs)
    with pytest.raises(ValueError, match="readings"):
        cost_per_million(Usage(readings=0))


def test_the_database_is_priced_apart_as_instance_time_and_storage() -> None:
    # Given 36 s of database work and 0.1 GiB kept for 100,000 readings: 360 s and 1 GiB per million
    database = database_cost_per_million(busy_s=36.0, stored_bytes=2**30 / 10, readings=100_000)

    assert database.busy_s == pytest.approx(360.0)
    assert database.instance_usd == pytest.approx(0.1 * 0.0816)
    assert database.storage_usd_per_month == pytest.approx(0.08)
    aws = CostBreakdown(lambda_gb_s=1.0, lambda_requests=0, api_gateway=0, s3=0, sqs=0, dynamodb=0)
    lines = report_lines({"drop": aws}, {"drop": database}, labels={"drop": "one CSV.gz drop"})
    # the AWS total stays the AWS bill's; the database is a line of its own
    assert lines[2].split()[-1] == "1.00000"
    assert "database, one CSV.gz drop (not in the total)" in lines[3]
    assert "m7g.large" in lines[3]
    assert PRICES_READ_ON.isoformat() in lines[0]
    figures = aws.as_json("drop") | database.as_json("drop")
    assert figures["cost_usd_per_million_drop"] == 1.0
    assert figures["db_usd_per_million_drop_instance"] == pytest.approx(0.00816)
    assert not any(key.startswith("cost_usd") for key in database.as_json("drop"))


def test_item_sizes_follow_dynamodbs_rules() -> None:
    item = {
        "job_id": {"S": "abc"},  # 6 + 3
        "total": {"N": "12300"},  # 5 + (3 significant digits: 2 bytes) + 1
        "flags": {"L": [{"BOOL": True}, {"NULL": True}]},  # 5 + 3 + 2 x (1 + 1)
    }
    assert item_size_bytes(item) == 9 + 8 + 12


@pytest.fixture
def ingest_stack(aws_stack: StackContext, monkeypatch: pytest.MonkeyPatch) -> StackContext:
    """The stack in moto, IngestQueue emptied of the s3:TestEvent its new notification configuration sent. Logs at
    INFO, as every other test imports the handlers: the level a handler module is imported with stays on the
    process's shared "sluice" logger, and a later test reading the handler's INFO lines would find none."""
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    sqs_client().purge_queue(QueueUrl=aws_stack.ref("IngestQueue"))
    return aws_stack


def test_multi_item_requests_have_their_items_counted(ingest_stack: StackContext) -> None:
    client, table = dynamodb_client(), ingest_stack.ref("JobsTable")
    counter = DynamoItemCounter().attach(client)
    puts = [{"Put": {"TableName": table, "Item": {"job_id": {"S": f"t{n}"}}}} for n in range(3)]
    client.transact_write_items(TransactItems=puts)  # type: ignore[arg-type]
    requests = [{"PutRequest": {"Item": {"job_id": {"S": f"b{n}"}}}} for n in range(2)]
    client.batch_write_item(RequestItems={table: requests})  # type: ignore[dict-item]
    counter.detach()
    client.batch_write_item(RequestItems={table: requests[:1]})  # type: ignore[dict-item]
    assert counter.items == Counter({"dynamodb.TransactWriteItems": 3, "dynamodb.BatchWriteItem": 2})


def test_measure_ingest_leaves_what_an_accepted_batch_leaves(ingest_stack: StackContext) -> None:
    # Given three batches of the bench corpus (each of one system's readings)
    corpus = make_corpus(300, now=datetime.now(UTC))
    batches = [(corpus.tenant, system_id, body) for system_id, body in api_batches(corpus, 100)][:3]
    limit_before = os.environ.get("SLUICE_RATE_LIMIT_REQUESTS")

    # When they go through the ingest handler
    measure = measure_ingest(ingest_stack, batches)

    # Then each has its queued job, its object under incoming/ and its S3 event on IngestQueue
    table, bucket = ingest_stack.ref("JobsTable"), ingest_stack.ref("BatchBucket")
    jobs = {job.job_id: job for job in map(job_from_item, dynamodb_client().scan(TableName=table)["Items"])}
    assert set(jobs) == set(measure.job_ids)
    assert len(jobs) == 3
    for (_, system_id, body), job_id in zip(batches, measure.job_ids, strict=True):
        job = jobs[job_id]
        readings = len(json.loads(body)["readings"])
        assert (job.status, job.system_id, job.total_readings) == ("queued", system_id, readings)
        assert job.object_key.startswith(f"incoming/{corpus.tenant}/")
        assert s3_client().get_object(Bucket=bucket, Key=job.object_key)["Body"].read() == body
    messages = sqs_client().receive_message(QueueUrl=ingest_stack.ref("IngestQueue"), MaxNumberOfMessages=10)
    keys = {unquote_plus(json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"]) for m in messages["Messages"]}
    assert keys == {job.object_key for job in jobs.values()}
    # and the counts are the handler's: a rate-limit read and write, a job write, a PUT per batch
    assert measure.calls == Counter({"dynamodb.GetItem": 3, "dynamodb.PutItem": 6, "s3.PutObject": 3})
    assert measure.tally.invocations == 3
    assert measure.tally.billed_s > 0
    assert measure.request_bytes == [len(body) for _, _, body in batches]
    assert all(isinstance(job_id, UUID) for job_id in measure.job_ids)
    # the process's environment is as it was
    assert os.environ.get("SLUICE_RATE_LIMIT_REQUESTS") == limit_before


def test_measure_ingest_refuses_to_count_a_refused_batch(ingest_stack: StackContext) -> None:
    with pytest.raises(AssertionError, match="refused"):
        measure_ingest(ingest_stack, [("bench", UUID(int=1), b'{"readings": []}')])
