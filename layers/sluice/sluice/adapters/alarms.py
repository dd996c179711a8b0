"""Alarms' rows and history as every writer of them keeps them: the evaluator raising and clearing, the API
acknowledging, and deleting a rule. A step of an alarm's history and its webhook deliveries are written together,
in the caller's transaction, in bulk."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.types.json import Jsonb

from sluice.adapters.outbox import enqueue_all
from sluice.domain.alerts import alarm_announcement
from sluice.models.alerts import AlarmView

# An alarm's columns, in AlarmView's fields.
ALARM_COLUMNS: LiteralString = (
    "id, rule_id, rule_name, kind, severity, system_id, sensor_id, unit, status, value, trigger_time, raised_at,"
    " acknowledged_by, acknowledged_at, acknowledge_note, cleared_time, cleared_at, cleared_reason"
)
_EVENTS: LiteralString = (
    "INSERT INTO alarm_events (alarm_id, event, at, actor, note, detail)"
    " SELECT x.alarm_id, x.event, x.at, x.actor, x.note, x.detail"
    " FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::jsonb[])"
    "   AS x (alarm_id, event, at, actor, note, detail)"
)


@dataclass(frozen=True, slots=True)
class AlarmStep:
    """One step of an alarm's history to write: the alarm's row as it is now, the step (``raised``,
    ``acknowledged``, ``cleared``), when, by whom (None: the evaluator), a note, and what was seen."""

    alarm: Mapping[str, Any]
    event: str
    at: datetime
    actor: str | None = None
    note: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


def record_alarm_steps(conn: psycopg.Connection[Any], tenant_id: str, steps: Sequence[AlarmStep]) -> int:
    """Write steps of alarms' histories and their deliveries (``alarm.<event>``, keyed by the alarm), in the caller's
    transaction: one statement for the history, one for the outbox. The deliveries written."""
    if not steps:
        return 0
    conn.execute(
        _EVENTS,
        (
            [step.alarm["id"] for step in steps],
            [step.event for step in steps],
            [step.at for step in steps],
            [step.actor for step in steps],
            [step.note for step in steps],
            [Jsonb(dict(step.detail)) for step in steps],
        ),
    )
    changes = [
        alarm_announcement(tenant_id, AlarmView.model_validate(dict(step.alarm)), f"alarm.{step.event}", step.at)
        for step in steps
    ]
    return enqueue_all(conn, changes)
