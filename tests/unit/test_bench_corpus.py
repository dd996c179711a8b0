"""The load-worker bench corpus: about 1% invalid rows, each ending as the project's rules say, and its renderings."""

import csv
import io
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from sluice.domain.chunks import ChunkStream, SystemBook
from sluice.domain.formats import Record
from sluice.domain.load import LoadPolicy, job_for
from sluice.domain.objects import ObjectRef, target_of
from sluice.domain.rules import UNIT_RANGES
from sluice.domain.validation import ReadingValidator
from sluice.models.readings import Rejection, ValidReading

from ..bench.corpus import (
    BANDS,
    CSV_HEADER,
    DUPLICATE_WINDOW,
    READING_FIELDS,
    REASONS,
    SENSORS_PER_SYSTEM,
    Corpus,
    Row,
    api_batches,
    copy_reference_csv,
    drop_csv,
    drop_ndjson,
    make_corpus,
)

NOW = datetime(2026, 11, 22, 12, 0, 0, 250_000, tzinfo=UTC)
TOTAL = 20_000
JOB_ID = UUID("0b6f4c1e-2a3d-4e5f-8a9b-0c1d2e3f4a5b")
# The worker's clock is ``now`` or slightly later: the verdicts must not change within those minutes.
CLOCKS = [NOW, NOW + timedelta(minutes=4)]
# The one field each reason's rows break, and a value that repairs it.
BROKEN_FIELD = {
    "invalid_unit": ("unit", "rpm"),
    "out_of_range": ("value", 1.0),
    "low_quality": ("quality", 95),
    "invalid_timestamp": ("timestamp", "2026-11-22T11:00:00Z"),
}
COMPACT = (",", ":")


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return make_corpus(TOTAL, now=NOW)


def reading(row: Row) -> dict[str, object]:
    assert isinstance(row.fields, dict), row
    return row.fields


def key(row: Row) -> tuple[object, object]:
    fields = reading(row)
    return fields["sensor_id"], fields["timestamp"]


def test_about_one_percent_is_invalid_spread_evenly_over_the_seven_reasons(corpus: Corpus) -> None:
    counts = Counter(row.reason or "valid" for row in corpus.rows)
    invalid = {reason: counts[reason] for reason in REASONS}

    assert len(corpus.rows) == TOTAL
    assert corpus.expected == counts
    assert set(REASONS) == {"invalid_unit", "out_of_range", "low_quality", "invalid_timestamp"} | {
        "system_not_found",
        "duplicate",
        "parse_error",
    }
    assert 0.008 <= sum(invalid.values()) / TOTAL <= 0.012
    assert min(invalid.values()) >= 1
    assert max(invalid.values()) - min(invalid.values()) <= 1


def test_the_same_seed_gives_the_same_bytes_and_another_seed_others(corpus: Corpus) -> None:
    again = make_corpus(TOTAL, now=NOW)
    other = make_corpus(TOTAL, now=NOW, seed=8)

    assert drop_csv(again) == drop_csv(corpus)
    assert drop_ndjson(again) == drop_ndjson(corpus)
    assert copy_reference_csv(again, JOB_ID) == copy_reference_csv(corpus, JOB_ID)
    assert drop_csv(other) != drop_csv(corpus)
    # Systems and sensors depend on the seed only, so corpora of any size share them.
    smaller = make_corpus(2_000, now=NOW)
    assert (smaller.systems, smaller.unknown_systems) == (corpus.systems, corpus.unknown_systems)


def test_systems_sensors_and_ticks_look_like_a_fleet(corpus: Corpus) -> None:
    registered = set(corpus.systems)
    readings = [row for row in corpus.rows if row.reason in {None, "duplicate"}]
    units: dict[object, set[object]] = defaultdict(set)
    for row in readings:
        fields = reading(row)
        units[fields["sensor_id"]].add(fields["unit"])
        low, high = BANDS[str(fields["unit"])]
        assert low <= float(str(fields["value"])) <= high
        assert 70 <= int(str(fields["quality"])) <= 100
        assert row.system_id in registered

    assert len(registered) == 100
    assert len(set(corpus.unknown_systems)) == 2
    assert registered.isdisjoint(corpus.unknown_systems)
    assert len(units) == 100 * SENSORS_PER_SYSTEM
    assert all(len(seen) == 1 for seen in units.values())
    assert {unit for seen in units.values() for unit in seen} == set(BANDS)
    good = sum(int(str(reading(row)["quality"])) >= 90 for row in readings)
    assert 0.8 <= good / len(readings) < 1
    # One tick: the 20 readings of one system for one second, the systems in turn.
    for position, row in enumerate(corpus.rows):
        if row.reason not in {"system_not_found", "duplicate"}:
            assert row.system_id == corpus.systems[position // SENSORS_PER_SYSTEM % 100]
    for row in corpus.rows:
        if row.reason == "system_not_found":
            assert row.system_id in corpus.unknown_systems


def test_valid_readings_are_one_per_sensor_and_second_within_the_last_day(corpus: Corpus) -> None:
    valid = [row for row in corpus.rows if row.reason in {None, "system_not_found"}]
    keys = [key(row) for row in valid]
    times = [datetime.fromisoformat(str(timestamp)) for _, timestamp in keys]

    assert len(set(keys)) == len(keys)
    assert NOW - timedelta(days=1) < min(times) <= max(times) <= NOW
    stamps = {str(timestamp) for _, timestamp in keys}
    assert all(stamp.endswith("Z") for stamp in stamps)
    # Some clocks stamp the whole second, others a fraction.
    assert any("." in stamp for stamp in stamps)
    assert any("." not in stamp for stamp in stamps)


@pytest.mark.parametrize("clock", CLOCKS)
def test_each_row_alone_gets_the_verdict_its_reason_says(corpus: Corpus, clock: datetime) -> None:
    validator = ReadingValidator(clock)
    for row in corpus.rows:
        verdict = validator.judge(row.fields)
        if row.reason in {None, "system_not_found", "duplicate"}:
            assert type(verdict) is ValidReading, (row, verdict)
        else:
            assert isinstance(verdict, Rejection), row
            assert verdict.reason == row.reason, (row, verdict)


def test_invalid_rows_break_only_the_rule_of_their_reason(corpus: Corpus) -> None:
    validator = ReadingValidator(NOW)
    for row in corpus.rows:
        if row.reason in BROKEN_FIELD:
            name, repair = BROKEN_FIELD[row.reason]
            assert type(validator.judge(reading(row) | {name: repair})) is ValidReading, row
        elif row.reason == "parse_error" and isinstance(row.fields, dict):
            repaired = row.fields | {"value": 50.0, "quality": row.fields.get("quality", 95)}
            assert type(validator.judge(repaired)) is ValidReading, row
    variants = {str(row.fields) for row in corpus.rows if row.reason == "parse_error" and isinstance(row.fields, str)}
    assert variants == {"not a reading"}
    parse_dicts = [reading(row) for row in corpus.rows if row.reason == "parse_error" and isinstance(row.fields, dict)]
    assert any("quality" not in fields for fields in parse_dicts)
    assert any(fields.get("value") == "high" for fields in parse_dicts)
    future = [
        row
        for row in corpus.rows
        if row.reason == "invalid_timestamp" and str(reading(row)["timestamp"]) > "2026-11-22T12"
    ]
    old = [row for row in corpus.rows if row.reason == "invalid_timestamp" and str(reading(row)["timestamp"]) < "2021"]
    assert future
    assert old


def test_duplicates_repeat_a_valid_row_shortly_before(corpus: Corpus) -> None:
    duplicates = 0
    for position, row in enumerate(corpus.rows):
        if row.reason != "duplicate":
            continue
        duplicates += 1
        earlier = corpus.rows[max(0, position - DUPLICATE_WINDOW) : position]
        originals = [other for other in earlier if other.reason is None and key(other) == key(row)]
        assert len(originals) == 1, row
        assert originals[0].fields == row.fields
        assert originals[0].system_id == row.system_id
    assert duplicates == corpus.expected["duplicate"]


def test_the_worker_s_chunk_loop_agrees_with_every_reason(corpus: Corpus) -> None:
    # The rows judged as the worker judges one chunk of a drop: the reading rules, the tenant's systems (the
    # corpus's unknown systems are not registered) and the repeats of an earlier (sensor, instant).
    ref = ObjectRef("b", f"drops/{corpus.tenant}/corpus.csv")
    job = job_for(ref, target_of(ref), LoadPolicy(chunk_readings=TOTAL, job_retention=timedelta(days=1)), NOW)
    records = [Record(position, str(row.system_id), row.fields) for position, row in enumerate(corpus.rows)]
    chunk = ChunkStream(0, iter(records), ReadingValidator(NOW), SystemBook(job, set(corpus.systems)))
    chunk.finish()

    quarantined = {row.position: row.reason.value for row in chunk.quarantine}
    expected = {position: row.reason for position, row in enumerate(corpus.rows) if row.reason is not None}
    assert quarantined == expected
    assert len(chunk.rows) == corpus.expected["valid"]
    assert chunk.total == TOTAL


@pytest.mark.parametrize("size", [1, 64, 10_000])
def test_api_batches_carry_every_row_once_per_system_in_arrival_order(corpus: Corpus, size: int) -> None:
    sent: dict[UUID, list[object]] = defaultdict(list)
    for system_id, body in api_batches(corpus, size):
        payload = json.loads(body)
        assert body == json.dumps(payload, separators=COMPACT).encode()
        assert UUID(payload["system_id"]) == system_id
        assert 1 <= len(payload["readings"]) <= size
        sent[system_id].extend(payload["readings"])
    arrived: dict[UUID, list[object]] = defaultdict(list)
    for row in corpus.rows:
        arrived[row.system_id].append(row.fields)

    assert sum(map(len, sent.values())) == TOTAL
    assert sent == arrived


def test_api_batches_refuse_an_empty_size(corpus: Corpus) -> None:
    with pytest.raises(ValueError, match="size"):
        next(api_batches(corpus, 0))


def test_drop_csv_holds_one_record_per_row_as_the_drop_format_says(corpus: Corpus) -> None:
    data = drop_csv(corpus)
    records = list(csv.reader(io.StringIO(data.decode())))

    assert b"\r" not in data
    assert data.endswith(b"\n")
    assert records[0] == list(CSV_HEADER)
    assert len(records) - 1 == TOTAL
    for row, record in zip(corpus.rows, records[1:], strict=True):
        if isinstance(row.fields, str):
            assert record == [row.fields]
            continue
        fields = row.fields
        assert record == [str(row.system_id), *(_text(fields[name]) for name in READING_FIELDS if name in fields)]
    assert Counter(len(record) for record in records[1:]).keys() == {6, 5, 1}


def test_drop_ndjson_holds_one_line_per_row(corpus: Corpus) -> None:
    lines = drop_ndjson(corpus).decode().split("\n")

    assert lines[-1] == ""
    assert len(lines) - 1 == TOTAL
    for row, line in zip(corpus.rows, lines, strict=False):
        if isinstance(row.fields, str):
            assert line == row.fields
        else:
            assert line == json.dumps({"system_id": str(row.system_id)} | row.fields, separators=COMPACT)


def test_copy_reference_csv_holds_the_valid_rows_in_the_column_order_of_readings(corpus: Corpus) -> None:
    data = copy_reference_csv(corpus, JOB_ID)
    records = list(csv.reader(io.StringIO(data.decode())))
    valid = [row for row in corpus.rows if row.reason is None]

    assert data.count(b"\n") == len(valid) == corpus.expected["valid"]
    for row, record in zip(valid, records, strict=True):
        fields = reading(row)
        time, system_id, sensor_id, value, unit, quality, job_id = record
        assert (time, sensor_id, unit, job_id) == (
            fields["timestamp"],
            fields["sensor_id"],
            fields["unit"],
            str(JOB_ID),
        )
        assert UUID(system_id) == row.system_id
        assert (float(value), int(quality)) == (fields["value"], fields["quality"])
        low, high = UNIT_RANGES[unit]
        assert low <= float(value) <= high


def test_make_corpus_refuses_what_it_cannot_build() -> None:
    with pytest.raises(ValueError, match="total"):
        make_corpus(0, now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        make_corpus(10, now=datetime(2026, 11, 22, 12))
    with pytest.raises(ValueError, match="fit in a day"):
        make_corpus(200_000_000, now=NOW)


def _text(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)
