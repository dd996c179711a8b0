"""The alerts domain's pure rules: which fields a rule's kind takes, the hysteresis, the 409 of an alarm that is not
active, and the cursors (the handler's answers are tests/integration/test_alerts_api.py's)."""

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from sluice.domain.alerts import (
    ALARMS_CURSOR,
    DELIVERIES_CURSOR,
    RuleSpec,
    alarm_announcement,
    check_rule,
    not_active,
    position_of,
)
from sluice.domain.pages import encode_cursor
from sluice.errors import InvalidRequestError
from sluice.models.alerts import AlarmView

THRESHOLD = RuleSpec(
    name="high", kind="threshold", severity="critical", unit="bar", condition="above", threshold=250.0,
    clear_threshold=240.0, for_seconds=300,
)  # fmt: skip
SILENT = RuleSpec(name="quiet", kind="silent", severity="info", after_seconds=900)
NOW = datetime(2026, 11, 20, 8, 9, 30, 100200, tzinfo=UTC)


def problems(spec: RuleSpec) -> dict[str | None, str]:
    with pytest.raises(InvalidRequestError) as refused:
        check_rule(spec)
    return {problem.field: problem.reason for problem in refused.value.details}


def test_rules_of_either_kind_with_their_own_fields_pass() -> None:
    check_rule(THRESHOLD)
    check_rule(SILENT)
    check_rule(replace(THRESHOLD, condition="below", clear_threshold=260.0))


@pytest.mark.parametrize(
    ("changes", "side"),
    [({"clear_threshold": 250.0}, "below"), ({"clear_threshold": 251.0}, "below"), ({"condition": "below"}, "above")],
)
def test_a_clear_threshold_off_the_safe_side_is_named_with_the_side(changes: dict[str, Any], side: str) -> None:
    found = problems(replace(THRESHOLD, **changes))

    assert list(found) == ["clear_threshold"]
    assert found["clear_threshold"].startswith(f"must be {side} the threshold (250)")


def test_each_field_a_kind_lacks_or_does_not_take_is_named() -> None:
    assert problems(replace(SILENT, threshold=5.0, unit="bar", after_seconds=None)) == {
        "after_seconds": "required for a silent rule",
        "unit": "a silent rule has no unit (send null or leave it out)",
        "threshold": "a silent rule has no threshold (send null or leave it out)",
    }
    assert set(problems(replace(THRESHOLD, for_seconds=None, after_seconds=60))) == {
        "for_seconds",
        "after_seconds",
    }


def alarm(**changes: Any) -> AlarmView:
    shown: dict[str, Any] = {
        "id": uuid4(), "rule_id": uuid4(), "rule_name": "high", "kind": "threshold", "severity": "critical",
        "system_id": uuid4(), "sensor_id": uuid4(), "unit": "bar", "status": "active", "value": 256.5,
        "trigger_time": NOW, "raised_at": NOW, "acknowledged_by": None, "acknowledged_at": None,
        "acknowledge_note": None, "cleared_time": None, "cleared_at": None, "cleared_reason": None,
    }  # fmt: skip
    return AlarmView.model_validate(shown | changes)


def test_an_alarm_that_is_not_active_says_by_whom_and_when_as_the_json_writes_it() -> None:
    acknowledged = alarm(status="acknowledged", acknowledged_by="anna", acknowledged_at=NOW)
    cleared = alarm(status="cleared", cleared_at=NOW, cleared_reason="rule_deleted")

    assert not_active(acknowledged).message == (
        f"alarm {acknowledged.id} was acknowledged by anna at 2026-11-20T08:09:30.100200Z"
    )
    assert (
        not_active(cleared).message == f"alarm {cleared.id} was cleared at 2026-11-20T08:09:30.100200Z (rule_deleted)"
    )
    assert not_active(acknowledged).code == "not_active"


def test_an_announcement_is_keyed_by_event_and_alarm_and_carries_the_view() -> None:
    shown = alarm(status="acknowledged", acknowledged_by="anna", acknowledged_at=NOW)

    announced = alarm_announcement("demo", shown, "alarm.acknowledged", NOW)

    assert (announced.tenant_id, announced.event_key) == ("demo", f"alarm.acknowledged:{shown.id}")
    assert announced.data == shown.model_dump(mode="json")


@pytest.mark.parametrize(
    ("kind", "position"),
    [
        (ALARMS_CURSOR, {"at": "2026-11-20T08:00:00+00:00", "id": "not-a-uuid"}),
        (ALARMS_CURSOR, {"at": "2026-11-20T08:00:00", "id": str(uuid4())}),
        (ALARMS_CURSOR, {"at": "yesterday", "id": str(uuid4())}),
        (ALARMS_CURSOR, {"at": 5, "id": str(uuid4())}),
        (DELIVERIES_CURSOR, {"at": "2026-11-20T08:00:00+00:00", "id": ""}),
    ],
)
def test_a_cursor_naming_no_usable_position_is_400(kind: str, position: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        position_of(kind, encode_cursor(kind, position))

    assert refused.value.details[0].field == "cursor"


def test_a_deliveries_cursor_takes_a_message_id() -> None:
    found = position_of(DELIVERIES_CURSOR, encode_cursor(DELIVERIES_CURSOR, {"at": NOW.isoformat(), "id": "msg_1"}))

    assert (found.at, found.id) == (NOW, "msg_1")
