"""The worker's short ways agree with the general rules: ``ReadingValidator.judge_row`` gives ``judge``'s verdict on
every reading (its caches warm or cold), and the chunk loop, which takes the short way for the readings of systems it
has met, sorts records exactly as judging each one in full does."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.domain.chunks import ChunkStream, QuarantineRow, RepeatFinder, SystemBook, quarantine_row
from sluice.domain.formats import Record, Unparsable
from sluice.domain.load import LoadPolicy, job_for
from sluice.domain.objects import ObjectRef, Target, TargetKind
from sluice.domain.rules import DEFAULT_RULES, ReadingRules
from sluice.domain.validation import ReadingValidator, parse_uuid
from sluice.models.readings import QuarantineReason, Rejection, ValidReading

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
SYSTEM = UUID("3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01")
JOB = job_for(
    ObjectRef("b", "drops/demo/x.csv"),
    Target(TargetKind.DROP, tenant_id="demo", job_id=UUID("0b7f6a8e-2c1d-4e5f-9a8b-7c6d5e4f3a2b")),
    LoadPolicy(chunk_readings=50_000, job_retention=timedelta(days=90)),
    NOW,
)
SUFFIX = (SYSTEM, JOB.job_id)


def mostly(valid: object, *others: object) -> st.SearchStrategy[Any]:
    """``valid`` half of the time, else one of ``others``: most readings are valid but for a field or two."""
    return st.one_of(st.just(valid), st.sampled_from(others))


# Few choices per field, so that readings repeat their sensors and timestamps and the caches fill up.
SENSORS = mostly(
    "6f1c3a1e-8d2b-4c5e-9f00-0123456789ab", "{6F1C3A1E8D2B4C5E9F000123456789AB}", "not-a-uuid", 7, None, ["x"]
)
TIMESTAMPS = mostly(
    *("2026-11-22T11:59:00Z", "2026-11-22T12:59:00+01:00", "2026-11-22T11:59:00", "2099-01-01T00:00:00Z"),
    *("1999-01-01T00:00:00Z", "yesterday", "2026-11-22T11:59:00Z\x00x", 1, {"a": 1}),
)
VALUES = mostly(250.5, 250, -1.0, 1e9, float("nan"), float("inf"), 10**400, True, "250.5", None, [1.0])
UNITS = mostly("bar", "celsius", "psi", "Bar", 5, None, ["bar"])
QUALITIES = mostly(95, 100, 0, 69, 70, -1, 101, 95.0, 95.5, float("nan"), "95", True, None, 10**400)
FIELDS = st.fixed_dictionaries(
    {"sensor_id": SENSORS, "timestamp": TIMESTAMPS, "value": VALUES, "unit": UNITS, "quality": QUALITIES}
)
RAWS: st.SearchStrategy[Any] = st.one_of(
    FIELDS,
    st.fixed_dictionaries(
        {},
        optional={"sensor_id": SENSORS, "timestamp": TIMESTAMPS, "value": VALUES, "unit": UNITS, "quality": QUALITIES},
    ),
    st.sampled_from([[], "reading", 5, None, Unparsable("x,y", "6 columns", "2 columns")]),
)
RULES = st.sampled_from([DEFAULT_RULES, ReadingRules(min_quality=-5), ReadingRules(min_quality=150)])


@settings(max_examples=300, deadline=None)
@given(raws=st.lists(RAWS, max_size=40), rules=RULES)
def test_judge_row_gives_judges_verdict_with_its_caches_warm_or_cold(raws: list[Any], rules: ReadingRules) -> None:
    warm = ReadingValidator(NOW, rules)

    for raw in raws:
        if type(raw) is Unparsable:
            continue
        verdict = ReadingValidator(NOW, rules).judge(raw)  # cold: every reading judged in full
        expected = verdict if isinstance(verdict, Rejection) else verdict + SUFFIX

        assert repr(warm.judge_row(raw, SUFFIX)) == repr(expected)  # reprs: NaN equals itself there


SYSTEM_TEXTS = st.sampled_from(
    [str(SYSTEM), str(SYSTEM).upper(), "0b7f6a8e-2c1d-4e5f-9a8b-000000000000", "nope", None, 5, ["x"]]
)


def judged_one_by_one(records: list[Record]) -> tuple[list[tuple[object, ...]], list[int], list[QuarantineRow]]:
    """The chunk loop as the rules read, every record judged in full: what the worker's loop must give."""
    validator = ReadingValidator(NOW)
    systems = SystemBook(JOB, {SYSTEM})
    repeats = RepeatFinder()
    rows: list[tuple[object, ...]] = []
    positions: list[int] = []
    quarantine: list[QuarantineRow] = []
    for position, system_text, raw in records:
        if type(raw) is Unparsable:
            quarantine.append(
                quarantine_row(
                    position, raw, Rejection(QuarantineReason.PARSE_ERROR, None, raw.expected, raw.got), None
                )
            )
            continue
        suffix = systems.suffix(system_text)
        if isinstance(suffix, Rejection) and suffix.reason is QuarantineReason.PARSE_ERROR:
            quarantine.append(quarantine_row(position, raw, suffix, None))
            continue
        verdict = validator.judge(raw)
        system_id = None if isinstance(suffix, Rejection) else suffix[0]
        if not isinstance(verdict, ValidReading):
            quarantine.append(quarantine_row(position, raw, verdict, system_id or parse_uuid(system_text)))
        elif isinstance(suffix, Rejection):
            quarantine.append(quarantine_row(position, raw, suffix, parse_uuid(system_text)))
        elif (repeat := repeats.repeat_of(suffix[0], verdict.sensor_id, verdict.time, position)) is not None:
            quarantine.append(quarantine_row(position, raw, repeat, suffix[0]))
        else:
            rows.append(verdict + suffix)
            positions.append(position)
    return rows, positions, quarantine


@settings(max_examples=300, deadline=None)
@given(records=st.lists(st.tuples(SYSTEM_TEXTS, RAWS), max_size=40))
def test_the_chunk_loop_sorts_records_as_judging_each_in_full_does(records: list[tuple[object, Any]]) -> None:
    numbered = [Record(position, system_text, raw) for position, (system_text, raw) in enumerate(records)]
    chunk = ChunkStream(0, iter(numbered), ReadingValidator(NOW), SystemBook(JOB, {SYSTEM}))

    yielded = list(chunk.valid_rows())

    rows, positions, quarantine = judged_one_by_one(numbered)
    assert repr((yielded, chunk.rows, chunk.quarantine)) == repr((rows, rows, quarantine))
    assert [record.position for record in chunk.sources] == positions
    assert chunk.total == len(numbered)
