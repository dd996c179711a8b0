"""Alert rules, alarms and webhook subscriptions as a tenant manages them through the API.

A rule's kind decides which fields it takes: a threshold rule compares a unit's minute averages with ``threshold``
for ``for_seconds`` and clears on the safe side of ``clear_threshold`` (hysteresis: below it for ``above``, above it
for ``below``); a silence rule raises when a sensor has sent nothing for ``after_seconds``. The fields that do not
apply to a kind are refused rather than ignored, so a client never believes a rule does what it does not. A PATCH
is judged on the rule it would leave, so changing ``condition`` alone must still leave the thresholds the right way
round.

Acknowledging records who and when on an active alarm; an alarm already acknowledged or cleared answers 409 saying
by whom and when. Deleting a rule clears its open alarms (``rule_deleted``). Each of these writes its history row
and its webhook deliveries in the transaction of the change (the store's methods take the announcement to write).

A tenant has at most ``rules_max`` rules and ``webhooks_max`` subscriptions (409 ``limit_reached`` past them).
Another tenant's ids, unknown ids and ids that are no UUID are all the same 404.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Protocol
from uuid import UUID

from sluice.domain.pages import bad_cursor, decode_cursor, encode_cursor, fill_page
from sluice.domain.webhooks import Announcement, Resolver, TargetPolicy, check_target, new_secret
from sluice.errors import AlarmNotActiveError, InvalidRequestError, LimitReachedError, NotFoundError, Problem
from sluice.models.alerts import (
    AlarmDetail,
    AlarmPage,
    AlarmQuery,
    AlarmView,
    AlertRuleCreate,
    AlertRulePage,
    AlertRuleQuery,
    AlertRuleUpdate,
    AlertRuleView,
    DeliveryPage,
    DeliveryQuery,
    DeliveryView,
    WebhookCreate,
    WebhookCreated,
    WebhookPage,
    WebhookQuery,
    WebhookView,
)

RULES_CURSOR, ALARMS_CURSOR, WEBHOOKS_CURSOR, DELIVERIES_CURSOR = "alert-rules", "alarms", "webhooks", "deliveries"
RULE_DELETED = "rule_deleted"
# The fields only a threshold rule takes, and the one only a silence rule takes.
THRESHOLD_FIELDS = ("unit", "condition", "threshold", "clear_threshold", "for_seconds")
SILENT_FIELDS = ("after_seconds",)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule as it will be stored (created, or changed by a PATCH)."""

    name: str
    kind: str
    severity: str
    system_id: UUID | None = None
    sensor_id: UUID | None = None
    unit: str | None = None
    condition: str | None = None
    threshold: float | None = None
    clear_threshold: float | None = None
    for_seconds: int | None = None
    after_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """Where a keyset page starts: after the row with this sort time and id."""

    at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """A person's change to alarms: who, when, and their note. The store writes it to each alarm's history and
    announces it (``alarm.<step>``, see ``alarm_announcement``) in the transaction of the change."""

    actor: str
    at: datetime
    note: str | None = None


class AlertStore(Protocol):
    """Where a tenant's rules, alarms, subscriptions and deliveries are kept; every method is scoped to a tenant."""

    def has_system(self, tenant_id: str, system_id: UUID) -> bool:
        """Whether the tenant has a system with this id."""
        ...

    def insert_rule(self, tenant_id: str, spec: RuleSpec, created_by: str, rules_max: int) -> AlertRuleView | None:
        """Store a new rule; None when the tenant has ``rules_max`` already. Raises NameTakenError."""
        ...

    def rule(self, tenant_id: str, rule_id: UUID) -> AlertRuleView | None:
        """The tenant's rule with this id."""
        ...

    def rules(self, tenant_id: str, limit: int, after: Position | None) -> list[AlertRuleView]:
        """The tenant's rules, oldest first, after ``after``."""
        ...

    def update_rule(self, tenant_id: str, rule_id: UUID, spec: RuleSpec) -> AlertRuleView | None:
        """Store the rule's new fields; None when it is gone. Raises NameTakenError."""
        ...

    def delete_rule(self, tenant_id: str, rule_id: UUID, change: AlarmChange) -> list[AlarmView] | None:
        """Clear the rule's open alarms (history and deliveries each) and delete it, in one transaction; the alarms
        it cleared, or None when the tenant has no such rule."""
        ...

    def alarms(self, tenant_id: str, query: AlarmQuery, after: Position | None) -> list[AlarmView]:
        """The tenant's alarms the query selects, newest raised first, after ``after`` (``query.limit`` + 1 rows at
        most: the domain asks for one more)."""
        ...

    def alarm(self, tenant_id: str, alarm_id: UUID) -> AlarmDetail | None:
        """The tenant's alarm with its history, oldest first."""
        ...

    def acknowledge(self, tenant_id: str, alarm_id: UUID, change: AlarmChange) -> AlarmView | None:
        """Acknowledge the alarm if it is active (its history row and deliveries in the same transaction); None when
        it is not active, or not the tenant's."""
        ...

    def insert_webhook(
        self, tenant_id: str, request: WebhookCreate, created_by: str, secret: str, webhooks_max: int
    ) -> WebhookView | None:
        """Store a subscription and its secret; None when the tenant has ``webhooks_max`` already."""
        ...

    def webhook(self, tenant_id: str, webhook_id: UUID) -> WebhookView | None:
        """The tenant's subscription with this id."""
        ...

    def webhooks(self, tenant_id: str, limit: int, after: Position | None) -> list[WebhookView]:
        """The tenant's subscriptions, oldest first, after ``after``."""
        ...

    def delete_webhook(self, tenant_id: str, webhook_id: UUID) -> bool:
        """Delete the subscription with its secret and deliveries; False when the tenant has none with this id."""
        ...

    def deliveries(
        self, tenant_id: str, webhook_id: UUID, query: DeliveryQuery, after: Position | None
    ) -> list[DeliveryView]:
        """The subscription's deliveries with their attempts, newest first, after ``after``."""
        ...


@dataclass(frozen=True, slots=True)
class AlertLimits:
    """How many rules and subscriptions one tenant may have."""

    rules_max: int
    webhooks_max: int


# --- rules ------------------------------------------------------------------------------------------------------


def create_rule(
    store: AlertStore, tenant_id: str, principal: str, request: AlertRuleCreate, limits: AlertLimits
) -> AlertRuleView:
    """Store a new rule for the tenant (``POST /api/v1/alert-rules``)."""
    spec = RuleSpec(**request.model_dump(exclude={"kind"}, mode="python"), kind=request.kind)
    check_rule(spec)
    check_system(store, tenant_id, spec.system_id)
    created = store.insert_rule(tenant_id, spec, principal, limits.rules_max)
    if created is None:
        raise LimitReachedError(
            f"the tenant has {limits.rules_max} alert rules, the most it may have",
            [Problem(field=None, reason="delete a rule before creating another")],
        )
    return created


def change_rule(store: AlertStore, tenant_id: str, rule_id: str, request: AlertRuleUpdate) -> AlertRuleView:
    """Change the fields the PATCH sends, judged on the rule they leave (``PATCH /api/v1/alert-rules/{rule_id}``)."""
    current = find_rule(store, tenant_id, rule_id)
    changes = {name: getattr(request, name) for name in request.model_fields_set}
    for required in ("name", "severity"):
        if required in changes and changes[required] is None:
            raise InvalidRequestError(
                "the rule is not valid", [Problem(field=required, reason="may be changed, not removed")]
            )
    spec = replace(rule_spec(current), **changes)
    check_rule(spec)
    if spec.system_id != current.system_id:
        check_system(store, tenant_id, spec.system_id)
    changed = store.update_rule(tenant_id, current.id, spec)
    if changed is None:
        raise _rule_not_found(rule_id)
    return changed


def remove_rule(store: AlertStore, tenant_id: str, rule_id: str, principal: str, now: datetime) -> list[AlarmView]:
    """Delete the rule and clear its open alarms, each with an ``alarm.cleared`` delivery (``DELETE``)."""
    change = AlarmChange(actor=principal, at=now)
    cleared = store.delete_rule(tenant_id, _uuid(rule_id, _rule_not_found), change)
    if cleared is None:
        raise _rule_not_found(rule_id)
    return cleared


def find_rule(store: AlertStore, tenant_id: str, rule_id: str) -> AlertRuleView:
    """One of the tenant's rules; 404 for any other id."""
    found = store.rule(tenant_id, _uuid(rule_id, _rule_not_found))
    if found is None:
        raise _rule_not_found(rule_id)
    return found


def list_rules(store: AlertStore, tenant_id: str, query: AlertRuleQuery) -> AlertRulePage:
    """One page of the tenant's rules, oldest first."""
    after = None if query.cursor is None else position_of(RULES_CURSOR, query.cursor)
    shown, following = fill_page(store.rules(tenant_id, query.limit + 1, after), query.limit)
    last = shown[-1] if following else None
    cursor = None if last is None else _cursor(RULES_CURSOR, last.created_at, str(last.id))
    return AlertRulePage(items=shown, next_cursor=cursor)


def check_rule(spec: RuleSpec) -> None:
    """400 naming each field that the rule's kind does not take, that it needs and lacks, or a clear threshold on
    the wrong side of the threshold."""
    fields = asdict(spec)
    needed, refused = (
        (THRESHOLD_FIELDS, SILENT_FIELDS) if spec.kind == "threshold" else (SILENT_FIELDS, THRESHOLD_FIELDS)
    )
    problems = [
        Problem(field=name, reason=f"required for a {spec.kind} rule") for name in needed if fields[name] is None
    ]
    problems += [
        Problem(field=name, reason=f"a {spec.kind} rule has no {name} (send null or leave it out)")
        for name in refused
        if fields[name] is not None
    ]
    if spec.threshold is not None and spec.clear_threshold is not None and spec.condition is not None:
        safe = (
            spec.clear_threshold < spec.threshold
            if spec.condition == "above"
            else spec.clear_threshold > spec.threshold
        )
        if not safe:
            side = "below" if spec.condition == "above" else "above"
            problems.append(
                Problem(
                    field="clear_threshold",
                    reason=f"must be {side} the threshold ({spec.threshold:g}) for condition {spec.condition}: the"
                    " alarm clears once the value is back on the safe side",
                )
            )
    if problems:
        raise InvalidRequestError("the rule is not valid", problems)


def check_system(store: AlertStore, tenant_id: str, system_id: UUID | None) -> None:
    """404 naming ``system_id`` when it is not one of the tenant's systems (as every API answers another tenant's
    ids)."""
    if system_id is not None and not store.has_system(tenant_id, system_id):
        raise NotFoundError(
            f"no system {system_id} in this tenant",
            [Problem(field="system_id", reason="register the system first (POST /api/v1/systems)")],
        )


def rule_spec(rule: AlertRuleView) -> RuleSpec:
    """The stored fields of a rule."""
    return RuleSpec(
        name=rule.name,
        kind=rule.kind,
        severity=rule.severity,
        system_id=rule.system_id,
        sensor_id=rule.sensor_id,
        unit=rule.unit,
        condition=rule.condition,
        threshold=rule.threshold,
        clear_threshold=rule.clear_threshold,
        for_seconds=rule.for_seconds,
        after_seconds=rule.after_seconds,
    )


# --- alarms -----------------------------------------------------------------------------------------------------


def list_alarms(store: AlertStore, tenant_id: str, query: AlarmQuery) -> AlarmPage:
    """One page of the tenant's alarms the query selects, newest raised first."""
    after = None if query.cursor is None else position_of(ALARMS_CURSOR, query.cursor)
    rows = store.alarms(tenant_id, query.model_copy(update={"limit": query.limit + 1}), after)
    shown, following = fill_page(rows, query.limit)
    last = shown[-1] if following else None
    return AlarmPage(
        items=shown, next_cursor=None if last is None else _cursor(ALARMS_CURSOR, last.raised_at, str(last.id))
    )


def find_alarm(store: AlertStore, tenant_id: str, alarm_id: str) -> AlarmDetail:
    """One of the tenant's alarms with its history; 404 for any other id."""
    found = store.alarm(tenant_id, _uuid(alarm_id, _alarm_not_found))
    if found is None:
        raise _alarm_not_found(alarm_id)
    return found


def acknowledge_alarm(  # noqa: PLR0913 - the alarm, and who acknowledges it when, with what note
    store: AlertStore, tenant_id: str, alarm_id: str, *, principal: str, note: str | None, now: datetime
) -> AlarmView:
    """Record that ``principal`` has seen the active alarm, with an ``alarm.acknowledged`` delivery; 409 when it is
    acknowledged already or cleared."""
    wanted = _uuid(alarm_id, _alarm_not_found)
    acknowledged = store.acknowledge(tenant_id, wanted, AlarmChange(principal, now, note))
    if acknowledged is not None:
        return acknowledged
    found = store.alarm(tenant_id, wanted)
    if found is None:
        raise _alarm_not_found(alarm_id)
    raise not_active(found)


def not_active(alarm: AlarmView) -> AlarmNotActiveError:
    """The 409 for acknowledging an alarm that is not active, saying who acknowledged or what cleared it, and when
    (the instants written as the API's JSON writes them)."""
    if alarm.status == "cleared":
        message = f"alarm {alarm.id} was cleared at {_shown(alarm.cleared_at)} ({alarm.cleared_reason or 'cleared'})"
    else:
        message = f"alarm {alarm.id} was acknowledged by {alarm.acknowledged_by} at {_shown(alarm.acknowledged_at)}"
    reason = f"only an active alarm is acknowledged; {message}"
    return AlarmNotActiveError(message, [Problem(field=None, reason=reason)])


def _shown(moment: datetime | None) -> str:
    return "an unknown time" if moment is None else moment.isoformat().replace("+00:00", "Z")


def alarm_announcement(tenant_id: str, alarm: AlarmView, event_type: str, at: datetime) -> Announcement:
    """The deliveries' announcement of an alarm's change: its key names the event and the alarm (one delivery per
    subscription, however often it is written), its data is the alarm's view as the change leaves it."""
    return Announcement(
        tenant_id=tenant_id,
        event_type=event_type,
        event_key=f"{event_type}:{alarm.id}",
        at=at,
        data=alarm.model_dump(mode="json"),
    )


# --- webhooks ---------------------------------------------------------------------------------------------------


def create_webhook(  # noqa: PLR0913 - the request, who sends it, and the policy it is judged by
    store: AlertStore,
    tenant_id: str,
    request: WebhookCreate,
    *,
    principal: str,
    policy: TargetPolicy,
    resolve: Resolver,
    limits: AlertLimits,
) -> WebhookCreated:
    """Subscribe ``request.url`` to the events, with a new signing secret shown in this answer only."""
    try:
        check_target(request.url, policy, resolve)
    # TargetRefusedError, or urlsplit's own ValueError for a URL it cannot split (an unclosed "[" of an IPv6 host).
    except ValueError as exc:
        raise InvalidRequestError("the webhook's URL is refused", [Problem(field="url", reason=str(exc))]) from None
    secret = new_secret()
    created = store.insert_webhook(tenant_id, request, principal, secret, limits.webhooks_max)
    if created is None:
        raise LimitReachedError(
            f"the tenant has {limits.webhooks_max} webhook subscriptions, the most it may have",
            [Problem(field=None, reason="delete a subscription before creating another")],
        )
    return WebhookCreated(**created.model_dump(), secret=secret)


def find_webhook(store: AlertStore, tenant_id: str, webhook_id: str) -> WebhookView:
    """One of the tenant's subscriptions; 404 for any other id."""
    found = store.webhook(tenant_id, _uuid(webhook_id, _webhook_not_found))
    if found is None:
        raise _webhook_not_found(webhook_id)
    return found


def list_webhooks(store: AlertStore, tenant_id: str, query: WebhookQuery) -> WebhookPage:
    """One page of the tenant's subscriptions, oldest first."""
    after = None if query.cursor is None else position_of(WEBHOOKS_CURSOR, query.cursor)
    shown, following = fill_page(store.webhooks(tenant_id, query.limit + 1, after), query.limit)
    last = shown[-1] if following else None
    cursor = None if last is None else _cursor(WEBHOOKS_CURSOR, last.created_at, str(last.id))
    return WebhookPage(items=shown, next_cursor=cursor)


def remove_webhook(store: AlertStore, tenant_id: str, webhook_id: str) -> None:
    """Delete the subscription; its pending deliveries go with it."""
    if not store.delete_webhook(tenant_id, _uuid(webhook_id, _webhook_not_found)):
        raise _webhook_not_found(webhook_id)


def list_deliveries(store: AlertStore, tenant_id: str, webhook_id: str, query: DeliveryQuery) -> DeliveryPage:
    """One page of a subscription's deliveries with their attempts, newest first."""
    found = find_webhook(store, tenant_id, webhook_id)
    after = None if query.cursor is None else position_of(DELIVERIES_CURSOR, query.cursor)
    rows = store.deliveries(tenant_id, found.id, query.model_copy(update={"limit": query.limit + 1}), after)
    shown, following = fill_page(rows, query.limit)
    last = shown[-1] if following else None
    cursor = None if last is None else _cursor(DELIVERIES_CURSOR, last.created_at, last.id)
    return DeliveryPage(items=shown, next_cursor=cursor)


# --- ids and cursors --------------------------------------------------------------------------------------------


def _uuid(text: str, not_found: Callable[[str], NotFoundError]) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise not_found(text) from None


def _rule_not_found(rule_id: str) -> NotFoundError:
    return NotFoundError(f"no alert rule {rule_id} in this tenant")


def _alarm_not_found(alarm_id: str) -> NotFoundError:
    return NotFoundError(f"no alarm {alarm_id} in this tenant")


def _webhook_not_found(webhook_id: str) -> NotFoundError:
    return NotFoundError(f"no webhook {webhook_id} in this tenant")


def _cursor(kind: str, at: datetime, row_id: str) -> str:
    return encode_cursor(kind, {"at": at.isoformat(), "id": row_id})


def position_of(kind: str, cursor: str) -> Position:
    """Where a page of a listing of ``kind`` starts, from the cursor the previous page handed out; 400 otherwise."""
    position = decode_cursor(kind, cursor)
    at, row_id = position.get("at"), position.get("id")
    if not isinstance(at, str) or not isinstance(row_id, str):
        raise bad_cursor()
    try:
        moment = datetime.fromisoformat(at)
        # Every listing but the deliveries' (whose ids are message ids) is keyed by UUIDs.
        if kind != DELIVERIES_CURSOR:
            UUID(row_id)
    except ValueError:
        raise bad_cursor() from None
    if moment.tzinfo is None or not row_id:
        raise bad_cursor()
    return Position(at=moment, id=row_id)
