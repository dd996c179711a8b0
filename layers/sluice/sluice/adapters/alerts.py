"""PostgreSQL's alert rules, alarms, webhook subscriptions and deliveries, as the sluice_alerter role keeps them.

Changes that announce themselves (an acknowledgement, a rule deleted with its open alarms) write their history rows
and their outbox deliveries as the evaluator does (``sluice.adapters.alarms.record_alarm_steps``), in the transaction
of the change: a change is never committed without its deliveries, nor a delivery sent for a change rolled back.

An acknowledgement is one ``UPDATE .. WHERE status = 'active'``: of two racing, the second waits for the first's row
lock, finds the row no longer active and updates nothing, so an alarm is acknowledged (and announced) once. Deleting
a rule locks its row first (``FOR UPDATE``), which an evaluator inserting an alarm for that rule waits on (the
foreign key's ``FOR KEY SHARE``), so no alarm is raised for a rule being deleted.

The per-tenant limits count under a transaction-scoped advisory lock per tenant and table, so two creations racing
cannot both take the last place.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, LiteralString
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from sluice.adapters.alarms import ALARM_COLUMNS, AlarmStep, record_alarm_steps
from sluice.adapters.quarantine import database_faults
from sluice.domain.alerts import RULE_DELETED, AlarmChange, AlertStore, Position, RuleSpec
from sluice.errors import NameTakenError, Problem
from sluice.models.alerts import (
    AlarmDetail,
    AlarmHistoryEntry,
    AlarmQuery,
    AlarmView,
    AlertRuleView,
    AttemptView,
    DeliveryQuery,
    DeliveryView,
    WebhookCreate,
    WebhookView,
)

_RULE_COLUMNS: Final = (
    "id, name, kind, system_id, sensor_id, unit, condition, threshold, clear_threshold, for_seconds, after_seconds,"
    " severity, created_by, created_at, updated_at"
)
_WEBHOOK_COLUMNS: Final = "id, url, events, created_by, created_at"
_DELIVERY_COLUMNS: Final = "id, event_type, event_key, status, attempts, created_at, next_attempt_at, delivered_at"

# One lock per tenant and limited table, held to the end of the transaction that counts and inserts.
_LOCK_TENANT: LiteralString = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
_HAS_SYSTEM: LiteralString = "SELECT EXISTS (SELECT FROM systems WHERE tenant_id = %s AND id = %s)"

_COUNT_RULES: LiteralString = "SELECT count(*) FROM alert_rules WHERE tenant_id = %s"
_INSERT_RULE: Final = sql.SQL(
    "INSERT INTO alert_rules (tenant_id, name, kind, system_id, sensor_id, unit, condition, threshold,"
    " clear_threshold, for_seconds, after_seconds, severity, created_by)"
    " VALUES (%(tenant)s, %(name)s, %(kind)s, %(system_id)s, %(sensor_id)s, %(unit)s, %(condition)s, %(threshold)s,"
    " %(clear_threshold)s, %(for_seconds)s, %(after_seconds)s, %(severity)s, %(created_by)s) RETURNING {}"
).format(sql.SQL(_RULE_COLUMNS))
_RULE: Final = sql.SQL("SELECT {} FROM alert_rules WHERE tenant_id = %s AND id = %s").format(sql.SQL(_RULE_COLUMNS))
# Served by alert_rules_tenant_idx (tenant_id, created_at, id), in its order.
_RULES: Final = sql.SQL(
    "SELECT {} FROM alert_rules WHERE tenant_id = %s AND (created_at, id) > (%s, %s) ORDER BY created_at, id LIMIT %s"
).format(sql.SQL(_RULE_COLUMNS))
_FIRST_RULES: Final = sql.SQL(
    "SELECT {} FROM alert_rules WHERE tenant_id = %s ORDER BY created_at, id LIMIT %s"
).format(sql.SQL(_RULE_COLUMNS))
_UPDATE_RULE: Final = sql.SQL(
    "UPDATE alert_rules SET name = %(name)s, system_id = %(system_id)s, sensor_id = %(sensor_id)s, unit = %(unit)s,"
    " condition = %(condition)s, threshold = %(threshold)s, clear_threshold = %(clear_threshold)s,"
    " for_seconds = %(for_seconds)s, after_seconds = %(after_seconds)s, severity = %(severity)s, updated_at = now()"
    " WHERE tenant_id = %(tenant)s AND id = %(id)s RETURNING {}"
).format(sql.SQL(_RULE_COLUMNS))
_LOCK_RULE: LiteralString = "SELECT id FROM alert_rules WHERE tenant_id = %s AND id = %s FOR UPDATE"
_CLEAR_RULES_ALARMS: Final = sql.SQL(
    "UPDATE alarms SET status = 'cleared', cleared_at = %s, cleared_reason = %s"
    " WHERE rule_id = %s AND status <> 'cleared' RETURNING {}"
).format(sql.SQL(ALARM_COLUMNS))
_DELETE_RULE: LiteralString = "DELETE FROM alert_rules WHERE id = %s"

_ALARM: Final = sql.SQL("SELECT {} FROM alarms WHERE tenant_id = %s AND id = %s").format(sql.SQL(ALARM_COLUMNS))
_HISTORY: LiteralString = "SELECT event, at, actor, note, detail FROM alarm_events WHERE alarm_id = %s ORDER BY id"
_ACKNOWLEDGE: Final = sql.SQL(
    "UPDATE alarms SET status = 'acknowledged', acknowledged_by = %s, acknowledged_at = %s, acknowledge_note = %s"
    " WHERE tenant_id = %s AND id = %s AND status = 'active' RETURNING {}"
).format(sql.SQL(ALARM_COLUMNS))

_COUNT_WEBHOOKS: LiteralString = "SELECT count(*) FROM webhooks WHERE tenant_id = %s"
_INSERT_WEBHOOK: Final = sql.SQL(
    "INSERT INTO webhooks (tenant_id, url, events, created_by) VALUES (%s, %s, %s, %s) RETURNING {}"
).format(sql.SQL(_WEBHOOK_COLUMNS))
_INSERT_SECRET: LiteralString = "INSERT INTO webhook_secrets (webhook_id, secret) VALUES (%s, %s)"  # noqa: S105
_WEBHOOK: Final = sql.SQL("SELECT {} FROM webhooks WHERE tenant_id = %s AND id = %s").format(sql.SQL(_WEBHOOK_COLUMNS))
_WEBHOOKS: Final = sql.SQL(
    "SELECT {} FROM webhooks WHERE tenant_id = %s AND (created_at, id) > (%s, %s) ORDER BY created_at, id LIMIT %s"
).format(sql.SQL(_WEBHOOK_COLUMNS))
_FIRST_WEBHOOKS: Final = sql.SQL(
    "SELECT {} FROM webhooks WHERE tenant_id = %s ORDER BY created_at, id LIMIT %s"
).format(sql.SQL(_WEBHOOK_COLUMNS))
# The secret and the deliveries (with their attempts) go by the foreign keys' ON DELETE CASCADE.
_DELETE_WEBHOOK: LiteralString = "DELETE FROM webhooks WHERE tenant_id = %s AND id = %s"
_ATTEMPTS: LiteralString = (
    "SELECT delivery_id, attempt, at, duration_ms, status_code, error, response FROM webhook_attempts"
    " WHERE delivery_id = ANY(%s) ORDER BY delivery_id, attempt"
)


class PostgresAlertStore(AlertStore):
    """Every tenant's rules, alarms and subscriptions; each method is scoped as its arguments say."""

    def __init__(self, connection: Callable[[], psycopg.Connection[Any]]) -> None:
        self._connection = connection

    # --- rules --------------------------------------------------------------------------------------------------

    def has_system(self, tenant_id: str, system_id: UUID) -> bool:
        """Whether the tenant has a system with this id."""
        with database_faults("reading a system"):
            found = self._connection().execute(_HAS_SYSTEM, (tenant_id, system_id)).fetchone()
        return bool(found and found[0])

    def insert_rule(self, tenant_id: str, spec: RuleSpec, created_by: str, rules_max: int) -> AlertRuleView | None:
        """Store a new rule unless the tenant has ``rules_max``; NameTakenError when it has one of this name."""
        params = _rule_params(tenant_id, spec) | {"created_by": created_by}
        try:
            with database_faults("creating an alert rule"), self._transaction() as cursor:
                if self._count_locked(cursor, "alert_rules", tenant_id, _COUNT_RULES) >= rules_max:
                    return None
                return AlertRuleView.model_validate(cursor.execute(_INSERT_RULE, params).fetchone())
        except psycopg.errors.UniqueViolation:
            raise _rule_name_taken(spec.name) from None

    def rule(self, tenant_id: str, rule_id: UUID) -> AlertRuleView | None:
        """The tenant's rule with this id."""
        with database_faults("reading an alert rule"), self._cursor() as cursor:
            row = cursor.execute(_RULE, (tenant_id, rule_id)).fetchone()
        return None if row is None else AlertRuleView.model_validate(row)

    def rules(self, tenant_id: str, limit: int, after: Position | None) -> list[AlertRuleView]:
        """The tenant's rules, oldest first, after ``after``."""
        query, params = (
            (_FIRST_RULES, (tenant_id, limit))
            if after is None
            else (_RULES, (tenant_id, after.at, UUID(after.id), limit))
        )
        with database_faults("listing alert rules"), self._cursor() as cursor:
            return [AlertRuleView.model_validate(row) for row in cursor.execute(query, params)]

    def update_rule(self, tenant_id: str, rule_id: UUID, spec: RuleSpec) -> AlertRuleView | None:
        """Store the rule's new fields; NameTakenError when another rule of the tenant has the name."""
        try:
            with database_faults("changing an alert rule"), self._cursor() as cursor:
                row = cursor.execute(_UPDATE_RULE, _rule_params(tenant_id, spec) | {"id": rule_id}).fetchone()
        except psycopg.errors.UniqueViolation:
            raise _rule_name_taken(spec.name) from None
        return None if row is None else AlertRuleView.model_validate(row)

    def delete_rule(self, tenant_id: str, rule_id: UUID, change: AlarmChange) -> list[AlarmView] | None:
        """Clear the rule's open alarms, each with its history row and deliveries, and delete the rule: four
        statements however many alarms it had open."""
        with database_faults("deleting an alert rule"), self._transaction() as cursor:
            if cursor.execute(_LOCK_RULE, (tenant_id, rule_id)).fetchone() is None:
                return None
            rows = cursor.execute(_CLEAR_RULES_ALARMS, (change.at, RULE_DELETED, rule_id)).fetchall()
            detail = {"reason": RULE_DELETED}
            steps = [AlarmStep(row, "cleared", change.at, change.actor, change.note, detail) for row in rows]
            record_alarm_steps(cursor.connection, tenant_id, steps)
            cursor.execute(_DELETE_RULE, (rule_id,))
        return [AlarmView.model_validate(row) for row in rows]

    # --- alarms -------------------------------------------------------------------------------------------------

    def alarms(self, tenant_id: str, query: AlarmQuery, after: Position | None) -> list[AlarmView]:
        """The tenant's alarms the query selects, newest raised first (alarms_tenant_idx's order)."""
        conditions: list[sql.Composable] = [sql.SQL("tenant_id = %s")]
        params: list[Any] = [tenant_id]
        for column, value in (("status", query.status), ("severity", query.severity), ("system_id", query.system_id)):
            if value is not None:
                conditions.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
        if after is not None:
            conditions.append(sql.SQL("(raised_at, id) < (%s, %s)"))
            params += [after.at, UUID(after.id)]
        statement = sql.SQL("SELECT {} FROM alarms WHERE {} ORDER BY raised_at DESC, id DESC LIMIT %s").format(
            sql.SQL(ALARM_COLUMNS), sql.SQL(" AND ").join(conditions)
        )
        with database_faults("listing alarms"), self._cursor() as cursor:
            return [AlarmView.model_validate(row) for row in cursor.execute(statement, [*params, query.limit])]

    def alarm(self, tenant_id: str, alarm_id: UUID) -> AlarmDetail | None:
        """The tenant's alarm with its history, oldest first."""
        with database_faults("reading an alarm"), self._cursor() as cursor:
            row = cursor.execute(_ALARM, (tenant_id, alarm_id)).fetchone()
            if row is None:
                return None
            history = [AlarmHistoryEntry.model_validate(entry) for entry in cursor.execute(_HISTORY, (alarm_id,))]
        return AlarmDetail.model_validate(row | {"history": history})

    def acknowledge(self, tenant_id: str, alarm_id: UUID, change: AlarmChange) -> AlarmView | None:
        """Acknowledge the alarm if it is active, with its history row and deliveries, in one transaction."""
        with database_faults("acknowledging an alarm"), self._transaction() as cursor:
            row = cursor.execute(_ACKNOWLEDGE, (change.actor, change.at, change.note, tenant_id, alarm_id)).fetchone()
            if row is None:
                return None
            step = AlarmStep(row, "acknowledged", change.at, change.actor, change.note)
            record_alarm_steps(cursor.connection, tenant_id, [step])
        return AlarmView.model_validate(row)

    # --- webhooks -----------------------------------------------------------------------------------------------

    def insert_webhook(
        self, tenant_id: str, request: WebhookCreate, created_by: str, secret: str, webhooks_max: int
    ) -> WebhookView | None:
        """Store a subscription and its secret unless the tenant has ``webhooks_max``."""
        with database_faults("creating a webhook"), self._transaction() as cursor:
            if self._count_locked(cursor, "webhooks", tenant_id, _COUNT_WEBHOOKS) >= webhooks_max:
                return None
            row = cursor.execute(_INSERT_WEBHOOK, (tenant_id, request.url, list(request.events), created_by)).fetchone()
            created = WebhookView.model_validate(row)
            cursor.execute(_INSERT_SECRET, (created.id, secret))
        return created

    def webhook(self, tenant_id: str, webhook_id: UUID) -> WebhookView | None:
        """The tenant's subscription with this id."""
        with database_faults("reading a webhook"), self._cursor() as cursor:
            row = cursor.execute(_WEBHOOK, (tenant_id, webhook_id)).fetchone()
        return None if row is None else WebhookView.model_validate(row)

    def webhooks(self, tenant_id: str, limit: int, after: Position | None) -> list[WebhookView]:
        """The tenant's subscriptions, oldest first, after ``after``."""
        query, params = (
            (_FIRST_WEBHOOKS, (tenant_id, limit))
            if after is None
            else (_WEBHOOKS, (tenant_id, after.at, UUID(after.id), limit))
        )
        with database_faults("listing webhooks"), self._cursor() as cursor:
            return [WebhookView.model_validate(row) for row in cursor.execute(query, params)]

    def delete_webhook(self, tenant_id: str, webhook_id: UUID) -> bool:
        """Delete the subscription, its secret and its deliveries."""
        with database_faults("deleting a webhook"):
            return self._connection().execute(_DELETE_WEBHOOK, (tenant_id, webhook_id)).rowcount > 0

    def deliveries(
        self, tenant_id: str, webhook_id: UUID, query: DeliveryQuery, after: Position | None
    ) -> list[DeliveryView]:
        """The subscription's deliveries, newest first (webhook_deliveries_webhook_idx's order), with attempts."""
        conditions: list[sql.Composable] = [sql.SQL("webhook_id = %s"), sql.SQL("tenant_id = %s")]
        params: list[Any] = [webhook_id, tenant_id]
        if query.status is not None:
            conditions.append(sql.SQL("status = %s"))
            params.append(query.status)
        if after is not None:
            conditions.append(sql.SQL("(created_at < %s OR (created_at = %s AND id > %s))"))
            params += [after.at, after.at, after.id]
        statement = sql.SQL("SELECT {} FROM webhook_deliveries WHERE {} ORDER BY created_at DESC, id LIMIT %s").format(
            sql.SQL(_DELIVERY_COLUMNS), sql.SQL(" AND ").join(conditions)
        )
        with database_faults("listing deliveries"), self._cursor() as cursor:
            rows = cursor.execute(statement, [*params, query.limit]).fetchall()
            attempts = _attempts_by_delivery(cursor.execute(_ATTEMPTS, ([row["id"] for row in rows],)).fetchall())
        return [DeliveryView.model_validate(row | {"attempt_log": attempts.get(row["id"], [])}) for row in rows]

    # --- helpers ------------------------------------------------------------------------------------------------

    @staticmethod
    def _count_locked(cursor: psycopg.Cursor[dict[str, Any]], table: str, tenant_id: str, count: LiteralString) -> int:
        cursor.execute(_LOCK_TENANT, (f"{table}:{tenant_id}",))
        found = cursor.execute(count, (tenant_id,)).fetchone()
        return int(found["count"]) if found else 0

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with self._connection().cursor(row_factory=dict_row) as cursor:
            yield cursor

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        conn = self._connection()
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
            yield cursor


def _rule_params(tenant_id: str, spec: RuleSpec) -> dict[str, Any]:
    return {
        "tenant": tenant_id,
        "name": spec.name,
        "kind": spec.kind,
        "system_id": spec.system_id,
        "sensor_id": spec.sensor_id,
        "unit": None if spec.unit is None else str(spec.unit),
        "condition": spec.condition,
        "threshold": spec.threshold,
        "clear_threshold": spec.clear_threshold,
        "for_seconds": spec.for_seconds,
        "after_seconds": spec.after_seconds,
        "severity": spec.severity,
    }


def _rule_name_taken(name: str) -> NameTakenError:
    return NameTakenError(
        f"the tenant has an alert rule named {name!r} already",
        [Problem(field="name", reason="another alert rule of this tenant has this name")],
    )


def _attempts_by_delivery(rows: Sequence[dict[str, Any]]) -> dict[str, list[AttemptView]]:
    attempts: dict[str, list[AttemptView]] = {}
    for row in rows:
        attempts.setdefault(row.pop("delivery_id"), []).append(AttemptView.model_validate(row))
    return attempts
