"""JobEventsFunction against the real TimescaleDB, as a login user of sluice_notifier: a finished job's stream
record becomes one delivery per subscription that asked for it, however often the stream delivers it."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from sluice.adapters.dynamodb import job_item
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice.services.job_events import JobEventsService, build_job_events_service
from sluice.settings import JobEventsSettings
from sluice_tools.local.template import StackContext, function_environment

from ..lambdas import FakeLambdaContext, handler_module
from ..logins import group_login

pytestmark = pytest.mark.db

NOW = datetime(2026, 12, 5, 12, 30, tzinfo=UTC)


@pytest.fixture
def service(aws_stack: StackContext, migrated_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobEventsService]:
    """The function's service as its role; the handler runs with the template's environment."""
    for name, value in function_environment(aws_stack, "JobEventsFunction").items():
        monkeypatch.setenv(name, value)
    with group_login(migrated_db, "NotifierDatabaseSecretArn", "sluice_notifier", "notifier") as dsn:
        built = build_job_events_service(JobEventsSettings(db_dsn=dsn))
        yield built
        built.connector.close()


def owner(dsn: str, query: Any, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(query, params or None)
        return cursor.fetchall() if cursor.description else []


def subscribe(dsn: str, tenant: str, events: list[str]) -> None:
    owner(dsn, "INSERT INTO webhooks (tenant_id, url, events, created_by) VALUES (%s, 'http://127.0.0.1:9/', %s, 'a')",
          tenant, events)  # fmt: skip


def finishing(tenant: str, status: JobStatus) -> dict[str, Any]:
    before = Job.model_validate({
        "job_id": uuid4(), "tenant_id": tenant, "source": JobSource.API, "status": JobStatus.PROCESSING,
        "created_by": "device-7", "bucket": "b", "object_key": "incoming/x.json", "created_at": NOW,
        "expires_at": 1_900_000_000,
    })  # fmt: skip
    after = Job.model_validate(before.model_dump() | {"status": status, "completed_at": NOW, "total_readings": 5})
    return {
        "eventName": "MODIFY",
        "eventSource": "aws:dynamodb",
        "dynamodb": {"OldImage": job_item(before), "NewImage": job_item(after), "SequenceNumber": "1"},
    }


def test_a_finished_job_is_announced_once_to_each_subscription_asking_even_when_redelivered(
    service: JobEventsService, migrated_db: str
) -> None:
    handler = handler_module("JobEventsFunction").lambda_handler
    subscribe(migrated_db, "acme", ["job.completed", "job.failed"])
    subscribe(migrated_db, "acme", ["job.failed"])
    subscribe(migrated_db, "acme", ["alarm.raised"])
    subscribe(migrated_db, "globex", ["job.completed", "job.failed"])
    completed, failed = finishing("acme", JobStatus.COMPLETED), finishing("acme", JobStatus.FAILED)
    event = {"Records": [completed, failed]}

    first = handler(event, FakeLambdaContext(), service=service)
    again = handler(event, FakeLambdaContext(), service=service)

    assert (first["announced"], first["deliveries"]) == (2, 3)
    assert (again["announced"], again["deliveries"]) == (2, 0)
    rows = owner(
        migrated_db, "SELECT tenant_id, event_type, event_key, body FROM webhook_deliveries ORDER BY event_type"
    )
    assert [(tenant, kind) for tenant, kind, _, _ in rows] == [
        ("acme", "job.completed"), ("acme", "job.failed"), ("acme", "job.failed")]  # fmt: skip
    body = json.loads(rows[0][3])
    job_id = completed["dynamodb"]["NewImage"]["job_id"]["S"]
    assert (body["type"], body["data"]["job_id"], body["data"]["total_readings"]) == ("job.completed", job_id, 5)
    assert rows[0][2] == f"job.completed:{job_id}"


def test_a_batch_the_database_refuses_fails_whole_and_its_retry_writes_it(service: JobEventsService,
                                                                          migrated_db: str) -> None:  # fmt: skip
    handler = handler_module("JobEventsFunction").lambda_handler
    subscribe(migrated_db, "acme", ["job.completed"])
    event = {"Records": [finishing("acme", JobStatus.COMPLETED)]}
    owner(migrated_db, "REVOKE INSERT ON webhook_deliveries FROM sluice_notifier")

    with pytest.raises(Exception, match="permission denied"):
        handler(event, FakeLambdaContext(), service=service)
    owner(migrated_db, "GRANT INSERT ON webhook_deliveries TO sluice_notifier")

    assert handler(event, FakeLambdaContext(), service=service)["deliveries"] == 1
