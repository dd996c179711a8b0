"""Reading batch objects: layouts, the streamed JSON envelope, NDJSON and CSV, and what makes a file unreadable."""

import gzip
import io
import json
from typing import Any

import pytest

from sluice.domain.formats import (
    MAX_ELEMENT_CHARS,
    Layout,
    ObjectFormat,
    Record,
    Unparsable,
    layout_of,
    loads_lenient,
    read_records,
)
from sluice.errors import UnreadableObjectError

SYSTEM = "3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01"
BLOCK = 1 << 16  # the envelope reader's block, in characters


def records(body: bytes, fmt: ObjectFormat, *, gzipped: bool = False, whole: bool = False) -> list[Record]:
    data = gzip.compress(body) if gzipped else body
    return list(read_records(io.BytesIO(data), Layout(fmt, gzipped), whole_envelope=whole))


def unreadable(body: bytes, fmt: ObjectFormat, **options: Any) -> str:
    with pytest.raises(UnreadableObjectError) as caught:
        records(body, fmt, **options)
    return str(caught.value)


# --- layouts --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "encoding", "expected"),
    [
        ("drops/t/a.json", None, Layout(ObjectFormat.JSON, False)),
        ("drops/t/a.JSONL", None, Layout(ObjectFormat.NDJSON, False)),
        ("drops/t/a.ndjson.gz", None, Layout(ObjectFormat.NDJSON, True)),
        ("drops/t/a.CSV.GZ", None, Layout(ObjectFormat.CSV, True)),
        ("incoming/t/2026/11/20/id.json", "gzip", Layout(ObjectFormat.JSON, True)),
        ("drops/t/a.csv.gz", "gzip", Layout(ObjectFormat.CSV, True)),  # one gzip layer when both say so
        ("drops/t/v1.2/a.csv", " GZIP ", Layout(ObjectFormat.CSV, True)),
    ],
)
def test_the_extension_and_content_encoding_give_the_layout(key: str, encoding: str | None, expected: Layout) -> None:
    assert layout_of(key, encoding) == expected


@pytest.mark.parametrize("key", ["drops/t/a.xlsx", "drops/t/readings", "drops/t/a.gz", "drops/t/a.csv.zip"])
def test_an_unknown_extension_is_unreadable_and_named(key: str) -> None:
    with pytest.raises(UnreadableObjectError, match="unknown file format"):
        layout_of(key, None)


# --- whole envelopes (API batches) ----------------------------------------------------------------------------------


def test_an_api_batch_is_read_whole_with_its_system_wherever_the_key_sits() -> None:
    body = json.dumps({"readings": [{"a": 1}, "x"], "system_id": SYSTEM}).encode("utf-8-sig")

    assert records(body, ObjectFormat.JSON, whole=True) == [Record(0, SYSTEM, {"a": 1}), Record(1, SYSTEM, "x")]


def test_an_api_batch_reads_huge_integers_as_floats_as_the_api_did() -> None:
    body = b'{"system_id": "s", "readings": [{"value": ' + b"9" * 5000 + b"}]}"

    (record,) = records(body, ObjectFormat.JSON, whole=True)

    assert record.raw == {"value": float("inf")}


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"[1]", '"readings" array'), (b'{"readings": 3}', '"readings" array'), (b"{", "not JSON")],
)
def test_an_api_batch_that_is_not_an_envelope_is_unreadable(body: bytes, message: str) -> None:
    assert message in unreadable(body, ObjectFormat.JSON, whole=True)


# --- streamed envelopes (JSON drops) --------------------------------------------------------------------------------


def test_a_json_drop_streams_every_element_in_order() -> None:
    readings: list[Any] = [{"value": n / 7, "unit": "bar", "sensor_id": f"s{n}"} for n in range(5000)]
    readings += [None, [1, 2], "text", 12, True]
    body = json.dumps({"system_id": SYSTEM, "readings": readings}, indent=1).encode()

    found = records(body, ObjectFormat.JSON)

    assert len(body) > 3 * BLOCK
    assert found == [Record(n, SYSTEM, raw) for n, raw in enumerate(readings)]


@pytest.mark.parametrize("shift", range(-4, 5))
def test_a_number_cut_by_a_block_boundary_is_read_whole(shift: int) -> None:
    head = f'{{"system_id": "{SYSTEM}", "readings": [{{"sensor_id": "'
    tail_start = '", "value": '
    pad = BLOCK - len(head) - len(tail_start) - 3 + shift  # the digits straddle (or end at) the boundary
    body = f"{head}{'p' * pad}{tail_start}1234567}}]}}"

    (record,) = records(body.encode(), ObjectFormat.JSON)

    assert record.raw == {"sensor_id": "p" * pad, "value": 1234567}


def test_an_empty_readings_array_has_no_records() -> None:
    assert records(f'{{"system_id": "{SYSTEM}", "readings": [ ]}}'.encode(), ObjectFormat.JSON) == []


def test_a_json_drop_reads_huge_integers_as_floats() -> None:
    body = f'{{"system_id": "{SYSTEM}", "readings": [{"9" * 5000}]}}'.encode()

    assert records(body, ObjectFormat.JSON) == [Record(0, SYSTEM, float("inf"))]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "expected '{', found the end of the file"),
        (b"[]", "expected '{'"),
        (b"{}", 'no "readings" array'),
        (b'{"system_id": "s"}', 'no "readings" array'),
        (b'{"readings": []}', '"system_id" must come before "readings"'),
        (b'{"system_id": "s", "system_id": "t", "readings": []}', 'names "system_id" twice'),
        (b'{"system_id": "s", "extra": 1, "readings": []}', 'unknown field "extra"'),
        (b'{"system_id": "s", "readings": {}}', "expected '['"),
        (b'{"system_id": "s", "readings": [1 2]}', "expected ','"),
        (b'{"system_id": "s", "readings": [{"a": }]}', "malformed at reading #0"),
        (b'{"system_id": "s", "readings": [1]', "expected ',', found the end of the file"),
        (b'{"system_id": "s", "readings": [1]} []', "more after the JSON envelope"),
        (b'{"system_id": "s", "readings": [' + b"[" * 100_000 + b"]", "nests too deeply"),
        (b'{3: "s"}', "not an object with string keys"),
        (b'{"system_id": "s", "readings": [], 3: 4}', "not an object with string keys"),
        (b'{"system_id": tru}', "malformed at the envelope"),
        (b'{"system_id" 7}', "expected ':'"),
    ],
)
def test_a_broken_json_envelope_is_unreadable(body: bytes, message: str) -> None:
    assert message in unreadable(body, ObjectFormat.JSON)


def test_an_element_larger_than_the_limit_is_unreadable_rather_than_buffered() -> None:
    body = f'{{"system_id": "{SYSTEM}", "readings": ["{"x" * (MAX_ELEMENT_CHARS + BLOCK)}'.encode()

    assert "malformed at reading #0" in unreadable(body, ObjectFormat.JSON)


# --- NDJSON ----------------------------------------------------------------------------------------------------------


def test_ndjson_lines_are_records_numbered_from_one_and_blank_lines_are_skipped() -> None:
    lines = [
        json.dumps({"system_id": SYSTEM, "value": 1}),
        "",
        "   ",
        "{broken",
        '"a string"',
        "[" * 100_000,
        '{"value": ' + "9" * 5000 + "}",
    ]
    body = ("\r\n".join(lines) + "\n").encode()

    assert records(body, ObjectFormat.NDJSON, gzipped=True) == [
        Record(1, SYSTEM, {"system_id": SYSTEM, "value": 1}),
        Record(
            4,
            None,
            Unparsable("{broken", "a JSON object", "invalid JSON (Expecting property name enclosed in double quotes)"),
        ),
        Record(5, None, Unparsable('"a string"', "a JSON object", "a string")),
        Record(6, None, Unparsable("[" * 100_000, "a JSON object", "JSON nested too deeply")),
        Record(7, None, {"value": float("inf")}),
    ]


def test_an_ndjson_line_over_the_limit_is_a_parse_error_with_its_start() -> None:
    body = b'{"value": "' + b"x" * MAX_ELEMENT_CHARS + b'"}\n{"value": 2}\n'

    first, second = records(body, ObjectFormat.NDJSON)

    assert isinstance(first.raw, Unparsable)
    assert first.raw.got == f"a line of {MAX_ELEMENT_CHARS + 14} characters"
    assert len(first.raw.text) == 1000
    assert second == Record(2, None, {"value": 2})


# --- CSV ------------------------------------------------------------------------------------------------------------


def test_csv_rows_become_readings_with_numbers_converted_where_they_are_numbers() -> None:
    body = (
        "\ufeffquality,unit,value,timestamp,sensor_id,system_id\r\n"
        '97,bar,212.5,"2026-11-20T08:00:00Z",s1,sys\r\n'
        "\r\n"
        "9.0,bar,high,t,s2,sys\n"
        "x,bar,nan,t,s3,sys\n"
    ).encode()

    assert records(body, ObjectFormat.CSV) == [
        Record(
            2,
            "sys",
            {"sensor_id": "s1", "timestamp": "2026-11-20T08:00:00Z", "value": 212.5, "unit": "bar", "quality": 97},
        ),
        Record(4, "sys", {"sensor_id": "s2", "timestamp": "t", "value": "high", "unit": "bar", "quality": 9.0}),
        Record(
            5,
            "sys",
            {
                "sensor_id": "s3",
                "timestamp": "t",
                "value": pytest.approx(float("nan"), nan_ok=True),
                "unit": "bar",
                "quality": "x",
            },
        ),
    ]


def test_a_csv_row_with_missing_or_extra_columns_is_kept_as_text() -> None:
    body = b'system_id,sensor_id,timestamp,value,unit,quality\nsys,s1,t,1\nsys,s1,t,1,bar,90,"a,b"\n'

    assert records(body, ObjectFormat.CSV) == [
        Record(2, None, Unparsable("sys,s1,t,1", "6 columns", "4 columns")),
        Record(3, None, Unparsable('sys,s1,t,1,bar,90,"a,b"', "6 columns", "7 columns")),
    ]


def test_a_csv_row_the_csv_module_refuses_is_a_parse_error_and_reading_goes_on() -> None:
    huge = "x" * 200_000
    body = f"system_id,sensor_id,timestamp,value,unit,quality\nsys,{huge},t,1,bar,90\nsys,s2,t,1,bar,90\n".encode()

    first, second = records(body, ObjectFormat.CSV)

    assert isinstance(first.raw, Unparsable)
    assert first.raw.got.startswith("unreadable CSV (field larger than field limit")
    assert second.raw == {"sensor_id": "s2", "timestamp": "t", "value": 1.0, "unit": "bar", "quality": 90}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the CSV file is empty"),
        (b"system_id,sensor_id\n", "must name the columns"),
        (b"system_id,sensor_id,timestamp,value,unit,quality,extra\n", "must name the columns"),
        (b'a,b,c,d,e,"' + b"x" * 200_000 + b'"\n', "the CSV header cannot be read"),
    ],
)
def test_a_csv_without_its_header_is_unreadable(body: bytes, message: str) -> None:
    assert message in unreadable(body, ObjectFormat.CSV)


# --- bytes that are not text ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(ObjectFormat))
def test_bytes_that_are_not_gzip_or_not_utf8_make_the_object_unreadable(fmt: ObjectFormat) -> None:
    with pytest.raises(UnreadableObjectError, match="not readable gzip"):
        list(read_records(io.BytesIO(b"plain text, no gzip"), Layout(fmt, gzipped=True)))
    truncated = gzip.compress(b"system_id,sensor_id,timestamp,value,unit,quality\n" if fmt == "csv" else b"\n")
    with pytest.raises(UnreadableObjectError, match="not readable gzip"):
        list(read_records(io.BytesIO(truncated[:-5]), Layout(fmt, gzipped=True)))
    assert "not UTF-8" in unreadable(b"\xff\xfe{}", fmt)


def test_loads_lenient_reads_what_json_loads_reads_and_huge_integers_too() -> None:
    assert loads_lenient('{"a": [1, 2.5, NaN]}')["a"][:2] == [1, 2.5]
    assert loads_lenient("1" + "0" * 5000) == float("inf")
    with pytest.raises(json.JSONDecodeError):
        loads_lenient("{")
