"""The DynamoDB adapters against template.yaml's tables in moto: job records and the rate limit under contention."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from sluice.adapters.aws import dynamodb_client
from sluice.adapters.dynamodb import DynamoJobStore, DynamoRequestLimiter
from sluice.domain.ratelimit import RateLimit
from sluice.errors import StorageUnavailableError
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice_tools.local.template import StackContext

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
LIMIT = RateLimit(requests=3, window_s=60)


def job(**changes: Any) -> Job:
    fields: dict[str, Any] = {
        "job_id": uuid4(),
        "tenant_id": "demo",
        "status": JobStatus.QUEUED,
        "source": JobSource.API,
        "bucket": "b",
        "object_key": "incoming/demo/x.json",
        "created_at": NOW,
        "expires_at": int(NOW.timestamp()) + 86400,
    }
    return Job(**(fields | changes))


def test_a_job_reads_back_as_written(aws_stack: StackContext) -> None:
    store = DynamoJobStore(aws_stack.refs["JobsTable"])
    written = job(total_readings=10, success_rate=0.75, processing_time_ms=1200, created_by="dev")

    store.create_job(written)

    assert store.get_job(written.job_id) == written
    assert store.get_job(uuid4()) is None


def test_a_job_id_is_never_written_twice(aws_stack: StackContext) -> None:
    store = DynamoJobStore(aws_stack.refs["JobsTable"])
    written = job()
    store.create_job(written)

    with pytest.raises(StorageUnavailableError):
        store.create_job(written)


def test_only_a_queued_job_is_failed(aws_stack: StackContext) -> None:
    store = DynamoJobStore(aws_stack.refs["JobsTable"])
    done = job(status=JobStatus.COMPLETED)
    store.create_job(done)

    with pytest.raises(StorageUnavailableError):
        store.fail_job(done.job_id, "late", NOW)
    assert store.get_job(done.job_id) == done


def test_a_missing_table_is_a_storage_fault(aws_stack: StackContext) -> None:
    store = DynamoJobStore("no-such-table")

    with pytest.raises(StorageUnavailableError):
        store.get_job(uuid4())
    with pytest.raises(StorageUnavailableError):
        DynamoRequestLimiter("no-such-table", LIMIT).admit("demo/dev", NOW)


def test_the_limit_counts_each_principal_and_forgets_after_the_window(aws_stack: StackContext) -> None:
    limiter = DynamoRequestLimiter(aws_stack.refs["RateLimitTable"], LIMIT)

    decisions = [limiter.admit("demo/dev", NOW + timedelta(seconds=second)) for second in range(4)]

    assert [decision.allowed for decision in decisions] == [True, True, True, False]
    assert limiter.admit("demo/other", NOW).allowed
    assert limiter.admit("demo/dev", NOW + timedelta(seconds=60.5)).allowed


def test_a_budget_spent_in_amounts_keeps_each_amount_and_a_request_log_keeps_its_layout(
    aws_stack: StackContext,
) -> None:
    table = aws_stack.refs["RateLimitTable"]
    rows = DynamoRequestLimiter(table, RateLimit(requests=10, window_s=60))
    requests = DynamoRequestLimiter(table, LIMIT)

    first = rows.admit("review-rows#demo/dev", NOW, 6)
    over = rows.admit("review-rows#demo/dev", NOW + timedelta(seconds=1), 5)
    fits = rows.admit("review-rows#demo/dev", NOW + timedelta(seconds=1), 4)
    requests.admit("demo/dev", NOW)

    assert (first.allowed, over.allowed, over.retry_after_s, fits.allowed) == (True, False, 59, True)
    stored = dynamodb_client().get_item(TableName=table, Key={"limit_key": {"S": "review-rows#demo/dev"}})["Item"]
    assert [value["N"] for value in stored["amounts"]["L"]] == ["6", "4"]
    # A log of single requests (ingest's, reads', reviews') is stored without amounts, as it always was.
    ingest = dynamodb_client().get_item(TableName=table, Key={"limit_key": {"S": "demo/dev"}})["Item"]
    assert set(ingest) == {"limit_key", "hits", "version", "expires_at"}


def test_a_concurrent_writer_makes_the_limiter_decide_again(aws_stack: StackContext) -> None:
    # Given another execution environment that records a request between our read and our write, each time
    table = aws_stack.refs["RateLimitTable"]
    rival = DynamoRequestLimiter(table, LIMIT, client=_fresh_client())
    races = {"left": 2}

    def race(**_: Any) -> None:
        if races["left"]:
            races["left"] -= 1
            rival.admit("demo/dev", NOW)

    client = _fresh_client()
    client.meta.events.register("before-call.dynamodb.PutItem", race)
    limiter = DynamoRequestLimiter(table, LIMIT, client=client)

    # When we admit one request, Then the rival's two and ours are all counted, and a fourth is refused
    assert limiter.admit("demo/dev", NOW).allowed
    assert not limiter.admit("demo/dev", NOW).allowed


def test_a_limiter_that_never_wins_the_race_refuses_rather_than_loops(aws_stack: StackContext) -> None:
    table = aws_stack.refs["RateLimitTable"]
    rival = DynamoRequestLimiter(table, RateLimit(requests=1000, window_s=60), client=_fresh_client())

    def race(**_: Any) -> None:
        rival.admit("demo/dev", NOW)

    client = _fresh_client()
    client.meta.events.register("before-call.dynamodb.PutItem", race)
    limiter = DynamoRequestLimiter(table, RateLimit(requests=1000, window_s=60), client=client)

    decision = limiter.admit("demo/dev", NOW)

    assert not decision.allowed
    assert decision.retry_after_s == 1


def _fresh_client() -> Any:
    import boto3  # noqa: PLC0415 (a client of its own, so its event hooks touch no other)

    return boto3.client("dynamodb", config=dynamodb_client().meta.config)
