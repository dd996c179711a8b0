"""The evaluator's decisions (sluice.domain.evaluation): hysteresis, runs of minutes, the look-back, silence, and
the orchestration over tenants."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from sluice.domain.evaluation import (
    Applied,
    Change,
    ClearReason,
    Condition,
    KnownAlarm,
    Minute,
    Rule,
    RuleKind,
    SensorKey,
    Series,
    TenantData,
    Transition,
    Window,
    evaluate,
    evaluate_all,
    silence_transition,
    threshold_transitions,
)

NOW = datetime(2026, 12, 5, 12, 30, 20, tzinfo=UTC)
END = datetime(2026, 12, 5, 12, 30, tzinfo=UTC)
SYSTEM, OTHER_SYSTEM = UUID(int=1), UUID(int=2)
SENSOR = SensorKey(SYSTEM, UUID(int=11))


def rule(**changes: object) -> Rule:
    fields: dict[str, object] = {
        "id": UUID(int=100),
        "tenant_id": "acme",
        "name": "high pressure",
        "kind": RuleKind.THRESHOLD,
        "severity": "critical",
        "unit": "bar",
        "condition": Condition.ABOVE,
        "threshold": 200.0,
        "clear_threshold": 180.0,
        "for_seconds": 180,
    }
    return Rule(**(fields | changes))  # type: ignore[arg-type]


def minutes(*values: float | None, last: datetime = END - timedelta(minutes=1)) -> list[Minute]:
    """Consecutive minutes ending with the one that starts at ``last``; None leaves a minute without readings."""
    first = last - timedelta(minutes=len(values) - 1)
    return [Minute(first + timedelta(minutes=i), v) for i, v in enumerate(values) if v is not None]


def decide(values: Sequence[Minute], known: KnownAlarm | None = None, **changes: object) -> list[Transition]:
    return threshold_transitions(rule(**changes), Series(SENSOR, "bar", values, known), Window(NOW))


def test_a_condition_held_for_every_minute_raises_once_at_the_end_of_the_window() -> None:
    [raised] = decide(minutes(150, 210, 220, 230))

    assert raised.change is Change.RAISE
    assert raised.at == END  # the end of the third minute above: 12:29 + 1 min
    assert raised.value == 230


@pytest.mark.parametrize(
    "values",
    [
        (210, 220),  # two minutes of three
        (210, 190, 220),  # broken by a minute below
        (210, None, 220, 230),  # broken by a minute without readings
        (210, 220, 200),  # equal is not above
    ],
)
def test_a_condition_not_held_for_the_whole_duration_raises_nothing(values: tuple[float | None, ...]) -> None:
    assert decide(minutes(*values)) == []


def test_below_rules_mirror_above_rules() -> None:
    values = minutes(9, 4, 3, 2, 12)

    raised, cleared = decide(values, condition=Condition.BELOW, threshold=5.0, clear_threshold=10.0)

    assert (raised.change, raised.at, cleared.change, cleared.at) == (Change.RAISE, END - timedelta(minutes=1),
                                                                      Change.CLEAR, END)  # fmt: skip


def test_hysteresis_a_value_between_the_thresholds_neither_clears_nor_raises_again() -> None:
    open_alarm = KnownAlarm(uuid4(), True, "bar", END - timedelta(minutes=10), None)

    assert decide(minutes(199, 185, 181, 205, 190), open_alarm) == []


def test_the_clear_condition_clears_the_open_alarm_at_its_first_minute() -> None:
    alarm_id = uuid4()
    open_alarm = KnownAlarm(alarm_id, True, "bar", END - timedelta(minutes=5), None)

    [cleared] = decide(minutes(210, 179, 170), open_alarm)

    assert (cleared.change, cleared.alarm_id, cleared.reason) == (Change.CLEAR, alarm_id, ClearReason.CONDITION)
    assert cleared.at == END - timedelta(minutes=1)
    assert cleared.value == 179


def test_minutes_before_the_open_alarms_trigger_do_not_clear_it() -> None:
    open_alarm = KnownAlarm(uuid4(), True, "bar", END, None)

    assert decide(minutes(170, 170, 170), open_alarm) == []


def test_after_a_clearing_a_new_raising_needs_a_whole_new_run() -> None:
    cleared_at = END - timedelta(minutes=3)
    known = KnownAlarm(uuid4(), False, "bar", END - timedelta(minutes=10), cleared_at)

    # Three minutes above in a row, but only two after the clearing: the ones before it do not count.
    assert decide(minutes(230, 230, 230, 210, 220, last=END - timedelta(minutes=2)), known) == []
    [raised] = decide(minutes(230, 230, 230, 210, 220), known)
    assert raised.at == END


def test_late_data_raises_only_within_the_look_back() -> None:
    last = END - timedelta(minutes=16)  # its window's last minute started 16 minutes before the current one
    assert decide(minutes(210, 220, 230, last=last)) == []
    assert [t.change for t in decide(minutes(210, 220, 230, last=last + timedelta(minutes=1)))] == [Change.RAISE]


def test_the_current_minute_is_still_filling_and_not_evaluated() -> None:
    assert decide(minutes(210, 220, 230, last=END)) == []


def test_one_run_replays_a_whole_excursion_of_late_data_in_order() -> None:
    values = minutes(210, 220, 230, 175, 150, 210, 220, 230)

    steps = decide(values)

    assert [step.change for step in steps] == [Change.RAISE, Change.CLEAR, Change.RAISE]
    assert [step.at for step in steps] == [END - timedelta(minutes=5), END - timedelta(minutes=4), END]


def test_a_silent_sensor_raises_when_its_newest_reading_is_old_enough_and_clears_on_a_newer_one() -> None:
    silence = rule(kind=RuleKind.SILENT, unit=None, condition=None, after_seconds=600)
    last_time = NOW - timedelta(seconds=600)

    raised = silence_transition(silence, SENSOR, last_time, None, NOW)
    assert raised is not None
    assert (raised.change, raised.at) == (Change.RAISE, NOW)
    assert silence_transition(silence, SENSOR, NOW - timedelta(seconds=599), None, NOW) is None

    alarm = KnownAlarm(uuid4(), True, None, NOW, None)
    assert silence_transition(silence, SENSOR, last_time, alarm, NOW) is None
    cleared = silence_transition(silence, SENSOR, NOW - timedelta(seconds=5), alarm, NOW)
    assert cleared is not None
    assert (cleared.change, cleared.alarm_id) == (Change.CLEAR, alarm.id)


def test_scope_a_rule_watches_only_its_system_sensor_and_unit() -> None:
    other = SensorKey(OTHER_SYSTEM, UUID(int=12))
    data = TenantData(
        rules=[rule(system_id=SYSTEM)],
        minutes={(SENSOR, "bar"): minutes(210, 220, 230), (other, "bar"): minutes(210, 220, 230),
                 (SENSOR, "psi"): minutes(3000, 3100, 3200)},
        latest={},
        alarms={},
    )  # fmt: skip

    [raised] = evaluate(data, Window(NOW))

    assert (raised.sensor, raised.unit) == (SENSOR, "bar")


def test_an_open_alarm_the_changed_rule_no_longer_covers_is_cleared() -> None:
    alarm = KnownAlarm(uuid4(), True, "bar", END - timedelta(minutes=5), None)
    changed = rule(unit="psi")
    data = TenantData([changed], {}, {}, {(changed.id, SENSOR): alarm})

    [cleared] = evaluate(data, Window(NOW))

    assert (cleared.change, cleared.alarm_id, cleared.reason) == (Change.CLEAR, alarm.id, ClearReason.RULE_CHANGED)


class FakeSession:
    def __init__(self, data: TenantData, fail: bool = False) -> None:
        self.data, self.fail, self.applied = data, fail, list[Transition]()

    def read(self, window: Window) -> TenantData:
        if self.fail:
            raise RuntimeError("the database went away")
        return self.data

    def apply(self, transitions: Sequence[Transition], now: datetime) -> Applied:
        self.applied += transitions
        return Applied(raised=sum(t.change is Change.RAISE for t in transitions))


class FakeStore:
    def __init__(self, sessions: dict[str, FakeSession | None]) -> None:
        self.sessions, self.order = sessions, list[str]()

    def tenants(self) -> list[str]:
        return sorted(self.sessions)

    @contextmanager
    def session(self, tenant_id: str) -> Iterator[FakeSession | None]:
        self.order.append(tenant_id)
        yield self.sessions[tenant_id]


def raising_tenant() -> FakeSession:
    return FakeSession(TenantData([rule()], {(SENSOR, "bar"): minutes(210, 220, 230)}, {}, {}))


def test_a_failing_tenant_and_a_locked_one_never_stop_the_others() -> None:
    store = FakeStore({"a": raising_tenant(), "b": FakeSession(TenantData([], {}, {}, {}), fail=True),
                       "c": None, "d": raising_tenant()})  # fmt: skip

    report = evaluate_all(store, Window(NOW), has_time=lambda: True)

    assert (report.tenants, report.evaluated, report.skipped, report.raised) == (4, 2, 1, 2)
    assert [tenant for tenant, _ in report.failures] == ["b"]


def test_a_run_out_of_time_defers_the_rest_and_the_next_minute_starts_elsewhere() -> None:
    store = FakeStore({name: raising_tenant() for name in "abc"})
    budget = iter([True, False, False])

    report = evaluate_all(store, Window(NOW), has_time=lambda: next(budget))
    later = FakeStore({name: raising_tenant() for name in "abc"})
    evaluate_all(later, Window(NOW + timedelta(minutes=1)), has_time=lambda: True)

    assert (report.evaluated, report.deferred) == (1, 2)
    assert store.order[0] != later.order[0]
