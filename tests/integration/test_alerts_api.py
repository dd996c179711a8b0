"""AlertsFunction against the real TimescaleDB, connected as a login user of the sluice_alerter role through a
Secrets Manager secret (moto), as in AWS: alert rules (kinds, validation, names, systems, limits, paging), alarms
(listing, history, acknowledging with its outbox deliveries), rules deleted with their open alarms, and webhook
subscriptions with their deliveries. Alarms and deliveries are written with SQL as the evaluator and the
dispatcher would: this function only reads them, acknowledges and clears."""

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from sluice.adapters.alerts import PostgresAlertStore
from sluice.adapters.aws import secretsmanager_client
from sluice.domain.alerts import acknowledge_alarm
from sluice.domain.webhooks import signed_headers, verify
from sluice.errors import AlarmNotActiveError
from sluice.settings import get_alerts_settings
from sluice_tools.local.stack import secret_from_dsn
from sluice_tools.local.template import StackContext, function_environment

from ..api_client import OTHER_TENANT, TENANT, Answer, call, claims
from ..lambdas import FakeLambdaContext, handler_module, load_event
from ..logins import group_login

pytestmark = pytest.mark.db

READER = claims("alerts:read", sub="viewer-ben")
WRITER = claims("alerts:read alerts:write", sub="operator-anna")
WRITE_ONLY = claims("alerts:write", sub="operator-anna")
THEIRS = claims("alerts:read alerts:write", tenant=OTHER_TENANT, sub="mallory")
RECEIVER = "http://127.0.0.1:9/hooks"
ALARM_EVENTS = ["alarm.raised", "alarm.cleared", "alarm.acknowledged"]

THRESHOLD_RULE: dict[str, Any] = {
    "name": "supply pressure high",
    "unit": "bar",
    "condition": "above",
    "threshold": 250.0,
    "clear_threshold": 240.0,
    "for_seconds": 300,
    "severity": "critical",
}
SILENT_RULE: dict[str, Any] = {"name": "sensor silent", "kind": "silent", "after_seconds": 900, "severity": "warning"}


@dataclass
class Alerts:
    """AlertsFunction as its role, and the owner's DSN for writing alarms and deliveries and checking rows."""

    module: ModuleType
    owner_dsn: str
    alerter_dsn: str

    def get(self, path: str, query: dict[str, str] | None = None, verified: dict[str, str] | None = READER) -> Answer:
        return call(self.module, "GET", path, verified=verified, query=query)

    def post(self, path: str, body: Any, verified: dict[str, str] | None = WRITER) -> Answer:
        return call(self.module, "POST", path, verified=verified, body=body)

    def patch(self, path: str, body: Any, verified: dict[str, str] | None = WRITER) -> Answer:
        return call(self.module, "PATCH", path, verified=verified, body=body)

    def delete(self, path: str, verified: dict[str, str] | None = WRITER) -> Answer:
        return call(self.module, "DELETE", path, verified=verified)

    def rule(self, body: dict[str, Any] | None = None, verified: dict[str, str] = WRITER, **changes: Any) -> str:
        answer = self.post("/api/v1/alert-rules", (body or THRESHOLD_RULE) | changes, verified)
        assert answer.status == 201, answer.body
        rule_id: str = answer.body["id"]
        return rule_id

    def webhook(self, events: list[str], verified: dict[str, str] = WRITER, url: str = RECEIVER) -> dict[str, Any]:
        answer = self.post("/api/v1/webhooks", {"url": url, "events": events}, verified)
        assert answer.status == 201, answer.body
        created: dict[str, Any] = answer.body
        return created

    def owner(self, query: Any, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.owner_dsn, autocommit=True) as conn:
            cursor = conn.execute(query, params or None)
            return cursor.fetchall() if cursor.description else []

    def raise_alarm(
        self,
        rule_id: str | None,
        *,
        tenant: str = TENANT,
        status: str = "active",
        severity: str = "critical",
        system_id: UUID | None = None,
        raised_at: datetime | None = None,
    ) -> str:
        """An alarm of the rule (with its ``raised`` history row), written as the evaluator writes one."""
        raised = raised_at or datetime.now(UTC)
        cleared = (raised + timedelta(minutes=5), raised + timedelta(minutes=5), "condition_cleared")
        (row,) = self.owner(
            "INSERT INTO alarms (tenant_id, rule_id, rule_name, kind, severity, system_id, sensor_id, unit, status,"
            " value, trigger_time, raised_at, cleared_time, cleared_at, cleared_reason)"
            " VALUES (%s, %s, 'supply pressure high', 'threshold', %s, %s, %s, 'bar', %s, 256.5, %s, %s, %s, %s, %s)"
            " RETURNING id",
            tenant,
            rule_id,
            severity,
            system_id or uuid4(),
            uuid4(),
            status,
            raised - timedelta(seconds=30),
            raised,
            *(cleared if status == "cleared" else (None, None, None)),
        )
        self.owner(
            "INSERT INTO alarm_events (alarm_id, event, at, detail) VALUES (%s, 'raised', %s, %s)",
            row[0],
            raised,
            json.dumps({"value": 256.5}),
        )
        return str(row[0])

    def deliveries(self, event_key: str) -> list[tuple[Any, ...]]:
        return self.owner(
            "SELECT webhook_id, event_type, body, status FROM webhook_deliveries WHERE event_key = %s ORDER BY 1",
            event_key,
        )


@pytest.fixture
def alerter_dsn(migrated_db: str) -> Iterator[str]:
    """A login user of sluice_alerter, as AlertsFunction logs in."""
    with group_login(migrated_db, "AlertsDatabaseSecretArn", "sluice_alerter", "alerter") as dsn:
        yield dsn


@pytest.fixture
def alerts(
    aws_stack: StackContext, migrated_db: str, alerter_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Alerts]:
    """AlertsFunction, imported cold with the template's environment and the twin's webhook policy (loopback
    receivers allowed); its database is the alerter login's secret."""
    for name, value in function_environment(aws_stack, "AlertsFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLUICE_WEBHOOK_ALLOW_LOCAL", "true")
    secret = secretsmanager_client().create_secret(
        Name=f"sluice-alerter-{uuid4().hex[:8]}", SecretString=json.dumps(secret_from_dsn(alerter_dsn))
    )
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", secret["ARN"])
    get_alerts_settings.cache_clear()
    harness = Alerts(handler_module("AlertsFunction"), migrated_db, alerter_dsn)
    yield harness
    harness.module.get_service().connector.close()
    get_alerts_settings.cache_clear()


def restarted(alerts: Alerts, monkeypatch: pytest.MonkeyPatch, **settings: str) -> Alerts:
    """The function started anew with these settings (a new execution environment)."""
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    alerts.module.get_service().connector.close()
    alerts.module.get_service.cache_clear()
    get_alerts_settings.cache_clear()
    return alerts


# --- rules ----------------------------------------------------------------------------------------------------------


def test_a_threshold_rule_is_created_shown_and_listed(alerts: Alerts) -> None:
    answer = alerts.post("/api/v1/alert-rules", THRESHOLD_RULE)

    assert answer.status == 201, answer.body
    assert answer.body | {"id": None, "created_at": None, "updated_at": None} == {
        "id": None,
        "name": "supply pressure high",
        "kind": "threshold",
        "system_id": None,
        "sensor_id": None,
        "unit": "bar",
        "condition": "above",
        "threshold": 250.0,
        "clear_threshold": 240.0,
        "for_seconds": 300,
        "after_seconds": None,
        "severity": "critical",
        "created_by": "operator-anna",
        "created_at": None,
        "updated_at": None,
    }
    assert alerts.get(f"/api/v1/alert-rules/{answer.body['id']}").body == answer.body
    assert alerts.get("/api/v1/alert-rules").body == {"items": [answer.body], "next_cursor": None}
    assert alerts.owner("SELECT tenant_id FROM alert_rules") == [(TENANT,)]


def test_a_silence_rule_has_only_its_own_fields(alerts: Alerts) -> None:
    sensor = uuid4()

    answer = alerts.post("/api/v1/alert-rules", SILENT_RULE | {"sensor_id": str(sensor)})

    assert answer.status == 201, answer.body
    assert {name: answer.body[name] for name in ("kind", "sensor_id", "after_seconds", "severity")} == {
        "kind": "silent",
        "sensor_id": str(sensor),
        "after_seconds": 900,
        "severity": "warning",
    }
    assert all(answer.body[name] is None for name in ("unit", "condition", "threshold", "clear_threshold"))


def test_a_below_rule_clears_above_its_threshold(alerts: Alerts) -> None:
    body = THRESHOLD_RULE | {"condition": "below", "threshold": 20.0, "clear_threshold": 25.5, "for_seconds": 3600}

    answer = alerts.post("/api/v1/alert-rules", body)

    assert (answer.status, answer.body["clear_threshold"]) == (201, 25.5)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (THRESHOLD_RULE | {"name": "   "}, "name"),
        (THRESHOLD_RULE | {"name": "x" * 101}, "name"),
        (THRESHOLD_RULE | {"name": "high\npressure"}, "name"),
        ({k: v for k, v in THRESHOLD_RULE.items() if k != "severity"}, "severity"),
        (THRESHOLD_RULE | {"severity": "fatal"}, "severity"),
        (THRESHOLD_RULE | {"kind": "rate"}, "kind"),
        (THRESHOLD_RULE | {"condition": "over"}, "condition"),
        (THRESHOLD_RULE | {"unit": "psi"}, "unit"),
        (THRESHOLD_RULE | {"threshold": "250"}, "threshold"),
        (THRESHOLD_RULE | {"for_seconds": 90}, "for_seconds"),
        (THRESHOLD_RULE | {"for_seconds": 0}, "for_seconds"),
        (THRESHOLD_RULE | {"for_seconds": 3660}, "for_seconds"),
        (THRESHOLD_RULE | {"for_seconds": 300.0}, "for_seconds"),
        (THRESHOLD_RULE | {"clear_threshold": 250.0}, "clear_threshold"),
        (THRESHOLD_RULE | {"clear_threshold": 260.0}, "clear_threshold"),
        (THRESHOLD_RULE | {"condition": "below"}, "clear_threshold"),
        ({k: v for k, v in THRESHOLD_RULE.items() if k != "unit"}, "unit"),
        ({k: v for k, v in THRESHOLD_RULE.items() if k != "for_seconds"}, "for_seconds"),
        ({k: v for k, v in THRESHOLD_RULE.items() if k != "clear_threshold"}, "clear_threshold"),
        (THRESHOLD_RULE | {"after_seconds": 600}, "after_seconds"),
        (SILENT_RULE | {"after_seconds": 59}, "after_seconds"),
        (SILENT_RULE | {"after_seconds": 604_801}, "after_seconds"),
        ({k: v for k, v in SILENT_RULE.items() if k != "after_seconds"}, "after_seconds"),
        (SILENT_RULE | {"threshold": 5.0}, "threshold"),
        (SILENT_RULE | {"unit": "bar"}, "unit"),
        (THRESHOLD_RULE | {"system_id": "press-17"}, "system_id"),
        (THRESHOLD_RULE | {"tenant_id": OTHER_TENANT}, "tenant_id"),
        (THRESHOLD_RULE | {"created_by": "someone-else"}, "created_by"),
    ],
    ids=lambda value: str(value)[:60] if isinstance(value, str) else None,
)
def test_a_body_that_is_not_a_rule_is_400_naming_the_field_and_stores_nothing(
    alerts: Alerts, body: dict[str, Any], field: str
) -> None:
    answer = alerts.post("/api/v1/alert-rules", body)

    assert (answer.status, answer.error["code"]) == (400, "invalid_request"), answer.body
    assert field in {detail["field"] for detail in answer.error["details"]}, answer.error
    assert alerts.owner("SELECT count(*) FROM alert_rules") == [(0,)]


@pytest.mark.parametrize("number", ["1e999", "NaN", "-Infinity"])
def test_a_threshold_that_is_not_finite_is_400(alerts: Alerts, number: str) -> None:
    text = json.dumps(THRESHOLD_RULE).replace("250.0", number)

    answer = alerts.post("/api/v1/alert-rules", text)

    assert answer.status == 400
    assert "threshold" in {detail["field"] for detail in answer.error["details"]}


def test_the_clear_threshold_on_the_wrong_side_says_which_side(alerts: Alerts) -> None:
    answer = alerts.post("/api/v1/alert-rules", THRESHOLD_RULE | {"clear_threshold": 255.0})

    (detail,) = answer.error["details"]
    assert detail["field"] == "clear_threshold"
    assert detail["reason"].startswith("must be below the threshold (250) for condition above")


def test_a_name_the_tenant_uses_is_taken_and_another_tenant_may_use_it(alerts: Alerts) -> None:
    alerts.rule()

    again = alerts.post("/api/v1/alert-rules", THRESHOLD_RULE | {"threshold": 300.0})
    theirs = alerts.post("/api/v1/alert-rules", THRESHOLD_RULE, THEIRS)

    assert (again.status, again.error["code"], again.error["details"][0]["field"]) == (409, "name_taken", "name")
    assert theirs.status == 201
    assert alerts.owner("SELECT tenant_id FROM alert_rules ORDER BY 1") == [(TENANT,), (OTHER_TENANT,)]


def test_a_rule_may_name_only_a_system_of_the_tenant(alerts: Alerts) -> None:
    mine, theirs = uuid4(), uuid4()
    alerts.owner("INSERT INTO systems (id, tenant_id, name) VALUES (%s, %s, 'press-17')", mine, TENANT)
    alerts.owner("INSERT INTO systems (id, tenant_id, name) VALUES (%s, %s, 'press-17')", theirs, OTHER_TENANT)

    own = alerts.post("/api/v1/alert-rules", THRESHOLD_RULE | {"system_id": str(mine)})
    other = alerts.post("/api/v1/alert-rules", THRESHOLD_RULE | {"name": "b", "system_id": str(theirs)})
    unknown = alerts.post("/api/v1/alert-rules", THRESHOLD_RULE | {"name": "c", "system_id": str(uuid4())})

    assert (own.status, own.body["system_id"]) == (201, str(mine))
    for answer in (other, unknown):
        assert (answer.status, answer.error["code"], answer.error["details"][0]["field"]) == (
            404,
            "not_found",
            "system_id",
        )
    assert alerts.owner("SELECT count(*) FROM alert_rules") == [(1,)]


def test_a_change_keeps_what_it_does_not_send(alerts: Alerts) -> None:
    rule_id = alerts.rule()
    before = alerts.get(f"/api/v1/alert-rules/{rule_id}").body

    answer = alerts.patch(f"/api/v1/alert-rules/{rule_id}", {"threshold": 260.0, "severity": "warning"})

    assert answer.status == 200, answer.body
    assert answer.body | {"updated_at": None} == before | {
        "threshold": 260.0,
        "severity": "warning",
        "updated_at": None,
    }
    assert answer.body["updated_at"] > before["updated_at"]
    assert alerts.get(f"/api/v1/alert-rules/{rule_id}").body == answer.body


def test_a_change_may_widen_a_rule_to_every_system(alerts: Alerts) -> None:
    system = uuid4()
    alerts.owner("INSERT INTO systems (id, tenant_id, name) VALUES (%s, %s, 'press-17')", system, TENANT)
    rule_id = alerts.rule(system_id=str(system), sensor_id=str(uuid4()))

    answer = alerts.patch(f"/api/v1/alert-rules/{rule_id}", {"system_id": None, "sensor_id": None})

    assert (answer.status, answer.body["system_id"], answer.body["sensor_id"]) == (200, None, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"condition": "below"}, "clear_threshold"),
        ({"clear_threshold": 251.0}, "clear_threshold"),
        ({"kind": "silent"}, "kind"),
        ({"kind": "threshold"}, "kind"),
        ({"after_seconds": 600}, "after_seconds"),
        ({"unit": None}, "unit"),
        ({"name": None}, "name"),
        ({"severity": None}, "severity"),
        ({"for_seconds": 61}, "for_seconds"),
        ({"tenant_id": OTHER_TENANT}, "tenant_id"),
        ({}, None),
    ],
)
def test_a_change_that_would_leave_a_rule_invalid_is_400_and_changes_nothing(
    alerts: Alerts, body: dict[str, Any], field: str | None
) -> None:
    rule_id = alerts.rule()
    before = alerts.get(f"/api/v1/alert-rules/{rule_id}").body

    answer = alerts.patch(f"/api/v1/alert-rules/{rule_id}", body)

    assert (answer.status, answer.error["code"]) == (400, "invalid_request"), answer.body
    assert field in [detail["field"] for detail in answer.error["details"]]
    assert alerts.get(f"/api/v1/alert-rules/{rule_id}").body == before


def test_a_silence_rule_takes_no_threshold_on_change(alerts: Alerts) -> None:
    rule_id = alerts.rule(SILENT_RULE)

    refused = alerts.patch(f"/api/v1/alert-rules/{rule_id}", {"threshold": 10.0})
    longer = alerts.patch(f"/api/v1/alert-rules/{rule_id}", {"after_seconds": 3600})

    assert (refused.status, refused.error["details"][0]["field"]) == (400, "threshold")
    assert (longer.status, longer.body["after_seconds"]) == (200, 3600)


def test_a_rename_to_a_name_the_tenant_uses_is_taken(alerts: Alerts) -> None:
    first = alerts.rule()
    alerts.rule(name="return pressure high")

    answer = alerts.patch(f"/api/v1/alert-rules/{first}", {"name": "return pressure high"})

    assert (answer.status, answer.error["code"]) == (409, "name_taken")


def test_a_rename_to_another_tenants_system_is_404(alerts: Alerts) -> None:
    theirs = uuid4()
    alerts.owner("INSERT INTO systems (id, tenant_id, name) VALUES (%s, %s, 'x')", theirs, OTHER_TENANT)
    rule_id = alerts.rule()

    answer = alerts.patch(f"/api/v1/alert-rules/{rule_id}", {"system_id": str(theirs)})

    assert (answer.status, answer.error["details"][0]["field"]) == (404, "system_id")
    assert alerts.get(f"/api/v1/alert-rules/{rule_id}").body["system_id"] is None


def test_the_rules_are_paged_oldest_first(alerts: Alerts) -> None:
    created = [alerts.rule(name=f"rule {number}") for number in range(5)]
    alerts.rule(name="theirs", verified=THEIRS)

    seen: list[str] = []
    query = {"limit": "2"}
    while True:
        page = alerts.get("/api/v1/alert-rules", query)
        assert page.status == 200, page.body
        seen += [item["id"] for item in page.body["items"]]
        if page.body["next_cursor"] is None:
            break
        query = {"limit": "2", "cursor": page.body["next_cursor"]}

    assert seen == created


def test_the_tenant_may_have_only_so_many_rules(alerts: Alerts, monkeypatch: pytest.MonkeyPatch) -> None:
    restarted(alerts, monkeypatch, SLUICE_ALERT_RULES_MAX="2")
    alerts.rule(name="one")
    second = alerts.rule(name="two")
    alerts.rule(name="theirs", verified=THEIRS)

    refused = alerts.post("/api/v1/alert-rules", THRESHOLD_RULE | {"name": "three"})
    alerts.delete(f"/api/v1/alert-rules/{second}")
    after_a_delete = alerts.post("/api/v1/alert-rules", THRESHOLD_RULE | {"name": "three"})

    assert (refused.status, refused.error["code"]) == (409, "limit_reached")
    assert refused.error["message"] == "the tenant has 2 alert rules, the most it may have"
    assert after_a_delete.status == 201


# --- another tenant's ids -----------------------------------------------------------------------------------------


def test_another_tenants_rules_alarms_and_webhooks_are_not_found(alerts: Alerts) -> None:
    rule = alerts.rule(verified=THEIRS)
    alarm = alerts.raise_alarm(rule, tenant=OTHER_TENANT)
    webhook = alerts.webhook(ALARM_EVENTS, verified=THEIRS)["id"]

    answers = {
        "get rule": alerts.get(f"/api/v1/alert-rules/{rule}"),
        "change rule": alerts.patch(f"/api/v1/alert-rules/{rule}", {"threshold": 1000.0}),
        "delete rule": alerts.delete(f"/api/v1/alert-rules/{rule}"),
        "get alarm": alerts.get(f"/api/v1/alarms/{alarm}"),
        "acknowledge": alerts.post(f"/api/v1/alarms/{alarm}/acknowledge", {}),
        "get webhook": alerts.get(f"/api/v1/webhooks/{webhook}"),
        "deliveries": alerts.get(f"/api/v1/webhooks/{webhook}/deliveries"),
        "delete webhook": alerts.delete(f"/api/v1/webhooks/{webhook}"),
        "not an id": alerts.get("/api/v1/alarms/press-17"),
        "unknown": alerts.get(f"/api/v1/webhooks/{uuid4()}"),
    }

    for what, answer in answers.items():
        assert (answer.status, answer.error["code"]) == (404, "not_found"), what
    assert answers["get alarm"].error["message"] == f"no alarm {alarm} in this tenant"
    assert alerts.get("/api/v1/alarms").body == {"items": [], "next_cursor": None}
    assert alerts.get("/api/v1/webhooks").body == {"items": [], "next_cursor": None}
    assert alerts.owner("SELECT threshold FROM alert_rules") == [(250.0,)]
    assert alerts.owner("SELECT status FROM alarms") == [("active",)]
    assert alerts.owner("SELECT count(*) FROM webhooks") == [(1,)]


def test_each_route_needs_its_scope(alerts: Alerts) -> None:
    rule = alerts.rule()

    writes = [
        alerts.post("/api/v1/alert-rules", THRESHOLD_RULE | {"name": "x"}, READER),
        alerts.delete(f"/api/v1/alert-rules/{rule}", READER),
        alerts.post("/api/v1/webhooks", {"url": RECEIVER, "events": ["job.failed"]}, READER),
    ]
    reads = [alerts.get("/api/v1/alert-rules", verified=WRITE_ONLY), alerts.get("/api/v1/alarms", verified=WRITE_ONLY)]

    for answer in writes:
        assert (answer.status, answer.error["details"][0]["reason"]) == (
            403,
            "alerts:write is not among the token's scopes",
        )
    for answer in reads:
        assert (answer.status, answer.error["details"][0]["reason"]) == (
            403,
            "alerts:read is not among the token's scopes",
        )
    assert alerts.owner("SELECT count(*) FROM alert_rules") == [(1,)]


# --- alarms -------------------------------------------------------------------------------------------------------


def test_an_alarm_is_shown_with_its_history(alerts: Alerts) -> None:
    rule = alerts.rule()
    alarm = alerts.raise_alarm(rule)

    answer = alerts.get(f"/api/v1/alarms/{alarm}")

    assert answer.status == 200, answer.body
    assert (answer.body["id"], answer.body["rule_id"], answer.body["status"], answer.body["value"]) == (
        alarm,
        rule,
        "active",
        256.5,
    )
    assert [(entry["event"], entry["actor"], entry["detail"]) for entry in answer.body["history"]] == [
        ("raised", None, {"value": 256.5})
    ]


def test_the_alarms_are_listed_newest_first_by_status_severity_and_system(alerts: Alerts) -> None:
    rule = alerts.rule()
    press = uuid4()
    start = datetime.now(UTC) - timedelta(hours=1)
    made = {
        "old cleared": alerts.raise_alarm(rule, status="cleared", raised_at=start),
        "active press": alerts.raise_alarm(rule, system_id=press, raised_at=start + timedelta(minutes=1)),
        "acknowledged": alerts.raise_alarm(rule, status="acknowledged", raised_at=start + timedelta(minutes=2)),
        "warning": alerts.raise_alarm(rule, severity="warning", raised_at=start + timedelta(minutes=3)),
    }
    alerts.owner("UPDATE alarms SET acknowledged_by = 'x', acknowledged_at = now() WHERE status = 'acknowledged'")
    alerts.raise_alarm(None, tenant=OTHER_TENANT)

    def listed(query: dict[str, str]) -> list[str]:
        answer = alerts.get("/api/v1/alarms", query)
        assert answer.status == 200, answer.body
        return [item["id"] for item in answer.body["items"]]

    assert listed({}) == [made["warning"], made["acknowledged"], made["active press"], made["old cleared"]]
    assert listed({"status": "active"}) == [made["warning"], made["active press"]]
    assert listed({"status": "cleared"}) == [made["old cleared"]]
    assert listed({"severity": "warning"}) == [made["warning"]]
    assert listed({"system_id": str(press)}) == [made["active press"]]
    assert listed({"status": "active", "severity": "critical"}) == [made["active press"]]


def test_the_alarms_are_paged_without_repeats_or_gaps(alerts: Alerts) -> None:
    rule = alerts.rule()
    moment = datetime.now(UTC).replace(microsecond=0)
    # Three alarms raised in the same microsecond: the id orders them.
    made = {alerts.raise_alarm(rule, status="cleared", raised_at=moment) for _ in range(3)}
    made |= {alerts.raise_alarm(rule, status="cleared", raised_at=moment - timedelta(minutes=n)) for n in (1, 2)}

    seen: list[str] = []
    query = {"limit": "2"}
    while True:
        page = alerts.get("/api/v1/alarms", query)
        seen += [item["id"] for item in page.body["items"]]
        if page.body["next_cursor"] is None:
            break
        query = {"limit": "2", "cursor": page.body["next_cursor"]}

    assert len(seen) == len(set(seen)) == 5
    assert set(seen) == made


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/api/v1/alarms", {"status": "open"}, "status"),
        ("/api/v1/alarms", {"severity": "fatal"}, "severity"),
        ("/api/v1/alarms", {"system_id": "press-17"}, "system_id"),
        ("/api/v1/alarms", {"limit": "0"}, "limit"),
        ("/api/v1/alarms", {"limit": "101"}, "limit"),
        ("/api/v1/alarms", {"cursor": "bm9wZQ"}, "cursor"),
        ("/api/v1/alarms", {"tenant_id": "other"}, "tenant_id"),
        ("/api/v1/alert-rules", {"limit": "x"}, "limit"),
        ("/api/v1/webhooks", {"cursor": "x"}, "cursor"),
    ],
)
def test_a_listing_query_that_is_not_valid_is_400(alerts: Alerts, path: str, query: dict[str, str], field: str) -> None:
    answer = alerts.get(path, query)

    assert (answer.status, answer.error["details"][0]["field"]) == (400, field)


def test_a_cursor_of_another_listing_is_400(alerts: Alerts) -> None:
    for number in range(3):
        alerts.rule(name=f"rule {number}")
    rules_cursor = alerts.get("/api/v1/alert-rules", {"limit": "1"}).body["next_cursor"]

    answer = alerts.get("/api/v1/alarms", {"cursor": rules_cursor})

    assert (answer.status, answer.error["details"][0]["field"]) == (400, "cursor")


def test_acknowledging_records_who_and_when_and_writes_one_delivery_per_subscription(alerts: Alerts) -> None:
    rule = alerts.rule()
    alarm = alerts.raise_alarm(rule)
    subscribed = sorted([alerts.webhook(ALARM_EVENTS)["id"], alerts.webhook(["alarm.acknowledged"])["id"]])
    alerts.webhook(["alarm.raised", "job.failed"])  # not for acknowledgements
    alerts.webhook(ALARM_EVENTS, verified=THEIRS)  # another tenant's

    answer = alerts.post(f"/api/v1/alarms/{alarm}/acknowledge", {"note": "valve replaced, watching it"})

    assert answer.status == 200, answer.body
    assert (answer.body["status"], answer.body["acknowledged_by"], answer.body["acknowledge_note"]) == (
        "acknowledged",
        "operator-anna",
        "valve replaced, watching it",
    )
    shown = alerts.get(f"/api/v1/alarms/{alarm}").body
    assert [(entry["event"], entry["actor"], entry["note"]) for entry in shown["history"]] == [
        ("raised", None, None),
        ("acknowledged", "operator-anna", "valve replaced, watching it"),
    ]
    assert shown["history"][1]["at"] == shown["acknowledged_at"]
    deliveries = alerts.deliveries(f"alarm.acknowledged:{alarm}")
    assert [str(webhook_id) for webhook_id, *_ in deliveries] == subscribed
    for _, event_type, body, status in deliveries:
        sent = json.loads(body)
        assert (event_type, status, sent["type"]) == ("alarm.acknowledged", "pending", "alarm.acknowledged")
        assert sent["data"] == {name: value for name, value in shown.items() if name != "history"} == answer.body


def test_an_alarm_acknowledged_already_or_cleared_is_409_saying_by_whom_and_when(alerts: Alerts) -> None:
    rule = alerts.rule()
    acknowledged, cleared = alerts.raise_alarm(rule), alerts.raise_alarm(rule, status="cleared")
    alerts.webhook(ALARM_EVENTS)
    first = alerts.post(f"/api/v1/alarms/{acknowledged}/acknowledge", {})

    again = alerts.post(
        f"/api/v1/alarms/{acknowledged}/acknowledge", {"note": "me too"}, claims("alerts:write", sub="bo")
    )
    too_late = alerts.post(f"/api/v1/alarms/{cleared}/acknowledge", {})

    assert (again.status, again.error["code"]) == (409, "not_active")
    assert again.error["message"] == (
        f"alarm {acknowledged} was acknowledged by operator-anna at {first.body['acknowledged_at']}"
    )
    assert (too_late.status, too_late.error["code"]) == (409, "not_active")
    assert "was cleared at" in too_late.error["message"]
    assert alerts.owner("SELECT count(*) FROM alarm_events WHERE event = 'acknowledged'") == [(1,)]
    assert len(alerts.deliveries(f"alarm.acknowledged:{acknowledged}")) == 1
    assert alerts.deliveries(f"alarm.acknowledged:{cleared}") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"note": "x" * 2001}, "note"),
        ({"note": 5}, "note"),
        ({"note": "gauge\x00reset"}, "note"),
        ({"acknowledged_by": "someone"}, "acknowledged_by"),
    ],
)
def test_an_acknowledgement_that_is_not_valid_is_400_and_changes_nothing(
    alerts: Alerts, body: dict[str, Any], field: str
) -> None:
    alarm = alerts.raise_alarm(alerts.rule())

    answer = alerts.post(f"/api/v1/alarms/{alarm}/acknowledge", body)

    assert (answer.status, answer.error["details"][0]["field"]) == (400, field)
    assert alerts.owner("SELECT status FROM alarms") == [("active",)]


def test_two_acknowledgements_racing_acknowledge_once_and_announce_once(alerts: Alerts) -> None:
    # The first acknowledgement's transaction is held open while the second is sent on another connection: the
    # second waits on the alarm's row lock, then finds it no longer active.
    alarm = alerts.raise_alarm(alerts.rule())
    alerts.webhook(["alarm.acknowledged"])
    outcome: list[object] = []
    with (
        psycopg.connect(alerts.alerter_dsn, autocommit=True) as one,
        psycopg.connect(alerts.alerter_dsn, autocommit=True, application_name="ack-second") as two,
    ):

        def acknowledge_second() -> None:
            try:
                store = PostgresAlertStore(lambda: two)
                outcome.append(
                    acknowledge_alarm(store, TENANT, alarm, principal="bo", note=None, now=datetime.now(UTC))
                )
            except AlarmNotActiveError as exc:
                outcome.append(exc)

        with one.transaction():
            store = PostgresAlertStore(lambda: one)
            won = acknowledge_alarm(store, TENANT, alarm, principal="anna", note=None, now=datetime.now(UTC))
            waiting = threading.Thread(target=acknowledge_second)
            waiting.start()
            deadline = time.monotonic() + 10
            while not alerts.owner(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'ack-second' AND wait_event_type = 'Lock'"
            ):
                assert time.monotonic() < deadline, "the second acknowledgement never waited for the first"
                time.sleep(0.02)
        waiting.join(10)

    (lost,) = outcome
    assert won.acknowledged_by == "anna"
    assert isinstance(lost, AlarmNotActiveError)
    assert "acknowledged by anna" in lost.message
    assert alerts.owner("SELECT count(*) FROM alarm_events WHERE event = 'acknowledged'") == [(1,)]
    assert len(alerts.deliveries(f"alarm.acknowledged:{alarm}")) == 1


# --- deleting a rule ----------------------------------------------------------------------------------------------


def test_deleting_a_rule_clears_its_open_alarms_with_their_deliveries(alerts: Alerts) -> None:
    rule, other_rule = alerts.rule(), alerts.rule(name="another")
    active, acknowledged = alerts.raise_alarm(rule), alerts.raise_alarm(rule, status="acknowledged")
    alerts.owner("UPDATE alarms SET acknowledged_by = 'x', acknowledged_at = now() WHERE status = 'acknowledged'")
    long_cleared = alerts.raise_alarm(rule, status="cleared")
    untouched = alerts.raise_alarm(other_rule)
    subscriptions = sorted([alerts.webhook(["alarm.cleared"])["id"], alerts.webhook(ALARM_EVENTS)["id"]])

    answer = alerts.delete(f"/api/v1/alert-rules/{rule}")

    assert (answer.status, answer.body) == (204, None)
    assert alerts.get(f"/api/v1/alert-rules/{rule}").status == 404
    for alarm in (active, acknowledged):
        shown = alerts.get(f"/api/v1/alarms/{alarm}").body
        assert (shown["status"], shown["cleared_reason"], shown["rule_id"]) == ("cleared", "rule_deleted", None)
        assert (shown["history"][-1]["event"], shown["history"][-1]["actor"]) == ("cleared", "operator-anna")
        deliveries = alerts.deliveries(f"alarm.cleared:{alarm}")
        assert [str(webhook_id) for webhook_id, *_ in deliveries] == subscriptions
        sent = json.loads(deliveries[0][2])
        assert (sent["type"], sent["data"]["id"], sent["data"]["cleared_reason"]) == (
            "alarm.cleared",
            alarm,
            "rule_deleted",
        )
    assert alerts.get(f"/api/v1/alarms/{long_cleared}").body["cleared_reason"] == "condition_cleared"
    assert alerts.deliveries(f"alarm.cleared:{long_cleared}") == []
    assert alerts.get(f"/api/v1/alarms/{untouched}").body["status"] == "active"
    assert alerts.delete(f"/api/v1/alert-rules/{rule}").status == 404


# --- webhooks -----------------------------------------------------------------------------------------------------


def test_a_webhook_is_created_with_a_secret_shown_once(alerts: Alerts) -> None:
    answer = alerts.post("/api/v1/webhooks", {"url": RECEIVER, "events": ["job.failed", "alarm.raised"]})

    assert answer.status == 201, answer.body
    secret = answer.body.pop("secret")
    assert secret.startswith("whsec_")
    assert answer.body | {"id": None, "created_at": None} == {
        "id": None,
        "url": RECEIVER,
        # In the order the docs list the events.
        "events": ["alarm.raised", "job.failed"],
        "created_by": "operator-anna",
        "created_at": None,
    }
    assert alerts.get(f"/api/v1/webhooks/{answer.body['id']}").body == answer.body
    assert alerts.get("/api/v1/webhooks").body == {"items": [answer.body], "next_cursor": None}
    (stored,) = alerts.owner("SELECT secret FROM webhook_secrets WHERE webhook_id = %s", answer.body["id"])
    assert stored == (secret,)
    # A key the specification's signatures can be made and checked with.
    assert verify(secret, signed_headers(secret, "msg_1", datetime.now(UTC), "{}"), "{}")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"url": "ftp://127.0.0.1/hooks", "events": ["job.failed"]}, "the URL must use https or http"),
        ({"url": "http://10.1.2.3/hooks", "events": ["job.failed"]}, "which is not a public address"),
        ({"url": "http://169.254.169.254/latest", "events": ["job.failed"]}, "which is not a public address"),
        ({"url": "http://user:pw@127.0.0.1/", "events": ["job.failed"]}, "must not carry credentials"),
        ({"url": "http:///nohost", "events": ["job.failed"]}, "names no host"),
        ({"url": "http://127.0.0.1:99999/", "events": ["job.failed"]}, "port"),
        ({"url": "http://[zz]/hooks", "events": ["job.failed"]}, "not a name or an address"),
        ({"url": "http://127.0.0.1/a b", "events": ["job.failed"]}, "white space or control characters"),
        ({"url": "http://127.0.0.1\x00.evil/", "events": ["job.failed"]}, "(found U+0000)"),
        ({"url": "", "events": ["job.failed"]}, None),
        ({"url": "https://x.example/" + "a" * 2048, "events": ["job.failed"]}, None),
    ],
)
def test_a_webhook_url_that_is_refused_is_400_naming_url_with_the_reason(
    alerts: Alerts, body: dict[str, Any], reason: str | None
) -> None:
    answer = alerts.post("/api/v1/webhooks", body)

    assert answer.status == 400, answer.body
    (detail,) = answer.error["details"]
    assert detail["field"] == "url"
    assert reason is None or reason in detail["reason"], detail
    assert alerts.owner("SELECT count(*) FROM webhooks") == [(0,)]


def test_in_aws_a_webhook_must_be_https_on_a_public_address(alerts: Alerts, monkeypatch: pytest.MonkeyPatch) -> None:
    restarted(alerts, monkeypatch, SLUICE_WEBHOOK_ALLOW_LOCAL="false")

    plain = alerts.post("/api/v1/webhooks", {"url": "http://93.184.215.14/hooks", "events": ["job.failed"]})
    loopback = alerts.post("/api/v1/webhooks", {"url": "https://127.0.0.1/hooks", "events": ["job.failed"]})
    public = alerts.post("/api/v1/webhooks", {"url": "https://93.184.215.14/hooks", "events": ["job.failed"]})

    assert (plain.status, plain.error["details"][0]["reason"]) == (400, "the URL must use https")
    assert (loopback.status, loopback.error["details"][0]["field"]) == (400, "url")
    assert "127.0.0.1, which is not a public address" in loopback.error["details"][0]["reason"]
    assert public.status == 201


@pytest.mark.parametrize(
    "events",
    [[], ["alarm.exploded"], ["job.failed", "job.failed"], "job.failed", None],
)
def test_a_webhook_must_name_known_events_once_each(alerts: Alerts, events: Any) -> None:
    answer = alerts.post("/api/v1/webhooks", {"url": RECEIVER, "events": events})

    assert answer.status == 400
    assert answer.error["details"][0]["field"].startswith("events")
    assert alerts.owner("SELECT count(*) FROM webhooks") == [(0,)]


def test_the_tenant_may_have_only_so_many_webhooks(alerts: Alerts, monkeypatch: pytest.MonkeyPatch) -> None:
    restarted(alerts, monkeypatch, SLUICE_WEBHOOKS_MAX="1")
    alerts.webhook(["job.failed"])
    alerts.webhook(["job.failed"], verified=THEIRS)

    answer = alerts.post("/api/v1/webhooks", {"url": RECEIVER, "events": ["job.completed"]})

    assert (answer.status, answer.error["code"]) == (409, "limit_reached")
    assert alerts.owner("SELECT count(*) FROM webhooks") == [(2,)]


def add_delivery(alerts: Alerts, webhook_id: str, key: str, created_at: datetime, status: str = "pending") -> str:
    message_id = f"msg_{uuid4().hex}"
    alerts.owner(
        "INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_type, event_key, body, created_at, status,"
        " attempts, next_attempt_at, delivered_at) VALUES (%s, %s, %s, 'alarm.raised', %s, '{}', %s, %s, %s, %s, %s)",
        message_id,
        webhook_id,
        TENANT,
        key,
        created_at,
        status,
        0 if status == "pending" else 2,
        created_at + timedelta(minutes=1),
        created_at + timedelta(seconds=40) if status == "delivered" else None,
    )
    return message_id


def test_the_deliveries_are_listed_newest_first_with_every_attempt(alerts: Alerts) -> None:
    webhook = alerts.webhook(ALARM_EVENTS)["id"]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    older = add_delivery(alerts, webhook, "alarm.raised:1", start, "delivered")
    newer = add_delivery(alerts, webhook, "alarm.raised:2", start + timedelta(minutes=10))
    for attempt, status_code, error in ((1, None, "timed out after 10 s"), (2, 204, None)):
        alerts.owner(
            "INSERT INTO webhook_attempts (delivery_id, attempt, at, duration_ms, status_code, error, response)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            older,
            attempt,
            start + timedelta(seconds=20 * attempt),
            10_000 if error else 35,
            status_code,
            error,
            None if error else "",
        )

    answer = alerts.get(f"/api/v1/webhooks/{webhook}/deliveries")
    delivered = alerts.get(f"/api/v1/webhooks/{webhook}/deliveries", {"status": "delivered"})

    assert answer.status == 200, answer.body
    assert [item["id"] for item in answer.body["items"]] == [newer, older]
    assert answer.body["items"][0]["attempt_log"] == []
    assert [
        (entry["attempt"], entry["status_code"], entry["error"], entry["duration_ms"])
        for entry in answer.body["items"][1]["attempt_log"]
    ] == [(1, None, "timed out after 10 s", 10_000), (2, 204, None, 35)]
    assert (answer.body["items"][1]["status"], answer.body["items"][1]["attempts"]) == ("delivered", 2)
    assert [item["id"] for item in delivered.body["items"]] == [older]


def test_the_deliveries_are_paged(alerts: Alerts) -> None:
    webhook = alerts.webhook(ALARM_EVENTS)["id"]
    moment = datetime.now(UTC).replace(microsecond=0)
    made = {add_delivery(alerts, webhook, f"alarm.raised:{n}", moment) for n in range(3)}
    made |= {add_delivery(alerts, webhook, f"alarm.raised:old{n}", moment - timedelta(minutes=n + 1)) for n in range(2)}

    seen: list[str] = []
    query = {"limit": "2"}
    while True:
        page = alerts.get(f"/api/v1/webhooks/{webhook}/deliveries", query)
        assert page.status == 200, page.body
        seen += [item["id"] for item in page.body["items"]]
        if page.body["next_cursor"] is None:
            break
        query = {"limit": "2", "cursor": page.body["next_cursor"]}

    assert len(seen) == 5
    assert set(seen) == made


def test_deleting_a_webhook_takes_its_secret_and_deliveries(alerts: Alerts) -> None:
    webhook = alerts.webhook(ALARM_EVENTS)["id"]
    add_delivery(alerts, webhook, "alarm.raised:1", datetime.now(UTC))

    answer = alerts.delete(f"/api/v1/webhooks/{webhook}")

    assert (answer.status, answer.body) == (204, None)
    assert alerts.get(f"/api/v1/webhooks/{webhook}").status == 404
    assert alerts.owner("SELECT (SELECT count(*) FROM webhook_secrets), (SELECT count(*) FROM webhook_deliveries)") == [
        (0, 0)
    ]


# --- limits -------------------------------------------------------------------------------------------------------


def test_writes_have_a_budget_of_their_own(alerts: Alerts, monkeypatch: pytest.MonkeyPatch) -> None:
    restarted(alerts, monkeypatch, SLUICE_ALERTS_WRITE_RATE_LIMIT_REQUESTS="2")
    alerts.rule(name="one")
    alerts.rule(name="two")

    refused = alerts.post("/api/v1/alert-rules", THRESHOLD_RULE | {"name": "three"})
    read = alerts.get("/api/v1/alert-rules")

    assert (refused.status, refused.error["code"]) == (429, "rate_limited")
    assert int(refused.headers["Retry-After"]) > 0
    assert read.status == 200
    assert alerts.owner("SELECT count(*) FROM alert_rules") == [(2,)]


# --- the sample events --------------------------------------------------------------------------------------------


def test_the_sample_events_are_answered_as_events_readme_says(alerts: Alerts) -> None:
    def invoke(name: str) -> tuple[int, Any]:
        result = alerts.module.lambda_handler(load_event(name), FakeLambdaContext())
        return result["statusCode"], json.loads(result["body"])

    created, rule = invoke("alerts-rule-create.json")
    again, _ = invoke("alerts-rule-create.json")
    subscribed, webhook = invoke("alerts-webhook-create.json")
    listed, page = invoke("alerts-alarms-list.json")
    acknowledged, _ = invoke("alerts-acknowledge.json")

    assert (created, rule["name"], again) == (201, "supply pressure high", 409)
    assert (subscribed, webhook["url"]) == (201, "http://127.0.0.1:8765/hooks")
    assert (listed, page) == (200, {"items": [], "next_cursor": None})
    assert acknowledged == 404
