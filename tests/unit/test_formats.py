"""Reading batch objects: layouts, the streamed JSON envelope, NDJSON and CSV, and what makes a file unreadable."""

import gzip
import hashlib
import io
import json
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from sluice.domain.formats import (
    HEARTBEAT_CHARS,
    MAX_ELEMENT_CHARS,
    Layout,
    ObjectFormat,
    Record,
    Unparsable,
    layout_of,
    loads_lenient,
    read_records,
)
from sluice.errors import OutOfTimeError, UnreadableObjectError
from sluice.limits import MAX_RAW_BYTES

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


def test_an_ndjson_line_over_the_limit_is_a_parse_error_with_its_start_size_and_hash() -> None:
    line = b'{"value": "' + "é".encode() * MAX_ELEMENT_CHARS + b'"}'
    body = line + b'\n{"value": 2}\n'

    first, second = records(body, ObjectFormat.NDJSON)

    assert first == Record(
        1,
        None,
        Unparsable(
            line.decode()[:MAX_RAW_BYTES],
            "a JSON object",
            f"a line of {MAX_ELEMENT_CHARS + 14} characters",
            size=len(line),
            sha256=hashlib.sha256(line).hexdigest(),
        ),
    )
    assert second == Record(2, None, {"value": 2})


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r", ""])
@pytest.mark.parametrize(
    "length", [MAX_ELEMENT_CHARS - 1, MAX_ELEMENT_CHARS, MAX_ELEMENT_CHARS + 1, 3 * MAX_ELEMENT_CHARS]
)
def test_a_line_past_the_bound_is_read_past_to_its_line_end_whichever_it_is(line_end: str, length: int) -> None:
    # Lengths around the bound (line end included) put the line end, and a CRLF's two halves, on either side of the
    # reader's cut. No line end: the line ends the file.
    line = "x" * (length - len(line_end))
    after = [Record(3, None, {})] if line_end else []
    body = (line + line_end * 2 + "{}" + line_end).encode() if line_end else line.encode()

    found = records(body, ObjectFormat.NDJSON, gzipped=True)

    if length <= MAX_ELEMENT_CHARS:
        assert found == [Record(1, None, Unparsable(line, "a JSON object", "invalid JSON (Expecting value)")), *after]
        return
    refused = Unparsable(
        line[:MAX_RAW_BYTES],
        "a JSON object",
        f"a line of {length} characters",
        size=len(line),
        sha256=hashlib.sha256(line.encode()).hexdigest(),
    )
    assert found == [Record(1, None, refused), *after]


def stream_of(pieces: Iterator[bytes]) -> io.BytesIO:
    """A gzip body compressed from ``pieces`` as they come, so that the test never holds the text either."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    return io.BytesIO(b"".join(compressor.compress(piece) for piece in pieces) + compressor.flush())


def test_a_huge_line_is_never_held_whole() -> None:
    size = 64 << 20
    body = stream_of(
        iter([b'{"system_id": "' + SYSTEM.encode() + b'"}\n{"pad": "', *[b"p" * (1 << 20)] * 64, b'"}\n{"value": 3}\n'])
    )
    digest = hashlib.sha256(b'{"pad": "' + b"p" * size + b'"}').hexdigest()

    tracemalloc.start()
    try:
        found = list(read_records(body, Layout(ObjectFormat.NDJSON, gzipped=True)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert [record.position for record in found] == [1, 2, 3]
    assert found[1].raw == Unparsable(
        '{"pad": "' + "p" * (MAX_RAW_BYTES - 9), "a JSON object", f"a line of {size + 12} characters", size + 11, digest
    )
    assert peak < 16 << 20, f"reading a {size >> 20} MiB line peaked at {peak >> 20} MiB"


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


def test_a_csv_row_of_millions_of_columns_is_a_parse_error_with_its_start_size_and_hash() -> None:
    row = b"," * 7_000_000
    body = b"system_id,sensor_id,timestamp,value,unit,quality\n" + row + b"\r\nsys,s2,t,1,bar,90\n"

    first, second = records(body, ObjectFormat.CSV, gzipped=True)

    assert first == Record(
        2,
        None,
        Unparsable(
            "," * MAX_RAW_BYTES,
            "a CSV row",
            "a row of 7000002 characters",
            size=7_000_000,
            sha256=hashlib.sha256(row).hexdigest(),
        ),
    )
    assert second == Record(3, "sys", {"sensor_id": "s2", "timestamp": "t", "value": 1.0, "unit": "bar", "quality": 90})


def test_a_csv_row_spanning_lines_counts_them_all_toward_the_bound() -> None:
    # 20 quoted fields of 100,000 characters, each on a line of its own: no line and no field is over a bound.
    quoted = ",".join(f'"\n{"q" * 100_000}"' for _ in range(20))
    body = f"system_id,sensor_id,timestamp,value,unit,quality\n{quoted}\nsys,s2,t,1,bar,90\n".encode()

    found = records(body, ObjectFormat.CSV)

    # Line 13 takes the row past 1 MiB; the csv reader starts afresh on line 14, mid-field, and makes what it can of
    # the rest (one misshapen row, ending on line 22); the next row is read as usual.
    assert [record.position for record in found] == [13, 22, 23]
    assert found[0].raw == Unparsable(
        "q" * MAX_RAW_BYTES,
        "a CSV row",
        f"a row of {2 + 11 * 100_004} characters",
        size=100_003,
        sha256=hashlib.sha256(b"q" * 100_000 + b'","').hexdigest(),
    )
    assert found[-1] == Record(
        23, "sys", {"sensor_id": "s2", "timestamp": "t", "value": 1.0, "unit": "bar", "quality": 90}
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the CSV file is empty"),
        (b"system_id" + b"," * MAX_ELEMENT_CHARS + b"\n", "the CSV header cannot be read: a row of"),
        (b"system_id,sensor_id\n", "must name the columns"),
        (b"system_id,sensor_id,timestamp,value,unit,quality,extra\n", "must name the columns"),
        (b'a,b,c,d,e,"' + b"x" * 200_000 + b'"\n', "the CSV header cannot be read"),
    ],
)
def test_a_csv_without_its_header_is_unreadable(body: bytes, message: str) -> None:
    assert message in unreadable(body, ObjectFormat.CSV)


# --- the heartbeat ------------------------------------------------------------------------------------------------


class CountingHeartbeat:
    """Counts beats; raises OutOfTimeError on beat number ``stop_at``, as the worker's progress does when time runs
    short."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.beats = 0
        self._stop_at = stop_at

    def __call__(self) -> None:
        self.beats += 1
        if self.beats == self._stop_at:
            raise OutOfTimeError("no time left")


class ClosingBody(io.BytesIO):
    """A body that remembers how far it was read when it is closed (the text reader closes it when it goes)."""

    read_up_to = -1

    def close(self) -> None:
        if not self.closed:
            self.read_up_to = self.tell()
        super().close()


BLANKS = 4 * HEARTBEAT_CHARS
HEADS = {
    ObjectFormat.NDJSON: b"",
    ObjectFormat.CSV: b"system_id,sensor_id,timestamp,value,unit,quality\n",
    ObjectFormat.JSON: f'{{"system_id": "{SYSTEM}", "readings": [{{}},'.encode(),
}


@pytest.mark.parametrize("fmt", list(ObjectFormat))
def test_blank_lines_count_toward_the_heartbeat(fmt: ObjectFormat) -> None:
    blanks = b"\r\n" * (BLANKS // 2) if fmt is not ObjectFormat.JSON else b"\n" * BLANKS
    tail = b"{}]}" if fmt is ObjectFormat.JSON else b""
    heartbeat = CountingHeartbeat()

    found = list(read_records(io.BytesIO(HEADS[fmt] + blanks + tail), Layout(fmt, False), heartbeat=heartbeat))

    assert len(found) == (2 if fmt is ObjectFormat.JSON else 0)
    assert heartbeat.beats >= BLANKS // HEARTBEAT_CHARS - 1


@pytest.mark.parametrize("fmt", list(ObjectFormat))
def test_a_heartbeat_that_raises_stops_the_reading_of_a_file_without_readings(fmt: ObjectFormat) -> None:
    heartbeat = CountingHeartbeat(stop_at=2)
    body = ClosingBody(HEADS[fmt] + b"\n" * BLANKS)

    with pytest.raises(OutOfTimeError):
        list(read_records(body, Layout(fmt, False), heartbeat=heartbeat))
    body.close()

    assert heartbeat.beats == 2
    assert body.read_up_to < BLANKS - HEARTBEAT_CHARS  # stopped, not read to the end


def test_a_line_too_long_to_hold_beats_while_it_is_read_past() -> None:
    heartbeat = CountingHeartbeat()
    body = stream_of(iter([b"x" * (1 << 20)] * 16 + [b"\n"]))

    (record,) = read_records(body, Layout(ObjectFormat.NDJSON, gzipped=True), heartbeat=heartbeat)

    assert isinstance(record.raw, Unparsable)
    assert record.raw.size == 16 << 20
    assert heartbeat.beats >= 15


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
