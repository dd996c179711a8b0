"""The minute's evaluation of a tenant's alert rules: which alarms to raise and which to clear.

Everything here is decided from data and the alarms already kept, never from what an earlier run happened to see,
so a run repeated (a redelivered schedule, a second evaluator, a run killed before its commit) decides the same.

**Threshold rules** look at each minute's average of one unit (``readings_1m``: ``sum / count``). A rule raises for
a sensor when its condition holds for ``for_seconds / 60`` consecutive minutes; a minute without readings breaks
the run. Its alarm clears at the first later minute whose average is on the safe side of ``clear_threshold`` (the
hysteresis: a value hovering at the threshold raises once). Only complete minutes count (the current minute is
still filling), and a raising is looked for only in windows whose last minute started within the look-back
(``lookback``, 15 minutes by default): readings arriving later than that are stored and shown, but raise nothing.
After an alarm clears, a new one needs a whole new run of minutes after the clearing minute, so one excursion
raises once.

**Silence rules** look at each sensor's newest reading (``sensor_latest``). A sensor that has reported at least once
and whose newest reading is ``after_seconds`` old or older raises; a reading newer than that clears it.

A rule's alarm for a sensor is unique while open (active or acknowledged); an open alarm whose sensor the rule no
longer covers (the rule was changed) is cleared with the reason ``rule_changed``.
"""

import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol
from uuid import UUID

MINUTE: Final = timedelta(minutes=1)
DEFAULT_LOOKBACK: Final = timedelta(minutes=15)


class RuleKind(StrEnum):
    THRESHOLD = "threshold"
    SILENT = "silent"


class Condition(StrEnum):
    ABOVE = "above"
    BELOW = "below"


class ClearReason(StrEnum):
    """Why an alarm cleared."""

    # The rule's clear condition held (threshold), or the sensor reported again (silence).
    CONDITION = "condition_cleared"
    # The rule no longer covers the sensor or its unit (it was changed).
    RULE_CHANGED = "rule_changed"
    # The rule was deleted (the API clears its alarms).
    RULE_DELETED = "rule_deleted"


@dataclass(frozen=True, slots=True)
class Rule:
    """An alert rule as the evaluator reads it."""

    id: UUID
    tenant_id: str
    name: str
    kind: RuleKind
    severity: str
    system_id: UUID | None = None
    sensor_id: UUID | None = None
    unit: str | None = None
    condition: Condition | None = None
    threshold: float = math.nan
    clear_threshold: float = math.nan
    for_seconds: int = 60
    after_seconds: int = 0

    @property
    def minutes(self) -> int:
        """How many consecutive minutes the condition must hold (a threshold rule)."""
        return max(1, self.for_seconds // 60)

    def covers(self, sensor: "SensorKey", unit: str | None) -> bool:
        """Whether the rule watches ``sensor`` (and, for a threshold rule, readings in ``unit``)."""
        if self.system_id is not None and sensor.system_id != self.system_id:
            return False
        if self.sensor_id is not None and sensor.sensor_id != self.sensor_id:
            return False
        return self.kind is RuleKind.SILENT or unit == self.unit

    def holds(self, value: float) -> bool:
        """Whether a minute's average meets the raising condition."""
        return value > self.threshold if self.condition is Condition.ABOVE else value < self.threshold

    def clears(self, value: float) -> bool:
        """Whether a minute's average is on the safe side of the clear threshold."""
        return value < self.clear_threshold if self.condition is Condition.ABOVE else value > self.clear_threshold


@dataclass(frozen=True, slots=True, order=True)
class SensorKey:
    system_id: UUID
    sensor_id: UUID


@dataclass(frozen=True, slots=True)
class Minute:
    """One complete minute of a sensor in one unit: its start and its readings' average."""

    bucket: datetime
    average: float


@dataclass(frozen=True, slots=True)
class KnownAlarm:
    """The newest alarm of a rule and sensor, as far as evaluation needs it."""

    id: UUID
    open: bool
    unit: str | None
    trigger_time: datetime
    cleared_time: datetime | None


class Change(StrEnum):
    RAISE = "raise"
    CLEAR = "clear"


@dataclass(frozen=True, slots=True)
class Transition:
    """One decision: raise an alarm (``alarm_id`` None) or clear the open one ``alarm_id``. ``at`` is data time:
    the end of the deciding minute, or for a silence the moment the sensor became silent (raise) or its newest
    reading (clear). ``value`` is the deciding minute's average (threshold rules)."""

    change: Change
    rule: Rule
    sensor: SensorKey
    unit: str | None
    at: datetime
    value: float | None = None
    alarm_id: UUID | None = None
    reason: ClearReason | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """What a run looks at: complete minutes before ``end`` (the start of the current minute), raisings only in
    windows whose last minute starts at or after ``end - lookback``."""

    now: datetime
    lookback: timedelta = DEFAULT_LOOKBACK

    @property
    def end(self) -> datetime:
        return self.now.replace(second=0, microsecond=0)

    @property
    def first_last_minute(self) -> datetime:
        """The earliest start a raising window's last minute may have."""
        return self.end - self.lookback

    def start_for(self, minutes: int) -> datetime:
        """The first minute a rule of ``minutes`` needs read."""
        return self.first_last_minute - (minutes - 1) * MINUTE


@dataclass(frozen=True, slots=True)
class Series:
    """One sensor's complete minutes in one unit, ascending, and the newest alarm a rule has for it."""

    sensor: SensorKey
    unit: str
    minutes: Sequence[Minute]
    known: KnownAlarm | None = None


def threshold_transitions(rule: Rule, series: Series, window: Window) -> list[Transition]:
    """The raisings and clearings of one threshold rule for one sensor, in data order (minutes at or after
    ``window.end`` are ignored: they are still filling)."""
    sensor, unit, minutes, known = series.sensor, series.unit, series.minutes, series.known
    is_open = known is not None and known.open
    # Most pairs of a healthy plant: nothing in the series could raise (or clear the open alarm).
    if not any((rule.clears if is_open else rule.holds)(minute.average) for minute in minutes):
        return []
    end, first_last_minute, needed = window.end, window.first_last_minute, rule.minutes
    transitions: list[Transition] = []
    open_since = known.trigger_time if known is not None and is_open else None
    open_id = known.id if known is not None and is_open else None
    # A raising must lie wholly after the last clearing: one excursion raises once.
    after = known.cleared_time if known is not None and not is_open else None
    run, previous = 0, None
    for minute in minutes:
        if minute.bucket >= end:
            break
        minute_end = minute.bucket + MINUTE
        if open_since is not None:
            if minute.bucket >= open_since and rule.clears(minute.average):
                transitions.append(
                    Transition(
                        Change.CLEAR, rule, sensor, unit, minute_end, minute.average, open_id, ClearReason.CONDITION
                    )
                )
                open_since, open_id, after, run = None, None, minute_end, 0
            previous = minute.bucket
            continue
        if after is not None and minute.bucket < after:
            previous = minute.bucket
            continue
        if rule.holds(minute.average):
            run = run + 1 if previous is not None and minute.bucket - previous == MINUTE and run else 1
        else:
            run = 0
        previous = minute.bucket
        if run >= needed and minute.bucket >= first_last_minute:
            transitions.append(Transition(Change.RAISE, rule, sensor, unit, minute_end, minute.average))
            open_since, open_id, run = minute_end, None, 0
    return transitions


def silence_transition(
    rule: Rule, sensor: SensorKey, last_time: datetime, known: KnownAlarm | None, now: datetime
) -> Transition | None:
    """Raise when the sensor's newest reading is ``after_seconds`` old; clear when a newer one came."""
    silent_since = last_time + timedelta(seconds=rule.after_seconds)
    is_open = known is not None and known.open
    if not is_open and now >= silent_since:
        return Transition(Change.RAISE, rule, sensor, None, silent_since)
    if known is not None and is_open and now < silent_since:
        return Transition(Change.CLEAR, rule, sensor, None, last_time, alarm_id=known.id, reason=ClearReason.CONDITION)
    return None


@dataclass(frozen=True, slots=True)
class TenantData:
    """What one tenant's evaluation reads: its rules, its sensors' minutes per unit (ascending), its sensors'
    newest readings, and the newest alarm of every rule and sensor that has one (open, or cleared recently
    enough to matter)."""

    rules: Sequence[Rule]
    minutes: dict[tuple[SensorKey, str], list[Minute]]
    latest: dict[SensorKey, datetime]
    alarms: dict[tuple[UUID, SensorKey], KnownAlarm]


def evaluate(data: TenantData, window: Window) -> list[Transition]:
    """Every transition of one tenant's rules in this run."""
    transitions: list[Transition] = []
    # A rule naming a system looks only at that system's sensors: 1,000 rules over 2,000 sensors are then 20,000
    # pairs to look at, not 2,000,000.
    series_of: dict[UUID | None, list[tuple[SensorKey, str, list[Minute]]]] = {None: []}
    for (sensor, unit), minutes in data.minutes.items():
        series_of.setdefault(sensor.system_id, []).append((sensor, unit, minutes))
        series_of[None].append((sensor, unit, minutes))
    latest_of: dict[UUID | None, list[tuple[SensorKey, datetime]]] = {None: []}
    for sensor, last_time in data.latest.items():
        latest_of.setdefault(sensor.system_id, []).append((sensor, last_time))
        latest_of[None].append((sensor, last_time))
    for rule in data.rules:
        if rule.kind is RuleKind.THRESHOLD:
            for sensor, unit, minutes in series_of.get(rule.system_id, ()):
                if rule.covers(sensor, unit):
                    series = Series(sensor, unit, minutes, data.alarms.get((rule.id, sensor)))
                    transitions += threshold_transitions(rule, series, window)
        else:
            for sensor, last_time in latest_of.get(rule.system_id, ()):
                if rule.covers(sensor, None):
                    known = data.alarms.get((rule.id, sensor))
                    decided = silence_transition(rule, sensor, last_time, known, window.now)
                    if decided is not None:
                        transitions.append(decided)
    transitions += _uncovered(data, window.now)
    return transitions


def _uncovered(data: TenantData, now: datetime) -> Iterable[Transition]:
    """Open alarms of a rule that no longer covers their sensor or unit: cleared, ``rule_changed``."""
    rules = {rule.id: rule for rule in data.rules}
    for (rule_id, sensor), known in sorted(data.alarms.items(), key=lambda item: (str(item[0][0]), item[0][1])):
        rule = rules.get(rule_id)
        if known.open and rule is not None and not rule.covers(sensor, known.unit):
            yield Transition(
                Change.CLEAR, rule, sensor, known.unit, now, alarm_id=known.id, reason=ClearReason.RULE_CHANGED
            )


@dataclass(frozen=True, slots=True)
class Applied:
    """What one tenant's transitions did: alarms raised and cleared, deliveries written to the outbox."""

    raised: int = 0
    cleared: int = 0
    deliveries: int = 0


class TenantSession(Protocol):
    """One tenant's evaluation, in one transaction: read, then apply what was decided."""

    def read(self, window: Window) -> TenantData:
        """The rules and the data they need."""
        ...

    def apply(self, transitions: Sequence[Transition], now: datetime) -> Applied:
        """Write the alarms, their history and their deliveries."""
        ...


class EvaluationStore(Protocol):
    """Where rules and alarms are kept."""

    def tenants(self) -> list[str]:
        """The tenants that have rules, in a fixed order."""
        ...

    def session(self, tenant_id: str) -> AbstractContextManager[TenantSession | None]:
        """A transaction over ``tenant_id``'s rules and alarms, committed when the block ends without an error;
        None when another evaluator holds the tenant (it evaluates the same data: this run skips it)."""
        ...


@dataclass(slots=True)
class RunReport:
    """One run over every tenant."""

    tenants: int = 0
    evaluated: int = 0
    skipped: int = 0
    deferred: int = 0
    raised: int = 0
    cleared: int = 0
    deliveries: int = 0
    failures: list[tuple[str, Exception]] = field(default_factory=list)


def evaluate_all(store: EvaluationStore, window: Window, has_time: Callable[[], bool]) -> RunReport:
    """Evaluate every tenant, each in a transaction of its own, so a tenant whose evaluation fails (or whose rules
    another evaluator holds) never stops another's. The tenants start at a place that moves every minute: when a run
    is cut short for time, the tenants it did not reach come early in the next one."""
    tenants = store.tenants()
    report = RunReport(tenants=len(tenants))
    if not tenants:
        return report
    start = int(window.end.timestamp() // 60) % len(tenants)
    for tenant_id in tenants[start:] + tenants[:start]:
        if not has_time():
            report.deferred += 1
            continue
        try:
            with store.session(tenant_id) as session:
                if session is None:
                    report.skipped += 1
                    continue
                applied = session.apply(evaluate(session.read(window), window), window.now)
        except Exception as exc:
            report.failures.append((tenant_id, exc))
            continue
        report.evaluated += 1
        report.raised += applied.raised
        report.cleared += applied.cleared
        report.deliveries += applied.deliveries
    return report
