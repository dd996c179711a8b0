"""The local stack's pure parts: its database secret, env.json for SAM, and the schedules."""

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sluice.adapters.timescale import dsn_from_secret
from sluice_tools.local.schedule import parse_schedule
from sluice_tools.local.stack import (
    DATABASE_LOGINS,
    ScheduledEvent,
    Scheduler,
    database_secret_arn,
    local_function_specs,
    local_parameters,
    login_dsn,
    planned_context,
    sam_env_vars,
    schedule_event,
    scheduled_events,
    secret_from_dsn,
)
from sluice_tools.local.template import StackContext, TemplateError, function_environment

from ..paths import REPO_ROOT


def test_the_local_secret_is_in_rds_layout_and_gives_back_the_dsn() -> None:
    secret = secret_from_dsn("postgresql://postgres@127.0.0.1:5433/sluice")

    assert secret == {
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": 5433,
        "username": "postgres",
        "password": "",
        "dbname": "sluice",
        "sslmode": "disable",
    }
    assert dsn_from_secret(json.dumps(secret)) == (
        "host=127.0.0.1 port=5433 user=postgres password='' dbname=sluice sslmode=disable"
    )


def test_the_secret_arn_is_partial_so_it_is_known_before_the_secret_exists() -> None:
    assert database_secret_arn("sluice-local", "eu-central-1") == (
        "arn:aws:secretsmanager:eu-central-1:123456789012:secret:sluice-local/database"
    )


def test_each_database_secret_parameter_names_a_secret_of_its_own() -> None:
    arn = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:sluice-local/"

    assert local_parameters("sluice-local", "eu-central-1") == {
        "DatabaseSecretArn": f"{arn}database",
        "WorkerDatabaseSecretArn": f"{arn}database-worker",
        "ReviewDatabaseSecretArn": f"{arn}database-reviewer",
        "SystemsDatabaseSecretArn": f"{arn}database-registrar",
        "AlertsDatabaseSecretArn": f"{arn}database-alerter",
        "NotifierDatabaseSecretArn": f"{arn}database-notifier",
        "ReadOnlyDatabaseSecretArn": f"{arn}database-reader",
        "ReadingsDatabaseSecretArn": f"{arn}database-readings",
    }
    assert [(login.user, login.group) for login in DATABASE_LOGINS] == [
        ("sluice_worker_login", "sluice_worker"),
        ("sluice_reviewer_login", "sluice_reviewer"),
        ("sluice_registrar_login", "sluice_registrar"),
        ("sluice_alerter_login", "sluice_alerter"),
        ("sluice_notifier_login", "sluice_notifier"),
        ("sluice_reader_login", "sluice_reader"),
        ("sluice_readings_login", "sluice_reader"),
    ]


def test_a_login_users_secret_keeps_the_owners_address_with_its_own_name_and_password() -> None:
    owner = "postgresql://postgres@127.0.0.1:5433/sluice"

    secret = secret_from_dsn(login_dsn(owner, DATABASE_LOGINS[0], "s3cret"))

    assert secret == secret_from_dsn(owner) | {"username": "sluice_worker_login", "password": "s3cret"}


def test_events_env_json_is_what_the_local_stack_resolves() -> None:
    context = planned_context(REPO_ROOT, moto_endpoint="http://127.0.0.1:4566")
    expected = sam_env_vars(context, "http://127.0.0.1:4566")

    assert json.loads((REPO_ROOT / "events" / "env.json").read_text()) == expected, (
        "events/env.json is stale; write it anew with:\n"
        "  .venv/bin/python -c 'import json; from pathlib import Path; from sluice_tools.local.stack import *;"
        ' print(json.dumps(sam_env_vars(planned_context(Path("."), moto_endpoint="http://127.0.0.1:4566"),'
        ' "http://127.0.0.1:4566"), indent=2))\' > events/env.json'
    )
    assert expected["Parameters"]["SLUICE_BATCH_BUCKET"] == "sluice-local-batches-123456789012-eu-central-1"
    # Each database function's secret differs, so it is set in the function's own section, never for all.
    assert "SLUICE_DB_SECRET_ARN" not in expected["Parameters"]
    secrets = {
        function: section["SLUICE_DB_SECRET_ARN"] for function, section in expected.items() if function != "Parameters"
    }
    assert secrets["LoadWorkerFunction"].endswith(":secret:sluice-local/database-worker")
    assert secrets["QuarantineFunction"].endswith(":secret:sluice-local/database-reviewer")
    assert secrets["SystemsFunction"].endswith(":secret:sluice-local/database-registrar")
    assert secrets["AlertsFunction"].endswith(":secret:sluice-local/database-alerter")
    # Webhook receivers on the machine are allowed locally, as `make run` allows them.
    assert expected["Parameters"]["SLUICE_WEBHOOK_ALLOW_LOCAL"] == "true"
    assert secrets["HealthFunction"].endswith(":secret:sluice-local/database-reader")
    assert secrets["ReadingsFunction"].endswith(":secret:sluice-local/database-readings")
    assert secrets["WebhookDispatcherFunction"].endswith(":secret:sluice-local/database-notifier")
    # Locally webhooks may go to a receiver on this machine (http, loopback); in AWS the template says false.
    assert expected["Parameters"]["SLUICE_WEBHOOK_ALLOW_LOCAL"] == "true"


def test_the_local_functions_may_send_webhooks_to_loopback_and_the_deployed_one_may_not() -> None:
    context = planned_context(REPO_ROOT, moto_endpoint="http://127.0.0.1:4566")

    specs = local_function_specs(context, REPO_ROOT, "http://127.0.0.1:4566", {})

    assert specs["WebhookDispatcherFunction"].environment["SLUICE_WEBHOOK_ALLOW_LOCAL"] == "true"
    assert function_environment(context, "WebhookDispatcherFunction")["SLUICE_WEBHOOK_ALLOW_LOCAL"] == "false"
    assert "SLUICE_WEBHOOK_ALLOW_LOCAL" not in specs["LoadWorkerFunction"].environment


def scheduled_template(properties: dict[str, Any], kind: str = "Schedule") -> StackContext:
    function = {
        "Type": "AWS::Serverless::Function",
        "Properties": {"Events": {"Nightly": {"Type": kind, "Properties": properties}}},
    }
    return StackContext({"Resources": {"MaintenanceFunction": function}}, "sluice-local", "eu-central-1")


def test_schedules_are_read_from_schedule_and_schedule_v2_events() -> None:
    (rule,) = scheduled_events(scheduled_template({"Schedule": "rate(1 day)"}))
    (v2,) = scheduled_events(
        scheduled_template({"ScheduleExpression": "cron(0 3 * * ? *)", "Input": '{"dry_run": true}'}, "ScheduleV2")
    )

    assert (rule.function, rule.name, rule.schedule.expression, rule.payload) == (
        "MaintenanceFunction",
        "Nightly",
        "rate(1 day)",
        None,
    )
    assert v2.payload == {"dry_run": True}
    assert scheduled_events(scheduled_template({"Schedule": "rate(1 day)", "Enabled": False})) == []
    assert scheduled_events(scheduled_template({"ScheduleExpression": "rate(1 day)", "State": "DISABLED"})) == []


def test_a_schedule_the_local_runtime_cannot_keep_fails_loudly() -> None:
    with pytest.raises(TemplateError, match=r"MaintenanceFunction\.Nightly: .*does not support"):
        scheduled_events(scheduled_template({"Schedule": "cron(0 12 L * ? *)"}))


def test_a_fired_schedule_sends_eventbridges_scheduled_event() -> None:
    scheduled = ScheduledEvent("MaintenanceFunction", "Nightly", parse_schedule("rate(1 day)"), None)

    event = schedule_event(scheduled, "sluice-local", "eu-central-1", datetime(2026, 11, 22, 0, 0, tzinfo=UTC))

    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["time"] == "2026-11-22T00:00:00Z"
    assert event["resources"] == [
        "arn:aws:events:eu-central-1:123456789012:rule/sluice-local-MaintenanceFunctionNightly"
    ]
    with_input = ScheduledEvent("F", "E", parse_schedule("rate(1 day)"), {"a": 1})
    assert schedule_event(with_input, "s", "r", datetime.now(UTC)) == {"a": 1}


def test_the_scheduler_fires_each_schedule_when_it_is_due() -> None:
    # A clock that runs a minute per call: the scheduler sees rate(1 minute) fall due over and over.
    start = datetime(2026, 11, 22, 10, 0, 30, tzinfo=UTC)
    ticks = iter(start + timedelta(minutes=n) for n in range(10_000))
    fired: list[datetime] = []
    done = threading.Event()

    def fire(scheduled: ScheduledEvent, moment: datetime) -> None:
        fired.append(moment)
        if len(fired) >= 3:
            done.set()

    scheduler = Scheduler([ScheduledEvent("F", "E", parse_schedule("rate(1 minute)"), None)], fire, lambda: next(ticks))
    scheduler.start()
    try:
        assert done.wait(10)
    finally:
        scheduler.stop()

    assert sorted(fired)[:3] == [start.replace(second=0) + timedelta(minutes=n) for n in (1, 2, 3)]


def test_stopping_the_scheduler_waits_for_the_invocation_it_fired() -> None:
    # Ctrl-C stops a function mid-invocation; its report must come before the stack says "stopped".
    start = datetime(2026, 11, 22, 10, 0, 59, tzinfo=UTC)
    ticks = iter(start + timedelta(seconds=n) for n in range(10_000))
    started, release = threading.Event(), threading.Event()
    reported: list[str] = []

    def fire(scheduled: ScheduledEvent, moment: datetime) -> None:
        if started.is_set():
            return
        started.set()
        release.wait(10)
        reported.append("failed")

    scheduler = Scheduler([ScheduledEvent("F", "E", parse_schedule("rate(1 minute)"), None)], fire, lambda: next(ticks))
    scheduler.start()
    assert started.wait(10)
    threading.Timer(0.2, release.set).start()
    scheduler.stop(timeout_s=10)

    assert reported == ["failed"]


def test_a_scheduler_without_schedules_starts_no_thread() -> None:
    scheduler = Scheduler([], lambda scheduled, moment: None, lambda: datetime.now(UTC))
    scheduler.start()
    scheduler.stop()
