"""Request and response shapes of the alerts APIs: alert rules, alarms, webhook subscriptions and their deliveries.

The models check each field alone (types, ranges, lengths); what depends on several fields (which fields a rule's
kind takes, the clear threshold on the safe side of the threshold) is checked by ``sluice.domain.alerts`` on the
rule as it will be stored, so a PATCH is judged with the fields it keeps.
"""

import unicodedata
from datetime import datetime
from typing import Annotated, Any, Final, Literal, Self
from uuid import UUID

from pydantic import AfterValidator, Field, FiniteFloat, field_validator, model_validator

from sluice.domain.webhooks import EVENT_TYPES
from sluice.models.api import ApiModel
from sluice.models.readings import Unit
from sluice.models.types import SensorId, SystemId, system_name

RULE_NAME_MAX: Final = 100
# A threshold must hold for whole minutes of readings_1m: from one minute to an hour.
FOR_SECONDS_MIN: Final = 60
FOR_SECONDS_MAX: Final = 3600
# A sensor may be silent from a minute to a week before a silence rule raises.
AFTER_SECONDS_MIN: Final = 60
AFTER_SECONDS_MAX: Final = 7 * 24 * 3600
NOTE_MAX: Final = 2000
# A URL a receiver is reached at: long enough for any real endpoint with a token in its query.
WEBHOOK_URL_MAX: Final = 2048
RULE_PAGE_DEFAULT, RULE_PAGE_MAX = 50, 100
ALARM_PAGE_DEFAULT, ALARM_PAGE_MAX = 50, 100
WEBHOOK_PAGE_DEFAULT, WEBHOOK_PAGE_MAX = 50, 100
DELIVERY_PAGE_DEFAULT, DELIVERY_PAGE_MAX = 25, 100

RuleKind = Literal["threshold", "silent"]
Condition = Literal["above", "below"]
Severity = Literal["info", "warning", "critical"]
AlarmStatus = Literal["active", "acknowledged", "cleared"]
AlarmEvent = Literal["raised", "acknowledged", "cleared"]
DeliveryStatus = Literal["pending", "delivered", "failed"]
EventType = Literal["alarm.raised", "alarm.cleared", "alarm.acknowledged", "job.completed", "job.failed"]


def _rule_name(text: str) -> str:
    # A system's name rules (trimmed, no control characters), with a shorter bound: a rule's name titles a message.
    if len(text.strip()) > RULE_NAME_MAX:
        raise ValueError(f"{len(text.strip())} characters once trimmed; at most {RULE_NAME_MAX}")
    return system_name(text)


def _whole_minutes(seconds: int) -> int:
    if seconds % 60:
        raise ValueError("must be a whole number of minutes (a multiple of 60)")
    return seconds


RuleName = Annotated[
    str, AfterValidator(_rule_name), Field(description="Rule name, unique per tenant (trimmed, 1..100 characters)")
]
ForSeconds = Annotated[
    int,
    Field(ge=FOR_SECONDS_MIN, le=FOR_SECONDS_MAX, description="How long the condition must hold, in whole minutes"),
    AfterValidator(_whole_minutes),
]
AfterSeconds = Annotated[
    int, Field(ge=AFTER_SECONDS_MIN, le=AFTER_SECONDS_MAX, description="Silence that raises the alarm, in seconds")
]


def _no_nul(text: str) -> str:
    # JSON carries a NUL character (U+0000); PostgreSQL's text cannot hold one.
    if "\x00" in text:
        raise ValueError("must not contain NUL (U+0000) characters")
    return text


def _url_text(url: str) -> str:
    # A URL holds no white space or control character (RFC 3986); one that did would reach the resolver or be
    # stored as the receiver never sent it.
    odd = next((char for char in url if char.isspace() or unicodedata.category(char) in {"Cc", "Cs"}), None)
    if odd is not None:
        raise ValueError(f"must not contain white space or control characters (found U+{ord(odd):04X})")
    return url


Note = Annotated[str, Field(max_length=NOTE_MAX), AfterValidator(_no_nul)]


class AlertRuleFields(ApiModel):
    """What a rule may say besides its name and kind; every field optional here, the kind decides which it needs."""

    system_id: SystemId | None = None
    sensor_id: SensorId | None = None
    unit: Unit | None = None
    condition: Condition | None = None
    threshold: FiniteFloat | None = None
    clear_threshold: FiniteFloat | None = None
    for_seconds: ForSeconds | None = None
    after_seconds: AfterSeconds | None = None


class AlertRuleCreate(AlertRuleFields):
    """The body of ``POST /api/v1/alert-rules``: a threshold rule (the default kind) or a silence rule."""

    name: RuleName
    kind: RuleKind = "threshold"
    severity: Severity


class AlertRuleUpdate(AlertRuleFields):
    """The body of ``PATCH /api/v1/alert-rules/{rule_id}``: the fields to change; the others keep their values.
    ``system_id`` and ``sensor_id`` may be sent as null (the rule then watches more sensors); the kind never
    changes."""

    name: RuleName | None = None
    severity: Severity | None = None
    # Declared only to say why it is refused, rather than "extra inputs are not permitted".
    kind: Any = None

    @field_validator("kind")
    @classmethod
    def _kind_is_fixed(cls, kind: object) -> None:
        raise ValueError("a rule's kind cannot change: delete the rule and create one of the other kind")

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        return self


class AlertRuleView(ApiModel):
    """An alert rule; the fields that do not apply to its kind are null."""

    id: UUID
    name: str
    kind: RuleKind
    system_id: SystemId | None
    sensor_id: SensorId | None
    unit: Unit | None
    condition: Condition | None
    threshold: float | None
    clear_threshold: float | None
    for_seconds: int | None
    after_seconds: int | None
    severity: Severity
    created_by: str
    created_at: datetime
    updated_at: datetime


class AlertRuleQuery(ApiModel):
    """The query of ``GET /api/v1/alert-rules``."""

    limit: int = Field(default=RULE_PAGE_DEFAULT, ge=1, le=RULE_PAGE_MAX)
    cursor: str | None = Field(default=None, max_length=512)


class AlertRulePage(ApiModel):
    """One page of a tenant's rules, oldest first; ``next_cursor`` is null on the last page."""

    items: list[AlertRuleView]
    next_cursor: str | None


class AlarmView(ApiModel):
    """An alarm: what raised it (the rule's name, kind and severity as they were), where, and its state."""

    id: UUID
    # Null once the rule is deleted.
    rule_id: UUID | None
    rule_name: str
    kind: RuleKind
    severity: Severity
    system_id: SystemId
    sensor_id: SensorId
    unit: Unit | None
    status: AlarmStatus
    # The minute average that raised a threshold alarm; null for a silence alarm.
    value: float | None
    trigger_time: datetime
    raised_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledge_note: str | None
    cleared_time: datetime | None
    cleared_at: datetime | None
    cleared_reason: str | None


class AlarmHistoryEntry(ApiModel):
    """One step of an alarm's life: who (null: the evaluator) did what, when."""

    event: AlarmEvent
    at: datetime
    actor: str | None
    note: str | None
    detail: dict[str, Any]


class AlarmDetail(AlarmView):
    """``GET /api/v1/alarms/{alarm_id}``: the alarm and its history, oldest first."""

    history: list[AlarmHistoryEntry]


class AlarmQuery(ApiModel):
    """The query of ``GET /api/v1/alarms``: all filters optional, combined with AND."""

    status: AlarmStatus | None = None
    severity: Severity | None = None
    system_id: SystemId | None = None
    limit: int = Field(default=ALARM_PAGE_DEFAULT, ge=1, le=ALARM_PAGE_MAX)
    cursor: str | None = Field(default=None, max_length=512)


class AlarmPage(ApiModel):
    """One page of a tenant's alarms, newest raised first; ``next_cursor`` is null on the last page."""

    items: list[AlarmView]
    next_cursor: str | None


class AcknowledgeRequest(ApiModel):
    """The body of ``POST /api/v1/alarms/{alarm_id}/acknowledge``."""

    note: Note | None = None


def _distinct(events: list[EventType]) -> list[EventType]:
    if len(set(events)) != len(events):
        raise ValueError("must not repeat an event")
    # Stored and shown in the order the docs list them, whatever order they were sent in.
    return sorted(events, key=EVENT_TYPES.index)


class WebhookCreate(ApiModel):
    """The body of ``POST /api/v1/webhooks``: where to send which events."""

    url: Annotated[str, Field(min_length=1, max_length=WEBHOOK_URL_MAX), AfterValidator(_url_text)]
    events: Annotated[list[EventType], Field(min_length=1, max_length=len(EVENT_TYPES)), AfterValidator(_distinct)]


class WebhookView(ApiModel):
    """A webhook subscription (its secret is shown only in the answer that created it)."""

    id: UUID
    url: str
    events: list[EventType]
    created_by: str
    created_at: datetime


class WebhookCreated(WebhookView):
    """201 answer to ``POST /api/v1/webhooks``: the subscription and its signing secret, shown this once."""

    secret: str


class WebhookQuery(ApiModel):
    """The query of ``GET /api/v1/webhooks``."""

    limit: int = Field(default=WEBHOOK_PAGE_DEFAULT, ge=1, le=WEBHOOK_PAGE_MAX)
    cursor: str | None = Field(default=None, max_length=512)


class WebhookPage(ApiModel):
    """One page of a tenant's subscriptions, oldest first; ``next_cursor`` is null on the last page."""

    items: list[WebhookView]
    next_cursor: str | None


class DeliveryQuery(ApiModel):
    """The query of ``GET /api/v1/webhooks/{webhook_id}/deliveries``."""

    status: DeliveryStatus | None = None
    limit: int = Field(default=DELIVERY_PAGE_DEFAULT, ge=1, le=DELIVERY_PAGE_MAX)
    cursor: str | None = Field(default=None, max_length=512)


class AttemptView(ApiModel):
    """One attempt of a delivery: when, how long, and the answer (a status code and the start of the body) or why
    there was none."""

    attempt: int
    at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    response: str | None


class DeliveryView(ApiModel):
    """One delivery of the outbox: ``id`` is the ``webhook-id`` header, the same on every attempt."""

    id: str
    event_type: str
    event_key: str
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    attempt_log: list[AttemptView]


class DeliveryPage(ApiModel):
    """One page of a subscription's deliveries, newest first; ``next_cursor`` is null on the last page."""

    items: list[DeliveryView]
    next_cursor: str | None
