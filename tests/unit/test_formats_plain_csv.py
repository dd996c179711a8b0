"""CSV text read block by block (lines that are whole rows: split by str.split, or by the csv module over the block
when it holds a quote) gives exactly what reading it line by line with the csv module gives: the same records, line
numbers, refusals and heartbeats, in the same order."""

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sluice.domain import formats
from sluice.domain.formats import Layout, ObjectFormat, read_records
from sluice.errors import UnreadableObjectError

HEADER = "system_id,sensor_id,timestamp,value,unit,quality"
LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r", ""])
# Pieces a hostile or sloppy CSV is made of: quotes, bare CRs, blank lines, NULs, non-ASCII, spaces, bad numbers.
PIECES = st.sampled_from(
    [
        *("sys", "s1", "2026-11-20T08:00:00Z", "212.5", "bar", "97", "9.0", "high", "nan", "1e999", "", " ", '"'),
        *('""', '"a,b"', "\r", "\n", "\r\n", "\x00", "é", "x" * 40, ",", "-0", "1_0", "٨"),
    ]
)
FIELDS = st.lists(PIECES, min_size=0, max_size=4).map("".join)
ROWS = st.one_of(
    st.lists(FIELDS, min_size=6, max_size=6).map(",".join),  # the right width, anything in it
    st.lists(FIELDS, min_size=0, max_size=8).map(",".join),
    st.just(""),
)


@contextmanager
def bounds(block: int, element: int, heartbeat: int, field_limit: int) -> Iterator[None]:
    """The reader's block, row bound, heartbeat and the csv module's field limit, set small for the test's texts."""
    old_limit = csv.field_size_limit(field_limit)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(formats, "_PLAIN_BLOCK_CHARS", block)
            patch.setattr(formats, "MAX_ELEMENT_CHARS", element)
            patch.setattr(formats, "HEARTBEAT_CHARS", heartbeat)
            yield
    finally:
        csv.field_size_limit(old_limit)


def events(text: str, block: int, element: int, heartbeat: int, field_limit: int) -> list[str]:
    """Every record and every heartbeat, in the order a consumer sees them (reprs: NaN equals itself there)."""
    seen: list[str] = []
    with bounds(block, element, heartbeat, field_limit):
        body = io.BytesIO(text.encode("utf-8", "surrogatepass"))
        try:
            for record in read_records(body, Layout(ObjectFormat.CSV, False), heartbeat=lambda: seen.append("beat")):
                seen.append(repr(record))
        except UnreadableObjectError as exc:
            seen.append(f"unreadable: {exc}")
    return seen


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(ROWS, LINE_ENDS), max_size=30),
    block=st.integers(1, 120),
    element=st.integers(52, 160),  # the header (50 characters and its line end) fits
    heartbeat=st.integers(1, 90),
    field_limit=st.integers(9, 120),  # so do its names
)
@example(rows=[("sys,s1,t,1,bar,90", "\r\n")] * 3, block=7, element=200, heartbeat=5, field_limit=200)
@example(rows=[("sys,s1,t,1,bar,90", "\r")] * 3, block=18, element=200, heartbeat=1000, field_limit=200)
@example(rows=[("sys,s1,t,1,bar," + "9" * 45, "\n")] * 2, block=120, element=60, heartbeat=1000, field_limit=120)
@example(rows=[("sys,s1,t,1,bar," + "9" * 44, "\n")] * 2, block=120, element=60, heartbeat=1000, field_limit=120)
def test_plain_blocks_read_as_the_csv_module_reads_line_by_line(
    rows: list[tuple[str, str]], block: int, element: int, heartbeat: int, field_limit: int
) -> None:
    text = HEADER + "\r\n" + "".join(row + end for row, end in rows)

    by_block = events(text, block, element, heartbeat, field_limit)
    by_line = events(text, 0, element, heartbeat, field_limit)

    assert by_block == by_line


def test_a_corpus_like_file_is_read_in_blocks_with_its_heartbeats_where_lines_put_them() -> None:
    rows = [f"sys,s{n % 7},2026-11-20T08:00:{n % 60:02d}Z,{n}.5,bar,{90 + n % 10}" for n in range(3000)]
    rows[1000] = 'sys,s1,"2026-11-20T08:00:00Z",1,bar,90'  # a quoted row: its block is read by the csv module
    rows[2000] = 'sys,s1,"a\nb",1,bar,90'  # a quoted field spanning lines: its block is read line by line
    text = HEADER + "\n" + "\r\n".join(rows) + "\n"

    by_block = events(text, 1 << 12, 1 << 20, 1 << 12, 131072)

    assert by_block == events(text, 0, 1 << 20, 1 << 12, 131072)
    assert by_block.count("beat") == len(text) // (1 << 12)
    assert by_block.count("beat") + 3000 == len(by_block)


def test_a_file_quoted_throughout_is_read_as_line_by_line() -> None:
    rows = [f'"sys","s{n % 7}","2026-11-20T08:00:{n % 60:02d}Z",{n}.5,"bar",{90 + n % 10}' for n in range(3000)]
    text = HEADER + "\r\n" + "\r\n".join(rows) + "\r\n"

    by_block = events(text, 1 << 12, 1 << 20, 1 << 12, 131072)

    assert by_block == events(text, 0, 1 << 20, 1 << 12, 131072)
    assert len(by_block) - by_block.count("beat") == 3000
