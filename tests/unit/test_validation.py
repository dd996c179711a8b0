"""The reading rules: one verdict per reading, the right reason, and the boundaries of docs/architecture.md, The
reading rules. Single verdicts come from ``ReadingValidator.judge``; repeats within an object, from the worker's
chunk loop (``sluice.domain.chunks``), the one place that finds them."""

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.domain.chunks import ChunkStream, SystemBook
from sluice.domain.formats import Record
from sluice.domain.load import LoadPolicy, job_for
from sluice.domain.objects import ObjectRef, Target, TargetKind
from sluice.domain.rules import DEFAULT_RULES, ReadingRules
from sluice.domain.validation import ReadingValidator, show, years_before
from sluice.models.readings import QuarantineReason, Rejection, ValidReading, Verdict

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
SENSOR = "6f1c3a1e-8d2b-4c5e-9f00-0123456789ab"
SYSTEM = UUID("3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01")
JOB = job_for(
    ObjectRef("b", "drops/demo/x.jsonl"),
    Target(TargetKind.DROP, tenant_id="demo", job_id=UUID("0b7f6a8e-2c1d-4e5f-9a8b-7c6d5e4f3a2b")),
    LoadPolicy(chunk_readings=50_000, job_retention=timedelta(days=90)),
    NOW,
)


def reading(**overrides: Any) -> dict[str, Any]:
    """A valid reading, with some fields replaced (or removed, when the override is ``...``)."""
    base: dict[str, Any] = {
        "sensor_id": SENSOR,
        "timestamp": "2026-11-22T11:59:00Z",
        "value": 250.5,
        "unit": "bar",
        "quality": 95,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def judge(raw: object, now: datetime = NOW, rules: ReadingRules = DEFAULT_RULES) -> Verdict:
    return ReadingValidator(now, rules).judge(raw)


def reason_of(raw: object, now: datetime = NOW, rules: ReadingRules = DEFAULT_RULES) -> QuarantineReason | None:
    verdict = judge(raw, now, rules)
    return verdict.reason if isinstance(verdict, Rejection) else None


def judged_chunk(raws: Sequence[object], first_position: int = 0) -> ChunkStream:
    """The readings judged as the worker judges an object's chunk: every one is valid or quarantined."""
    records = [Record(position, str(SYSTEM), raw) for position, raw in enumerate(raws, start=first_position)]
    chunk = ChunkStream(0, iter(records), ReadingValidator(NOW), SystemBook(JOB, {SYSTEM}))
    chunk.finish()
    return chunk


def test_a_valid_reading_becomes_a_typed_tuple_in_utc() -> None:
    verdict = judge(reading(timestamp="2026-11-22T14:30:00+03:00", value=7), NOW)

    assert verdict == ValidReading(
        time=datetime(2026, 11, 22, 11, 30, tzinfo=UTC),
        sensor_id=UUID(SENSOR),
        value=7.0,
        unit="bar",
        quality=95,
    )
    assert type(verdict.value) is float


@pytest.mark.parametrize(
    ("unit", "value", "expected"),
    [
        ("bar", 0, None),
        ("bar", 700, None),
        ("bar", 700.0, None),
        ("bar", 700.0000001, QuarantineReason.OUT_OF_RANGE),
        ("bar", -0.0000001, QuarantineReason.OUT_OF_RANGE),
        ("celsius", -40, None),
        ("celsius", -40.0000001, QuarantineReason.OUT_OF_RANGE),
        ("celsius", 120, None),
        ("celsius", 120.0000001, QuarantineReason.OUT_OF_RANGE),
        ("lpm", 1000, None),
        ("lpm", 1000.5, QuarantineReason.OUT_OF_RANGE),
        ("rpm", 6000, None),
        ("rpm", 6001, QuarantineReason.OUT_OF_RANGE),
        ("bar", math.nan, QuarantineReason.OUT_OF_RANGE),
        ("bar", math.inf, QuarantineReason.OUT_OF_RANGE),
        ("celsius", -math.inf, QuarantineReason.OUT_OF_RANGE),
        pytest.param("bar", 10**5000, QuarantineReason.OUT_OF_RANGE, id="bar-5001-digits"),
    ],
)
def test_value_ranges_are_inclusive_and_reject_non_finite(
    unit: str, value: float, expected: QuarantineReason | None
) -> None:
    assert reason_of(reading(unit=unit, value=value)) == expected


@pytest.mark.parametrize(
    ("quality", "expected"),
    [
        (49, QuarantineReason.LOW_QUALITY),
        (50, None),
        (90, None),
        (100, None),
        (0, QuarantineReason.LOW_QUALITY),
        (101, QuarantineReason.OUT_OF_RANGE),
        (-1, QuarantineReason.OUT_OF_RANGE),
        (95.0, None),
        (95.5, QuarantineReason.PARSE_ERROR),
        (True, QuarantineReason.PARSE_ERROR),
        ("95", QuarantineReason.PARSE_ERROR),
    ],
)
def test_quality_threshold_is_fifty(quality: object, expected: QuarantineReason | None) -> None:
    assert reason_of(reading(quality=quality)) == expected


def _at(moment: datetime) -> str:
    return moment.isoformat()


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (_at(NOW + timedelta(minutes=5)), None),
        (_at(NOW + timedelta(minutes=5, seconds=-1)), None),
        (_at(NOW + timedelta(minutes=5, seconds=1)), QuarantineReason.INVALID_TIMESTAMP),
        (_at(NOW.replace(year=2021)), None),
        (_at(NOW.replace(year=2021) - timedelta(seconds=1)), QuarantineReason.INVALID_TIMESTAMP),
        ("2026-11-22T12:00:00", QuarantineReason.INVALID_TIMESTAMP),
        ("2026-11-22", QuarantineReason.INVALID_TIMESTAMP),
        ("2026-11-22T15:04:59+03:00", None),
        ("2026-11-22T15:05:01+03:00", QuarantineReason.INVALID_TIMESTAMP),
        ("2026-11-22T07:00:00-05:00", None),
        ("2026-11-22T11:00:00.123456Z", None),
        ("yesterday", QuarantineReason.INVALID_TIMESTAMP),
        ("2026-02-30T00:00:00Z", QuarantineReason.INVALID_TIMESTAMP),
        ("", QuarantineReason.INVALID_TIMESTAMP),
        (1732276800, QuarantineReason.PARSE_ERROR),
        (None, QuarantineReason.PARSE_ERROR),
    ],
)
def test_timestamps_need_an_offset_and_a_plausible_instant(
    timestamp: object, expected: QuarantineReason | None
) -> None:
    assert reason_of(reading(timestamp=timestamp)) == expected


def test_an_offset_timestamp_is_stored_as_the_same_instant_in_utc() -> None:
    verdict = judge(reading(timestamp="2026-11-22T13:00:00+03:00"), NOW)

    assert isinstance(verdict, ValidReading)
    assert verdict.time == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert verdict.time.tzinfo is UTC


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ([1, 2, 3], None),
        ("a string", None),
        (None, None),
        (reading(sensor_id=...), "sensor_id"),
        (reading(timestamp=...), "timestamp"),
        (reading(value=...), "value"),
        (reading(unit=...), "unit"),
        (reading(quality=...), "quality"),
        (reading(sensor_id="not-a-uuid"), "sensor_id"),
        (reading(sensor_id=12), "sensor_id"),
        (reading(sensor_id="x" * 5000), "sensor_id"),
        (reading(value="250.5"), "value"),
        (reading(value=True), "value"),
        (reading(value=None), "value"),
        (reading(unit=["bar"]), "unit"),
    ],
)
def test_unreadable_readings_are_parse_errors_naming_the_field(raw: object, field: str | None) -> None:
    verdict = judge(raw, NOW)

    assert isinstance(verdict, Rejection)
    assert verdict.reason == QuarantineReason.PARSE_ERROR
    assert verdict.field == field


@pytest.mark.parametrize("unit", ["BAR", "psi", "", "kelvin"])
def test_unknown_units_are_invalid_unit(unit: str) -> None:
    verdict = judge(reading(unit=unit), NOW)

    assert isinstance(verdict, Rejection)
    assert verdict.reason == QuarantineReason.INVALID_UNIT
    assert verdict.expected == "one of bar, celsius, lpm, rpm"


def test_a_rejection_explains_field_expected_and_got() -> None:
    verdict = judge(reading(value=700.5), NOW)

    assert isinstance(verdict, Rejection)
    assert verdict.as_details() == {
        "field": "value",
        "expected": "0..700 bar",
        "got": "700.5",
        "message": "value: expected 0..700 bar, got 700.5",
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (reading(unit="psi", value=-5, quality=10, timestamp="naive"), QuarantineReason.INVALID_UNIT),
        (reading(value=-5, quality=10, timestamp="naive"), QuarantineReason.OUT_OF_RANGE),
        (reading(quality=10, timestamp="naive"), QuarantineReason.LOW_QUALITY),
        (reading(quality="x", unit="psi"), QuarantineReason.PARSE_ERROR),
    ],
)
def test_the_first_failing_rule_decides_the_reason(raw: object, expected: QuarantineReason) -> None:
    assert reason_of(raw) == expected


def test_duplicates_inside_a_batch_keep_the_first_and_quarantine_the_rest() -> None:
    same_instant_other_offset = reading(timestamp="2026-11-22T14:59:00+03:00")
    raws = [
        reading(),
        reading(value=1.0),
        same_instant_other_offset,
        reading(timestamp="2026-11-22T11:58:00Z"),
    ]

    chunk = judged_chunk(raws)

    assert [row[2] for row in chunk.rows] == [250.5, 250.5]
    assert [source.position for source in chunk.sources] == [0, 3]
    assert [(row.position, row.reason, json.loads(row.details)["got"]) for row in chunk.quarantine] == [
        (1, QuarantineReason.DUPLICATE, "a repeat of #0"),
        (2, QuarantineReason.DUPLICATE, "a repeat of #0"),
    ]
    assert json.loads(chunk.quarantine[1].raw) == same_instant_other_offset


def test_positions_continue_from_the_given_offset() -> None:
    chunk = judged_chunk([reading(), "junk", reading(value=1.0)], first_position=50_000)

    assert chunk.total == 3
    assert [source.position for source in chunk.sources] == [50_000]
    assert [row.position for row in chunk.quarantine] == [50_001, 50_002]
    assert json.loads(chunk.quarantine[1].details)["got"] == "a repeat of #50000"


def test_rules_are_configurable() -> None:
    strict = ReadingRules(unit_ranges={"bar": (0.0, 10.0)}, min_quality=90, max_future_skew=timedelta(0))

    assert reason_of(reading(value=11), NOW, strict) == QuarantineReason.OUT_OF_RANGE
    assert reason_of(reading(value=5, quality=89), NOW, strict) == QuarantineReason.LOW_QUALITY
    assert reason_of(reading(unit="rpm"), NOW, strict) == QuarantineReason.INVALID_UNIT
    assert reason_of(reading(value=5, quality=90, timestamp=_at(NOW)), NOW, strict) is None
    assert reason_of(reading(value=5, timestamp=_at(NOW + timedelta(seconds=1))), NOW, strict) == (
        QuarantineReason.INVALID_TIMESTAMP
    )
    assert isinstance(judge(reading(value=5), NOW, DEFAULT_RULES), ValidReading)


def test_the_clock_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ReadingValidator(datetime(2026, 1, 1))


def test_a_non_utc_clock_gives_the_same_verdicts() -> None:
    tokyo_now = NOW.astimezone(timezone(timedelta(hours=9)))
    just_late = _at(NOW + timedelta(minutes=5, seconds=1))

    assert reason_of(reading(timestamp=just_late)) == QuarantineReason.INVALID_TIMESTAMP
    assert reason_of(reading(timestamp=just_late), tokyo_now) == QuarantineReason.INVALID_TIMESTAMP


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 22, tzinfo=UTC), datetime(2021, 11, 22, tzinfo=UTC)),
        (datetime(2028, 2, 29, 6, tzinfo=UTC), datetime(2023, 2, 28, 6, tzinfo=UTC)),
    ],
)
def test_years_before_is_calendar_based(moment: datetime, expected: datetime) -> None:
    assert years_before(moment, 5) == expected


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param(10**5000, "an integer of about 5001 digits", id="5001-digits"),
        ("é" * 200, "'" + "é" * 76 + "..."),
        (math.nan, "nan"),
        (None, "null"),
        (False, "false"),
        ({"a": 1}, "an object of 1"),
        ([1, 2], "an array of 2"),
        (1.5, "1.5"),
    ],
)
def test_show_keeps_hostile_values_short(value: object, shown: str) -> None:
    assert show(value) == shown


def test_the_parse_caches_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sluice.domain.validation._CACHE_LIMIT", 4)
    validator = ReadingValidator(NOW)
    raws = [
        reading(sensor_id=f"00000000-0000-4000-8000-{i:012d}", timestamp=f"2026-11-22T11:00:{i:02d}Z")
        for i in range(10)
    ]

    verdicts = [validator.judge(raw) for raw in raws]

    assert all(type(verdict) is ValidReading for verdict in verdicts)
    assert len({verdict[1] for verdict in verdicts}) == 10
    assert len(validator._sensor_ids) <= 4
    assert len(validator._timestamps) <= 4


# --- properties -------------------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
field_values = st.one_of(
    json_scalars,
    st.uuids().map(str),
    st.sampled_from(["bar", "celsius", "lpm", "rpm", "psi"]),
    st.datetimes(
        min_value=datetime(2015, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.sampled_from([None, UTC])
    ).map(datetime.isoformat),
    st.integers(min_value=-10, max_value=120),
)
readings_like = st.one_of(
    json_scalars,
    st.lists(json_scalars, max_size=3),
    st.dictionaries(st.sampled_from(["sensor_id", "timestamp", "value", "unit", "quality", "extra"]), field_values),
)


@given(st.lists(readings_like, max_size=40))
def test_every_reading_gets_exactly_one_verdict(raws: list[object]) -> None:
    chunk = judged_chunk(raws)

    quarantined = [row.position for row in chunk.quarantine]
    kept = [source.position for source in chunk.sources]
    assert chunk.total == len(raws)
    assert len(chunk.rows) == len(kept)
    assert sorted(quarantined + kept) == list(range(len(raws)))
    # The verdict of a reading that is not a repeat is the validator's own.
    validator = ReadingValidator(NOW)
    for row in chunk.quarantine:
        verdict = validator.judge(raws[row.position])
        if row.reason is QuarantineReason.DUPLICATE:
            assert isinstance(verdict, ValidReading)
        else:
            assert isinstance(verdict, Rejection)
            assert row.reason is verdict.reason
    for source, stored in zip(chunk.sources, chunk.rows, strict=True):
        assert stored == (*validator.judge(source.raw), SYSTEM, JOB.job_id)


@given(readings_like)
def test_an_invalid_reading_always_carries_a_reason_and_a_message(raw: object) -> None:
    verdict = judge(raw, NOW)

    if isinstance(verdict, Rejection):
        assert verdict.reason in set(QuarantineReason)
        assert verdict.expected
        assert verdict.got
        assert len(verdict.message) < 300
    else:
        low, high = DEFAULT_RULES.unit_ranges[verdict.unit]
        assert low <= verdict.value <= high
        assert 50 <= verdict.quality <= 100
        assert verdict.time.tzinfo is UTC
        assert NOW - timedelta(days=5 * 366) <= verdict.time <= NOW + timedelta(minutes=5)


@given(
    value=st.floats(allow_nan=True, allow_infinity=True),
    unit=st.sampled_from(["bar", "celsius", "lpm", "rpm"]),
)
def test_a_value_is_valid_exactly_when_it_is_inside_its_units_range(value: float, unit: str) -> None:
    low, high = DEFAULT_RULES.unit_ranges[unit]

    verdict = judge(reading(unit=unit, value=value), NOW)

    assert isinstance(verdict, ValidReading) == (low <= value <= high)
