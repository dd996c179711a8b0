"""Notifications under fire: the evaluator and the dispatcher killed mid-run on the real local stack, and not one
notification lost or duplicated.

The stack runs with two fault switches, each firing once:

- ``SLUICE_FAULT_EXIT_IN_EVALUATION_ONCE``: AlertEvaluatorFunction's process dies after writing a tenant's alarms,
  history and deliveries and before its commit (the transaction rolls back: nothing may be half-announced);
- ``SLUICE_FAULT_EXIT_AFTER_WEBHOOK_SEND_ONCE``: WebhookDispatcherFunction's process dies right after a receiver
  accepted a delivery and before the dispatcher recorded it (the delivery's lease runs out and it is sent again,
  with the same webhook-id).

25 sensors go above a tenant-wide rule and come back: 25 raisings and 25 clearings, and two jobs completed. The
oracle is the receiver (it verifies every signature and drops a repeated webhook-id, as the Standard Webhooks
specification tells receivers to) and the database: every change announced exactly once to the receiver, every
delivery ``delivered``, and a raw repeat only for what was in flight when the dispatcher died.
"""

import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest

from ..paths import REPO_ROOT
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
from .figures import record_figures

pytestmark = pytest.mark.db

STACK = "sluice-notify-faults"
SENSORS = 25
SCOPES = "ingest:write jobs:read alerts:read alerts:write"
LOG_DIR = REPO_ROOT / ".local" / "logs"


@pytest.fixture(scope="module")
def markers() -> Iterator[tuple[Path, Path]]:
    with tempfile.TemporaryDirectory() as scratch:
        yield Path(scratch) / "evaluator-killed", Path(scratch) / "dispatcher-killed"


@pytest.fixture(scope="module")
def stack(server_dsn: str, markers: tuple[Path, Path]) -> Iterator[RunningStack]:
    evaluator_marker, dispatcher_marker = markers
    env = {
        "SLUICE_FAULT_EXIT_IN_EVALUATION_ONCE": str(evaluator_marker),
        "SLUICE_FAULT_EXIT_AFTER_WEBHOOK_SEND_ONCE": str(dispatcher_marker),
    }
    # A short lease, so the delivery the killed dispatcher had sent goes out again within seconds, not a minute.
    dispatcher = {"SLUICE_WEBHOOK_TIMEOUT_SECONDS": "4", "SLUICE_WEBHOOK_LEASE_SECONDS": "8"}
    with running_stack(server_dsn, STACK, env=env, prefix="sluice_notify",
                       function_env={"WebhookDispatcherFunction": dispatcher}) as running:  # fmt: skip
        yield running


def evaluate(stack: RunningStack) -> bool:
    """One run of AlertEvaluatorFunction as its schedule invokes it; whether it completed."""
    invoked = stack.invoke("AlertEvaluatorFunction", "alert-evaluator-schedule.json")
    return invoked.returncode == 0 and json.loads(invoked.stdout)["failed"] == 0


def injected_deaths(function: str) -> int:
    log = LOG_DIR / f"{function}.log"
    return log.read_bytes().count(b"injected fault:") if log.exists() else 0


def test_the_evaluator_and_the_dispatcher_killed_mid_run_lose_and_duplicate_no_notification(
    stack: RunningStack, webhook_receiver: WebhookReceiver, markers: tuple[Path, Path]
) -> None:
    evaluator_marker, dispatcher_marker = markers
    deaths_before = {f: injected_deaths(f) for f in ("AlertEvaluatorFunction", "WebhookDispatcherFunction")}
    bearer = token(stack, scope=SCOPES)
    made = http("POST", f"{stack.api}/api/v1/webhooks", bearer,
                {"url": webhook_receiver.url_for("/hook"), "events": ["alarm.raised", "alarm.cleared",
                                                                      "job.completed", "job.failed"]})  # fmt: skip
    assert made.status == 201, made.body
    webhook_receiver.url_for("/hook", made.body["secret"])
    rule = {"name": "pressure high", "unit": "bar", "condition": "above", "threshold": 300.0,
            "clear_threshold": 250.0, "for_seconds": 120, "severity": "critical"}  # fmt: skip
    assert http("POST", f"{stack.api}/api/v1/alert-rules", bearer, rule).status == 201
    sensors = [str(uuid4()) for _ in range(SENSORS)]

    def post(minutes: tuple[int, ...], value: float) -> str:
        readings = [{"sensor_id": sensor, "timestamp": minute_text(n, 15), "value": value, "unit": "bar", "quality": 95}
                    for sensor in sensors for n in minutes]  # fmt: skip
        accepted = http("POST", f"{stack.api}/api/v1/data/ingest", bearer, {"system_id": SYSTEM, "readings": readings})
        assert accepted.status == 202, accepted.body
        assert finished_job(stack, bearer, accepted.body["job_id"])["status"] == "completed"
        return str(accepted.body["job_id"])

    jobs = [post((5, 4), 350.0)]
    # The twin's own every-minute run (whose processes carry the fault switches) dies before its commit; then a
    # run as `sluice invoke` makes it (a process of its own, without them) raises every alarm.
    eventually(lambda: True if evaluator_marker.exists() else None, 150, "the scheduled evaluator's death")
    eventually(lambda: True if evaluate(stack) else None, 120, "a run that completes")
    jobs.append(post((3,), 200.0))
    eventually(lambda: True if evaluate(stack) else None, 120, "the clearing run")

    expected = 2 * SENSORS + len(jobs)
    eventually(lambda: True if len(webhook_receiver.accepted("/hook")) >= expected else None, 240, "every delivery")
    with psycopg.connect(stack.dsn) as conn:
        statuses: dict[str, int] = dict(
            conn.execute("SELECT status, count(*) FROM webhook_deliveries GROUP BY status").fetchall()
        )
        alarms = conn.execute("SELECT status, count(*) FROM alarms GROUP BY status").fetchall()
        history = conn.execute("SELECT event, count(*) FROM alarm_events GROUP BY event ORDER BY event").fetchall()

    accepted = webhook_receiver.accepted("/hook")
    received = webhook_receiver.received("/hook")
    kinds = Counter(delivery.payload["type"] for delivery in accepted)
    about = Counter((d.payload["type"], d.payload["data"].get("id") or d.payload["data"]["job_id"]) for d in accepted)
    repeats = len(received) - len(webhook_receiver.distinct_ids("/hook"))
    deaths = {f: injected_deaths(f) - before for f, before in deaths_before.items()}
    record_figures("notifications", {
        "notifications_expected": expected, "kept": len(accepted), "received": len(received),
        "repeated_webhook_ids": repeats, "evaluators_killed": deaths["AlertEvaluatorFunction"],
        "dispatchers_killed": deaths["WebhookDispatcherFunction"], "deliveries_delivered": statuses.get("delivered", 0),
        "deliveries_not_delivered": sum(n for status, n in statuses.items() if status != "delivered")})  # fmt: skip

    assert evaluator_marker.exists()
    assert dispatcher_marker.exists()
    assert deaths == {"AlertEvaluatorFunction": 1, "WebhookDispatcherFunction": 1}
    assert kinds == {"alarm.raised": SENSORS, "alarm.cleared": SENSORS, "job.completed": len(jobs)}
    assert all(count == 1 for count in about.values())  # no change announced twice under two ids
    assert len(accepted) == expected  # nothing lost
    assert all(delivery.verified for delivery in received)
    # What the killed dispatcher had sent and not recorded comes again with its webhook-id (at most its two
    # deliveries in flight); a receiver drops it as the specification says.
    assert repeats <= 2
    assert statuses == {"delivered": expected}
    assert alarms == [("cleared", SENSORS)]
    assert history == [("cleared", SENSORS), ("raised", SENSORS)]
