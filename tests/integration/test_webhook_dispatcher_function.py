"""WebhookDispatcherFunction as Lambda runs it: the template's environment, a database secret in moto, a scheduled
event; it listens for new deliveries while its time lasts and stops when its reserve is left."""

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import psycopg
import pytest

from sluice.adapters.outbox import enqueue
from sluice.domain.webhooks import Announcement, new_secret
from sluice.settings import get_webhook_dispatcher_settings
from sluice_tools.local.template import StackContext, function_environment

from ..lambdas import FakeLambdaContext, handler_module, load_event
from ..webhook_receiver import WebhookReceiver

RESERVE_MS = 1_000


class CountdownContext(FakeLambdaContext):
    """A Lambda context whose remaining time runs down with the clock, as Lambda's does."""

    def __init__(self, remaining_ms: int) -> None:
        super().__init__()
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


@pytest.fixture
def dispatcher_function(
    aws_stack: StackContext, database_secret: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    """The handler module, imported cold with the template's environment, loopback targets allowed (as the local
    stack allows them) and a reserve of a second, so that a run lasts a few seconds."""
    for name, value in function_environment(aws_stack, "WebhookDispatcherFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", database_secret)
    monkeypatch.setenv("SLUICE_WEBHOOK_ALLOW_LOCAL", "true")
    monkeypatch.setenv("SLUICE_WEBHOOK_RESERVE_MS", str(RESERVE_MS))
    monkeypatch.setenv("SLUICE_WEBHOOK_TIMEOUT_SECONDS", "1")
    get_webhook_dispatcher_settings.cache_clear()
    module = handler_module("WebhookDispatcherFunction")
    yield module
    module.get_service().close()
    get_webhook_dispatcher_settings.cache_clear()


def test_a_run_sends_deliveries_written_while_it_listens_and_stops_at_its_reserve(
    dispatcher_function: ModuleType, conn: psycopg.Connection[Any], webhook_receiver: WebhookReceiver
) -> None:
    secret = new_secret()
    row = conn.execute(
        "INSERT INTO webhooks (tenant_id, url, events, created_by) VALUES ('acme', %s, %s, 'test') RETURNING id",
        (webhook_receiver.url_for("/acme", secret), ["alarm.raised"]),
    ).fetchone()
    assert row is not None
    conn.execute("INSERT INTO webhook_secrets (webhook_id, secret) VALUES (%s, %s)", (row[0], secret))
    answers: list[dict[str, Any]] = []
    context = CountdownContext(remaining_ms=4_000)
    run = threading.Thread(
        target=lambda: answers.append(
            dispatcher_function.lambda_handler(load_event("webhook-dispatcher-schedule.json"), context)
        )
    )

    run.start()
    time.sleep(0.5)  # the run is asleep on its notification channel by now
    committed = []
    for n in range(10):
        enqueue(conn, Announcement("acme", "alarm.raised", f"alarm.raised:{n}", datetime.now(UTC), {"n": n}))
        committed.append(time.time())  # autocommit: the delivery and its notification are committed
        time.sleep(0.05)
    received = webhook_receiver.wait_for(10, timeout_s=5)
    run.join(10)

    assert all(delivery.verified for delivery in received)
    latencies = sorted(
        d.received_at - at
        for d, at in zip(sorted(received, key=lambda d: d.payload["data"]["n"]), committed, strict=True)
    )
    assert latencies[-1] < 1.0, latencies
    assert answers == [{"delivered": 10, "retried": 0, "failed": 0, "attempts": 10, "superseded": 0}]
    # It stopped with its reserve left, not at its deadline.
    assert context.get_remaining_time_in_millis() > RESERVE_MS / 2
