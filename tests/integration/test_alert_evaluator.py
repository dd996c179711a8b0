"""AlertEvaluatorFunction against the real TimescaleDB, connected as a login user of sluice_alerter: alarms raised
and cleared from the rollups, their history and their outbox deliveries in one transaction, and the runs that must
change nothing (a repeat, a second evaluator at once, a run killed before its commit)."""

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from sluice.adapters.evaluation import TimescaleEvaluationStore
from sluice.domain.evaluation import Window, evaluate, evaluate_all
from sluice.services.alert_evaluator import AlertEvaluatorService, build_alert_evaluator_service
from sluice.settings import AlertEvaluatorSettings

from ..logins import group_login

pytestmark = pytest.mark.db

TENANT, OTHER = "acme", "globex"
NOW = datetime(2026, 12, 5, 12, 30, 20, tzinfo=UTC)
END = NOW.replace(second=0)


@dataclass
class Alerts:
    owner_dsn: str
    alerter_dsn: str
    service: AlertEvaluatorService
    opened: list[psycopg.Connection[Any]]

    def store(self) -> TimescaleEvaluationStore:
        """A store on a connection of its own (closed with the fixture), as a second evaluator has."""
        conn = psycopg.connect(self.alerter_dsn, autocommit=True)
        self.opened.append(conn)
        return TimescaleEvaluationStore(lambda: conn)

    def owner(self, query: Any, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.owner_dsn, autocommit=True) as conn:
            cursor = conn.execute(query, params or None)
            return cursor.fetchall() if cursor.description else []

    def system(self, tenant: str = TENANT) -> UUID:
        [(system_id,)] = self.owner(
            "INSERT INTO systems (tenant_id, name) VALUES (%s, %s) RETURNING id", tenant, f"press-{uuid4().hex[:6]}"
        )
        return UUID(str(system_id))

    def rule(self, tenant: str = TENANT, **fields: object) -> UUID:
        values: dict[str, object] = {
            "name": f"rule-{uuid4().hex[:6]}",
            "kind": "threshold",
            "severity": "critical",
            "unit": "bar",
            "condition": "above",
            "threshold": 200.0,
            "clear_threshold": 180.0,
            "for_seconds": 180,
            "created_by": "operator-anna",
        } | fields
        columns = ", ".join(["tenant_id", *values])
        marks = ", ".join(["%s"] * (len(values) + 1))
        [(rule_id,)] = self.owner(
            f"INSERT INTO alert_rules ({columns}) VALUES ({marks}) RETURNING id",  # noqa: S608 - test columns
            tenant,
            *values.values(),
        )
        return UUID(str(rule_id))

    def webhook(self, tenant: str = TENANT, events: tuple[str, ...] = ("alarm.raised", "alarm.cleared")) -> UUID:
        [(webhook_id,)] = self.owner(
            "INSERT INTO webhooks (tenant_id, url, events, created_by) VALUES (%s, %s, %s, 'anna') RETURNING id",
            tenant,
            "http://127.0.0.1:9/hook",
            list(events),
        )
        return UUID(str(webhook_id))

    def minutes(self, system_id: UUID, sensor_id: UUID, values: list[float], last: datetime, unit: str = "bar") -> None:
        """One row per minute in readings_1m (each minute's average is its value), and the sensor's newest reading."""
        first = last - timedelta(minutes=len(values) - 1)
        for i, value in enumerate(values):
            bucket = first + timedelta(minutes=i)
            self.owner(
                "INSERT INTO readings_1m (system_id, sensor_id, unit, bucket, count, sum, min, max, last_time,"
                " last_value) VALUES (%s, %s, %s, %s, 2, %s, %s, %s, %s, %s)"
                " ON CONFLICT (system_id, sensor_id, bucket, unit) DO UPDATE SET sum = excluded.sum,"
                " min = excluded.min, max = excluded.max",
                system_id, sensor_id, unit, bucket, 2 * value, value, value, bucket + timedelta(seconds=30), value,
            )  # fmt: skip
        self.latest(system_id, sensor_id, last + timedelta(seconds=30), unit)

    def latest(self, system_id: UUID, sensor_id: UUID, last_time: datetime, unit: str = "bar") -> None:
        self.owner(
            "INSERT INTO sensor_latest (system_id, sensor_id, unit, last_time, last_value) VALUES (%s, %s, %s, %s, 1)"
            " ON CONFLICT (system_id, sensor_id) DO UPDATE SET last_time = excluded.last_time",
            system_id, sensor_id, unit, last_time,
        )  # fmt: skip

    def run(self, now: datetime = NOW) -> dict[str, int]:
        report = self.service.run(now, lambda: 60_000)
        assert report.failures == []
        return {"raised": report.raised, "cleared": report.cleared, "deliveries": report.deliveries}

    def alarms(self) -> list[tuple[Any, ...]]:
        return self.owner(
            "SELECT tenant_id, rule_id, sensor_id, status, trigger_time, value, cleared_time, cleared_reason"
            " FROM alarms ORDER BY raised_at, trigger_time"
        )

    def deliveries(self) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self.owner("SELECT tenant_id, event_type, body FROM webhook_deliveries ORDER BY seq")
        return [(tenant, kind, json.loads(body)) for tenant, kind, body in rows]


@pytest.fixture
def alerts(migrated_db: str) -> Iterator[Alerts]:
    with group_login(migrated_db, "AlertsDatabaseSecretArn", "sluice_alerter", "alerter") as dsn:
        service = build_alert_evaluator_service(AlertEvaluatorSettings(db_dsn=dsn))
        alerts = Alerts(migrated_db, dsn, service, [])
        yield alerts
        service.connector.close()
        for conn in alerts.opened:
            conn.close()


def test_a_rule_held_for_its_duration_raises_one_alarm_with_its_history_and_deliveries(alerts: Alerts) -> None:
    system, sensor = alerts.system(), uuid4()
    rule_id = alerts.rule(system_id=system)
    webhook = alerts.webhook()
    alerts.minutes(system, sensor, [150, 210, 220, 230], last=END - timedelta(minutes=1))

    assert alerts.run() == {"raised": 1, "cleared": 0, "deliveries": 1}
    assert alerts.run(NOW + timedelta(seconds=30)) == {"raised": 0, "cleared": 0, "deliveries": 0}

    [(tenant, rule, sensor_id, status, trigger_time, value, _, _)] = alerts.alarms()
    assert (tenant, rule, sensor_id, status, trigger_time, value) == (TENANT, rule_id, sensor, "active", END, 230)
    [(_, kind, body)] = alerts.deliveries()
    assert kind == body["type"] == "alarm.raised"
    assert body["data"] | {"rule_id": str(rule_id), "status": "active", "value": 230.0} == body["data"]
    [(event, actor)] = alerts.owner("SELECT event, actor FROM alarm_events")
    assert (event, actor) == ("raised", None)
    [(webhook_id, event_key)] = alerts.owner("SELECT webhook_id, event_key FROM webhook_deliveries")
    assert webhook_id == webhook
    assert event_key == f"alarm.raised:{body['data']['id']}"


def test_the_clear_condition_clears_it_and_a_new_excursion_raises_a_new_alarm(alerts: Alerts) -> None:
    system, sensor = alerts.system(), uuid4()
    alerts.rule(system_id=system)
    alerts.webhook()
    alerts.minutes(system, sensor, [210, 220, 230], last=END - timedelta(minutes=1))
    alerts.run()

    # Between the thresholds: nothing; below the clear threshold: cleared.
    alerts.minutes(system, sensor, [190, 185], last=END + timedelta(minutes=1))
    assert alerts.run(NOW + timedelta(minutes=2)) == {"raised": 0, "cleared": 0, "deliveries": 0}
    alerts.minutes(system, sensor, [170], last=END + timedelta(minutes=2))
    assert alerts.run(NOW + timedelta(minutes=3)) == {"raised": 0, "cleared": 1, "deliveries": 1}
    alerts.minutes(system, sensor, [205, 206, 207], last=END + timedelta(minutes=5))
    assert alerts.run(NOW + timedelta(minutes=6)) == {"raised": 1, "cleared": 0, "deliveries": 1}

    statuses = [(status, reason) for *_, status, _, _, _, reason in [row[:8] for row in alerts.alarms()]]
    assert statuses == [("cleared", "condition_cleared"), ("active", None)]
    assert [kind for _, kind, _ in alerts.deliveries()] == ["alarm.raised", "alarm.cleared", "alarm.raised"]


def test_a_silent_sensor_raises_and_clears(alerts: Alerts) -> None:
    system, sensor = alerts.system(), uuid4()
    alerts.rule(kind="silent", unit=None, condition=None, threshold=None, clear_threshold=None, for_seconds=None,
                after_seconds=600, system_id=system)  # fmt: skip
    alerts.webhook()
    alerts.latest(system, sensor, NOW - timedelta(minutes=11))

    assert alerts.run()["raised"] == 1
    [row] = alerts.alarms()
    assert row[4] == NOW - timedelta(minutes=1)  # silent since its newest reading plus 600 s
    alerts.latest(system, sensor, NOW)
    assert alerts.run(NOW + timedelta(seconds=5))["cleared"] == 1
    assert [kind for _, kind, _ in alerts.deliveries()] == ["alarm.raised", "alarm.cleared"]


def test_one_tenants_rules_never_see_another_tenants_readings(alerts: Alerts) -> None:
    theirs, sensor = alerts.system(OTHER), uuid4()
    alerts.rule(TENANT)  # every sensor of acme
    alerts.webhook(TENANT)
    alerts.minutes(theirs, sensor, [250, 260, 270], last=END - timedelta(minutes=1))

    assert alerts.run()["raised"] == 0
    assert alerts.deliveries() == []


def test_a_second_evaluator_at_once_skips_the_tenant_the_first_holds(alerts: Alerts) -> None:
    system, sensor = alerts.system(), uuid4()
    alerts.rule(system_id=system)
    alerts.minutes(system, sensor, [210, 220, 230], last=END - timedelta(minutes=1))
    holding, release = threading.Event(), threading.Event()
    first = alerts.store()
    results: list[int] = []

    def hold() -> None:
        with first.session(TENANT) as session:
            assert session is not None
            applied = session.apply(evaluate(session.read(Window(NOW)), Window(NOW)), NOW)
            results.append(applied.raised)
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(10)
    second = alerts.service.run(NOW, lambda: 60_000)
    release.set()
    thread.join()

    assert (second.skipped, second.raised, results) == (1, 0, [1])
    assert len(alerts.alarms()) == 1


def test_a_run_killed_before_its_commit_leaves_nothing_and_the_next_raises_once(alerts: Alerts) -> None:
    system, sensor = alerts.system(), uuid4()
    alerts.rule(system_id=system)
    alerts.webhook()
    alerts.minutes(system, sensor, [210, 220, 230], last=END - timedelta(minutes=1))
    store = alerts.store()

    class Killed(BaseException):
        pass

    def killed_after_writing() -> None:
        with store.session(TENANT) as session:
            assert session is not None
            applied = session.apply(evaluate(session.read(Window(NOW)), Window(NOW)), NOW)
            assert applied.raised == applied.deliveries == 1
            raise Killed

    with pytest.raises(Killed):
        killed_after_writing()

    assert alerts.alarms() == []
    assert alerts.run()["raised"] == 1
    assert len(alerts.deliveries()) == 1


def test_the_whole_run_through_evaluate_all_reports_each_tenant(alerts: Alerts) -> None:
    for tenant in (TENANT, OTHER):
        system = alerts.system(tenant)
        alerts.rule(tenant, system_id=system)
        alerts.minutes(system, uuid4(), [210, 220, 230], last=END - timedelta(minutes=1))
    store = alerts.store()

    report = evaluate_all(store, Window(NOW), has_time=lambda: True)

    assert (report.tenants, report.evaluated, report.raised) == (2, 2, 2)


def test_late_data_holding_a_whole_excursion_raises_and_clears_in_one_run(alerts: Alerts) -> None:
    system, sensor = alerts.system(), uuid4()
    alerts.rule(system_id=system)
    alerts.webhook()
    # Arrived late, all at once: three minutes above, then one below the clear threshold.
    alerts.minutes(system, sensor, [210, 220, 230, 170], last=END - timedelta(minutes=1))

    assert alerts.run() == {"raised": 1, "cleared": 1, "deliveries": 2}

    [(_, _, _, status, trigger_time, _, cleared_time, reason)] = alerts.alarms()
    assert (status, trigger_time, cleared_time, reason) == ("cleared", END - timedelta(minutes=1), END,
                                                            "condition_cleared")  # fmt: skip
    assert [kind for _, kind, _ in alerts.deliveries()] == ["alarm.raised", "alarm.cleared"]
    events = alerts.owner("SELECT event FROM alarm_events ORDER BY id")
    assert events == [("raised",), ("cleared",)]
