"""The evaluator's PostgreSQL side (as sluice_alerter): a tenant's rules and the data they watch, read in one
transaction that also writes the alarms decided, their history and their webhook deliveries.

Two evaluators at once (a schedule delivered twice, a run overlapping a slow one) never both evaluate a tenant: each
tenant's transaction first takes a transaction-scoped advisory lock on it, and the one that does not get it skips
the tenant (the other decides the same from the same data). The partial unique index on open alarms is the
backstop: a second raising of an open rule and sensor inserts nothing and announces nothing.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Any, Final, LiteralString
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from sluice.adapters.alarms import ALARM_COLUMNS, AlarmStep, record_alarm_steps
from sluice.domain.evaluation import (
    Applied,
    Change,
    Condition,
    KnownAlarm,
    Minute,
    Rule,
    RuleKind,
    SensorKey,
    TenantData,
    Transition,
    Window,
)

# The advisory lock's first key: "alerts" evaluation; the second is the tenant's hash.
_LOCK_CLASS: Final = 0x51_1C_A1
_LOCK: LiteralString = "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))"
_TENANTS: LiteralString = "SELECT DISTINCT tenant_id FROM alert_rules ORDER BY tenant_id"
_RULES: LiteralString = (
    "SELECT id, tenant_id, name, kind, severity, system_id, sensor_id, unit, condition, threshold,"
    " clear_threshold, for_seconds, after_seconds FROM alert_rules WHERE tenant_id = %s ORDER BY created_at, id"
)
# Each of the tenant's sensors (sensor_latest holds one row per sensor that ever reported) drives a range scan of
# the rollup's key (system_id, sensor_id, bucket): a join on system_id alone would read every minute each system
# has in the chunk, not the window's.
_MINUTES: LiteralString = (
    "SELECT l.system_id, l.sensor_id, m.unit, m.bucket, m.sum / m.count"
    " FROM sensor_latest l JOIN systems s ON s.id = l.system_id"
    " CROSS JOIN LATERAL (SELECT unit, bucket, sum, count FROM readings_1m m"
    "   WHERE m.system_id = l.system_id AND m.sensor_id = l.sensor_id AND m.bucket >= %(start)s"
    "   AND m.bucket < %(end)s AND m.unit = ANY(%(units)s)) m"
    " WHERE s.tenant_id = %(tenant)s AND (%(systems)s::uuid[] IS NULL OR l.system_id = ANY(%(systems)s))"
    " ORDER BY 1, 2, 3, 4"
)
_LATEST: LiteralString = (
    "SELECT l.system_id, l.sensor_id, l.last_time FROM sensor_latest l JOIN systems s ON s.id = l.system_id"
    " WHERE s.tenant_id = %s"
)
# Open alarms, and those cleared since the first minute read: older ones cannot change a decision.
_ALARMS: LiteralString = (
    "SELECT DISTINCT ON (rule_id, system_id, sensor_id) id, rule_id, system_id, sensor_id, status, unit,"
    " trigger_time, cleared_time FROM alarms"
    " WHERE tenant_id = %(tenant)s AND rule_id IS NOT NULL"
    " AND (status <> 'cleared' OR cleared_at >= %(since)s)"
    " ORDER BY rule_id, system_id, sensor_id, raised_at DESC"
)
ALARM_FIELDS: Final = tuple(column.strip() for column in ALARM_COLUMNS.split(","))
# Every raising of a run in one statement, and every clearing in another: a storm of thousands of alarms is a few
# round trips, not four per alarm. ON CONFLICT: the rule's sensor has an open alarm already (the backstop).
_RAISE: Final = sql.SQL(
    "INSERT INTO alarms (tenant_id, rule_id, rule_name, kind, severity, system_id, sensor_id, unit, status, value,"
    " trigger_time, raised_at)"
    " SELECT %s, x.rule_id, x.rule_name, x.kind, x.severity, x.system_id, x.sensor_id, x.unit, 'active', x.value,"
    "   x.trigger_time, %s"
    " FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::uuid[], %s::uuid[], %s::text[],"
    "   %s::float8[], %s::timestamptz[])"
    "   AS x (rule_id, rule_name, kind, severity, system_id, sensor_id, unit, value, trigger_time)"
    " ON CONFLICT (rule_id, system_id, sensor_id) WHERE status <> 'cleared' DO NOTHING RETURNING {}"
).format(sql.SQL(ALARM_COLUMNS))
_CLEAR: Final = sql.SQL(
    "UPDATE alarms a SET status = 'cleared', cleared_time = x.cleared_time, cleared_at = %s,"
    " cleared_reason = x.reason"
    " FROM unnest(%s::uuid[], %s::timestamptz[], %s::text[]) AS x (id, cleared_time, reason)"
    " WHERE a.id = x.id AND a.status <> 'cleared' RETURNING {}"
).format(sql.SQL(", ".join(f"a.{column}" for column in ALARM_FIELDS)))


class TimescaleEvaluationStore:
    """Rules and alarms in PostgreSQL, read and written as sluice_alerter."""

    def __init__(self, connection: Callable[[], psycopg.Connection[Any]]) -> None:
        self._connection = connection

    def tenants(self) -> list[str]:
        with self._connection().transaction() as tx:
            return [str(tenant) for (tenant,) in tx.connection.execute(_TENANTS)]

    @contextmanager
    def session(self, tenant_id: str) -> Iterator["_TenantSession | None"]:
        conn = self._connection()
        with conn.transaction():
            row = conn.execute(_LOCK, (_LOCK_CLASS, tenant_id)).fetchone()
            yield _TenantSession(conn, tenant_id) if row is not None and row[0] else None


class _TenantSession:
    def __init__(self, conn: psycopg.Connection[Any], tenant_id: str) -> None:
        self._conn = conn
        self._tenant = tenant_id

    def read(self, window: Window) -> TenantData:
        rules = [_rule(row) for row in self._conn.cursor(row_factory=dict_row).execute(_RULES, (self._tenant,))]
        thresholds = [rule for rule in rules if rule.kind is RuleKind.THRESHOLD]
        start = window.start_for(max((rule.minutes for rule in thresholds), default=1))
        minutes: dict[tuple[SensorKey, str], list[Minute]] = {}
        if thresholds:
            # Only the systems the rules name, unless one rule watches the whole tenant.
            scoped = None if any(rule.system_id is None for rule in thresholds) else [r.system_id for r in thresholds]
            params = {
                "start": start,
                "end": window.end,
                "units": sorted({rule.unit for rule in thresholds if rule.unit is not None}),
                "tenant": self._tenant,
                "systems": scoped,
            }
            # Ordered by sensor and unit: a series' key is made once, not once a row.
            rows = self._conn.execute(_MINUTES, params).fetchall()
            for (system_id, sensor_id, unit), series in groupby(rows, key=itemgetter(0, 1, 2)):
                minutes[SensorKey(system_id, sensor_id), unit] = [Minute(row[3], row[4]) for row in series]
        latest: dict[SensorKey, datetime] = {}
        if any(rule.kind is RuleKind.SILENT for rule in rules):
            for system_id, sensor_id, last_time in self._conn.execute(_LATEST, (self._tenant,)):
                latest[SensorKey(system_id, sensor_id)] = last_time
        alarms = {
            (row["rule_id"], SensorKey(row["system_id"], row["sensor_id"])): KnownAlarm(
                row["id"], row["status"] != "cleared", row["unit"], row["trigger_time"], row["cleared_time"]
            )
            for row in self._conn.cursor(row_factory=dict_row).execute(
                _ALARMS, {"tenant": self._tenant, "since": start}
            )
        }
        return TenantData(rules, minutes, latest, alarms)

    def apply(self, transitions: Sequence[Transition], now: datetime) -> Applied:
        """Write the run's transitions in waves: a sensor's first transition in the first, its second (late data
        can raise and clear in one run) in the next, which may clear an alarm the first just raised."""
        by_pair: dict[tuple[UUID, SensorKey], list[Transition]] = {}
        for step in transitions:
            by_pair.setdefault((step.rule.id, step.sensor), []).append(step)
        waves = max((len(steps) for steps in by_pair.values()), default=0)
        raised: dict[tuple[UUID, SensorKey], UUID] = {}
        applied = Applied()
        for wave in range(waves):
            steps = [pair_steps[wave] for pair_steps in by_pair.values() if len(pair_steps) > wave]
            applied = _sum(applied, self._apply_wave(steps, raised, now))
        return applied

    def _apply_wave(
        self, steps: Sequence[Transition], raised: dict[tuple[UUID, SensorKey], UUID], now: datetime
    ) -> Applied:
        cursor = self._conn.cursor(row_factory=dict_row)
        history: list[AlarmStep] = []
        raises = [step for step in steps if step.change is Change.RAISE]
        if raises:
            rows = cursor.execute(
                _RAISE,
                (
                    self._tenant,
                    now,
                    [step.rule.id for step in raises],
                    [step.rule.name for step in raises],
                    [step.rule.kind.value for step in raises],
                    [step.rule.severity for step in raises],
                    [step.sensor.system_id for step in raises],
                    [step.sensor.sensor_id for step in raises],
                    [step.unit for step in raises],
                    [step.value for step in raises],
                    [step.at for step in raises],
                ),
            ).fetchall()
            by_key = {(row["rule_id"], SensorKey(row["system_id"], row["sensor_id"])): row for row in rows}
            for step in raises:
                row = by_key.get((step.rule.id, step.sensor))
                if row is None:
                    continue  # open already: the backstop of the advisory lock
                raised[(step.rule.id, step.sensor)] = row["id"]
                detail = {"trigger_time": step.at.isoformat(), "value": step.value}
                history.append(AlarmStep(row, "raised", now, detail=detail))
        clears = [step for step in steps if step.change is Change.CLEAR]
        cleared = 0
        if clears:
            ids = [step.alarm_id or raised.get((step.rule.id, step.sensor)) for step in clears]
            reasons = [step.reason.value if step.reason is not None else None for step in clears]
            rows = cursor.execute(_CLEAR, (now, ids, [step.at for step in clears], reasons)).fetchall()
            cleared = len(rows)
            by_id = {row["id"]: row for row in rows}
            for step, alarm_id, reason in zip(clears, ids, reasons, strict=True):
                row = by_id.get(alarm_id)
                if row is not None:
                    detail = {"cleared_time": step.at.isoformat(), "value": step.value, "reason": reason}
                    history.append(AlarmStep(row, "cleared", now, detail=detail))
        deliveries = record_alarm_steps(self._conn, self._tenant, history)
        return Applied(len(history) - cleared, cleared, deliveries)


def _sum(one: Applied, other: Applied) -> Applied:
    return Applied(one.raised + other.raised, one.cleared + other.cleared, one.deliveries + other.deliveries)


def _rule(row: Mapping[str, Any]) -> Rule:
    kind = RuleKind(row["kind"])
    if kind is RuleKind.SILENT:
        return Rule(
            row["id"], row["tenant_id"], row["name"], kind, row["severity"], row["system_id"], row["sensor_id"],
            after_seconds=row["after_seconds"],
        )  # fmt: skip
    return Rule(
        row["id"], row["tenant_id"], row["name"], kind, row["severity"], row["system_id"], row["sensor_id"],
        row["unit"], Condition(row["condition"]), row["threshold"], row["clear_threshold"], row["for_seconds"],
    )  # fmt: skip
