"""Hostile input the end-to-end corpus (tests/e2e/test_hostile_input.py) found mishandled, pinned here without a
stack: instants without a UTC time, NUL in timestamps, look-alike UUIDs, non-finite quality, repeated JSON keys,
non-object NDJSON lines, unusable envelope field names and error details that echo megabytes."""

import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from sluice.adapters.http import error_response
from sluice.domain.chunks import ChunkStream, SystemBook, quarantine_row
from sluice.domain.formats import (
    Layout,
    ObjectFormat,
    Record,
    RepeatedKeys,
    Unparsable,
    loads_lenient,
    read_records,
)
from sluice.domain.ingest import read_batch
from sluice.domain.load import LoadPolicy, job_for
from sluice.domain.objects import ObjectRef, target_of
from sluice.domain.validation import ReadingValidator
from sluice.errors import InvalidRequestError, Problem, UnreadableObjectError
from sluice.limits import DETAIL_FIELD_MAX, DETAIL_REASON_MAX, MAX_ERROR_DETAILS
from sluice.models.api import ErrorDetail, shown_details
from sluice.models.readings import QuarantineReason, Rejection, ValidReading

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
SYSTEM = "3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01"
SENSOR = "6f1c3a1e-8d2b-4c5e-9f00-0123456789ab"
MAX_BYTES = 5 * 1024 * 1024


def reading(**overrides: Any) -> dict[str, Any]:
    return {"sensor_id": SENSOR, "timestamp": "2026-11-22T11:59:00Z", "value": 250.5, "unit": "bar", "quality": 95} | (
        overrides
    )


def rejection(raw: object) -> Rejection:
    verdict = ReadingValidator(NOW).judge(raw)
    assert isinstance(verdict, Rejection), verdict
    return verdict


def records(body: bytes, fmt: ObjectFormat, *, whole: bool = False) -> list[Record]:
    return list(read_records(io.BytesIO(body), Layout(fmt, gzipped=False), whole_envelope=whole))


def refused(body: bytes) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        read_batch(body, MAX_BYTES, gzipped=False)
    return caught.value


# --- timestamps ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"],
)
def test_an_instant_without_a_utc_time_is_an_invalid_timestamp_not_a_crash(timestamp: str) -> None:
    found = rejection(reading(timestamp=timestamp))

    assert (found.reason, found.field) == (QuarantineReason.INVALID_TIMESTAMP, "timestamp")
    row = quarantine_row(0, reading(timestamp=timestamp), found, None)
    assert row.time is None


@pytest.mark.parametrize("timestamp", ["2026-11-22T11:59:00Z\x00", "2026-11-22T11:59:00\x00+05:00; DROP TABLE x"])
def test_a_nul_in_a_timestamp_is_not_read_past(timestamp: str) -> None:
    # datetime.fromisoformat would read both: the first as 11:59Z, the second as 11:59+05:00.
    assert rejection(reading(timestamp=timestamp)).reason is QuarantineReason.INVALID_TIMESTAMP


def test_an_offset_timestamp_in_range_is_still_stored_in_utc() -> None:
    verdict = ReadingValidator(NOW).judge(reading(timestamp="2026-11-22T14:30:00+03:00"))

    assert isinstance(verdict, ValidReading)
    assert verdict.time == datetime(2026, 11, 22, 11, 30, tzinfo=UTC)
    assert verdict.time.tzinfo is UTC


# --- sensor ids ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sensor_id",
    [
        SENSOR[:-1] + "\u0668",  # ARABIC-INDIC DIGIT EIGHT: int() reads it as 8
        "+" + SENSOR[1:],  # int() takes a sign
        " " + SENSOR[1:],  # and white space
        SENSOR[:-2] + "_b",  # and underscores between digits
        SENSOR[:8] + "\u200b" + SENSOR[9:],
        "\u202e" + SENSOR,
    ],
)
def test_a_sensor_id_that_only_looks_like_a_uuid_is_a_parse_error(sensor_id: str) -> None:
    found = rejection(reading(sensor_id=sensor_id))

    assert (found.reason, found.field) == (QuarantineReason.PARSE_ERROR, "sensor_id")


@pytest.mark.parametrize(
    "sensor_id",
    [SENSOR.upper(), SENSOR.replace("-", ""), "{" + SENSOR + "}", "urn:uuid:" + SENSOR],
)
def test_the_uuid_spellings_uuid_accepts_with_hex_digits_stay_valid(sensor_id: str) -> None:
    verdict = ReadingValidator(NOW).judge(reading(sensor_id=sensor_id))

    assert isinstance(verdict, ValidReading)
    assert str(verdict.sensor_id) == SENSOR


# --- quality ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("quality", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_quality_is_out_of_range_like_a_non_finite_value(quality: float) -> None:
    found = rejection(reading(quality=quality))

    assert (found.reason, found.field, found.expected) == (QuarantineReason.OUT_OF_RANGE, "quality", "0..100")


def test_a_quality_of_5000_digits_is_out_of_range_and_a_fraction_still_a_parse_error() -> None:
    batch = loads_lenient(json.dumps([reading(quality=1), reading(quality=95.5)]).replace("1}", "1" * 5000 + "}", 1))

    assert [rejection(raw).reason for raw in batch] == [QuarantineReason.OUT_OF_RANGE, QuarantineReason.PARSE_ERROR]


# --- repeated keys ---------------------------------------------------------------------------------------------------


def test_an_object_naming_a_key_twice_is_marked_with_every_pair_kept() -> None:
    parsed = loads_lenient('{"value": 900.0, "unit": "bar", "value": 212.5, "value": 1}')

    assert type(parsed) is RepeatedKeys
    assert parsed == {"value": 1, "unit": "bar"}
    assert parsed.repeated() == {"value": 3}
    assert parsed.described() == '"value" 3 times'
    assert parsed.as_text() == '{"value": 900.0, "unit": "bar", "value": 212.5, "value": 1}'
    assert type(loads_lenient('{"a": {"b": 1}, "b": 2}')) is dict


def test_an_object_repeating_many_keys_is_described_by_its_first_few() -> None:
    # 50,000 distinct keys, each named twice: counted in one pass, not one pass per key.
    pairs = [(f"k{n}", n) for n in range(50_000)] * 2

    assert RepeatedKeys(pairs).described() == (
        '"k0" twice, "k1" twice, "k2" twice, "k3" twice, "k4" twice and 49995 more'
    )


def test_a_repeated_object_too_deep_to_write_out_again_keeps_its_keys() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    parsed = RepeatedKeys([("a", deep), ("a", 1)])

    assert parsed.as_text() == '{"a": ..., "a": ...}'


def test_a_reading_naming_a_field_twice_becomes_unparsable_in_every_json_layout() -> None:
    twice = f'{{"sensor_id": "{SENSOR}", "value": 900.0, "value": 212.5}}'
    nested = f'{{"sensor_id": "{SENSOR}", "meta": {{"a": 1, "a": 2}}}}'
    expected = Unparsable(
        twice,
        "a JSON object naming each field once",
        'an object naming "value" twice',
    )
    envelope = f'{{"system_id": "{SYSTEM}", "readings": [{twice}, {nested}]}}'.encode()
    ndjson = f"{twice}\n{nested}\n".encode()

    for found in (records(envelope, ObjectFormat.JSON), records(envelope, ObjectFormat.JSON, whole=True)):
        assert found[0] == Record(0, SYSTEM, expected)
        # A repeat inside a field nobody reads leaves the reading a reading.
        assert found[1].raw == {"sensor_id": SENSOR, "meta": {"a": 2}}
    assert records(ndjson, ObjectFormat.NDJSON)[0] == Record(1, None, expected)
    assert records(ndjson, ObjectFormat.NDJSON)[1] == Record(2, None, {"sensor_id": SENSOR, "meta": {"a": 2}})


def test_an_api_batch_whose_envelope_names_a_field_twice_is_unreadable() -> None:
    body = f'{{"system_id": "{SYSTEM}", "system_id": "{SYSTEM}", "readings": []}}'.encode()

    with pytest.raises(UnreadableObjectError, match='names "system_id" twice'):
        records(body, ObjectFormat.JSON, whole=True)


@pytest.mark.parametrize(
    ("line", "got"),
    [('"a string"', "a string"), ("[1, 2]", "an array"), ("12", "a number"), ("true", "a boolean"), ("null", "null")],
)
def test_an_ndjson_line_that_is_not_an_object_keeps_its_text(line: str, got: str) -> None:
    assert records(f"{line}\n".encode(), ObjectFormat.NDJSON) == [
        Record(1, None, Unparsable(line, "a JSON object", got))
    ]


# --- the API's envelope ----------------------------------------------------------------------------------------------


def test_an_envelope_naming_fields_twice_is_refused_naming_them() -> None:
    body = f'{{"readings": [{{}}], "system_id": "{SYSTEM}", "readings": [{{}}], "system_id": "x"}}'.encode()

    error = refused(body)

    assert error.message == "the batch envelope names a field more than once"
    assert [(detail.field, detail.index) for detail in error.details] == [("readings", None), ("system_id", None)]


def test_a_batch_whose_readings_repeat_keys_is_accepted_for_the_worker_to_judge() -> None:
    body = f'{{"system_id": "{SYSTEM}", "readings": [{{"value": 1, "value": 2}}]}}'.encode()

    assert read_batch(gzip.compress(body), MAX_BYTES, gzipped=True).total_readings == 1


def test_an_envelope_field_name_that_is_not_unicode_is_named_escaped() -> None:
    surrogates = ", ".join(f'"\\ud800x{n}": 1' for n in range(25))
    body = f'{{"system_id": "{SYSTEM}", "readings": [{{}}], {surrogates}}}'.encode()

    error = refused(body)

    # The error names the field as sent; the response shows it escaped, as UTF-8 can carry it.
    assert error.details[:2] == (
        Problem(field="\ud800x0", reason="not a field of the batch envelope (nor valid Unicode)"),
        Problem(field="\ud800x1", reason="not a field of the batch envelope (nor valid Unicode)"),
    )
    assert (len(error.details), error.details[-1].reason) == (MAX_ERROR_DETAILS + 1, "and 5 more like these")
    response = error_response(error)
    assert response.status_code == 400
    shown = json.loads(response.body or "")["error"]["details"]
    assert [(detail["field"], detail["reason"]) for detail in shown[:2]] == [
        ("\\ud800x0", "not a field of the batch envelope (nor valid Unicode)"),
        ("\\ud800x1", "not a field of the batch envelope (nor valid Unicode)"),
    ]
    assert len(shown) == MAX_ERROR_DETAILS + 1


def test_an_unknown_field_of_a_megabyte_is_named_shortened() -> None:
    body = f'{{"system_id": "{SYSTEM}", "readings": [{{}}], "{"k" * 1_000_000}": 1}}'.encode()

    response = error_response(refused(body))

    assert response.status_code == 400
    assert len(response.body or "") < 1000
    (detail,) = json.loads(response.body or "")["error"]["details"]
    assert detail["field"] == "k" * (DETAIL_FIELD_MAX - 3) + "..."


def test_a_hundred_thousand_unknown_fields_make_twenty_details() -> None:
    unknown = ", ".join(f'"x{n}": 1' for n in range(100_000))
    body = f'{{"system_id": "{SYSTEM}", "readings": [{{}}], {unknown}}}'.encode()

    details = refused(body).details

    assert len(details) == MAX_ERROR_DETAILS + 1
    assert (details[0].field, details[0].reason) == ("x0", "Extra inputs are not permitted")
    assert (details[-1].field, details[-1].reason) == (None, f"and {100_000 - MAX_ERROR_DETAILS} more like these")


def test_an_envelope_repeating_many_names_lists_the_first_twenty() -> None:
    repeated = ", ".join(f'"x{n}": 1, "x{n}": 2' for n in range(30))
    body = f'{{"system_id": "{SYSTEM}", "readings": [{{}}], {repeated}}}'.encode()

    details = refused(body).details

    assert [detail.field for detail in details] == [f"x{n}" for n in range(MAX_ERROR_DETAILS)] + [None]
    assert details[-1].reason == "and 10 more like these"


def test_error_details_are_short_and_writable_as_utf8() -> None:
    detail = ErrorDetail(field="\ud800" + "f" * 500, reason="r" * 5000)

    assert detail.field == "\\ud800" + "f" * (DETAIL_FIELD_MAX - 4) + "..."
    assert detail.reason == "r" * (DETAIL_REASON_MAX - 3) + "..."
    assert json.loads(detail.model_dump_json())["field"].startswith("\\ud800")
    assert ErrorDetail(field=None, reason="short").model_dump() == {"field": None, "index": None, "reason": "short"}
    (shown,) = shown_details([Problem(field="\ud800" + "f" * 500, reason="r" * 5000, index=7)])
    assert (shown.field, shown.reason, shown.index) == (detail.field, detail.reason, 7)


def test_a_batch_judged_whole_gets_one_verdict_per_hostile_reading() -> None:
    raws = [
        reading(timestamp="0001-01-01T00:00:00+01:00"),
        reading(sensor_id=SENSOR[:-1] + "\u0668"),
        reading(quality=float("inf")),
        reading(),
    ]

    ref = ObjectRef("b", "drops/demo/hostile.jsonl")
    job = job_for(ref, target_of(ref), LoadPolicy(chunk_readings=10, job_retention=timedelta(days=1)), NOW)
    chunk = ChunkStream(
        0,
        iter([Record(position, SYSTEM, raw) for position, raw in enumerate(raws)]),
        ReadingValidator(NOW),
        SystemBook(job, {UUID(SYSTEM)}),
    )
    chunk.finish()

    assert [(row.position, row.reason) for row in chunk.quarantine] == [
        (0, QuarantineReason.INVALID_TIMESTAMP),
        (1, QuarantineReason.PARSE_ERROR),
        (2, QuarantineReason.OUT_OF_RANGE),
    ]
    assert [source.position for source in chunk.sources] == [3]
    assert (chunk.total, len(chunk.rows)) == (4, 1)
    # Each quarantine row keeps only what fits its column: no time for the instant without a UTC time, no
    # quality for infinity.
    assert chunk.quarantine[0].time is None
    assert chunk.quarantine[2].quality is None
