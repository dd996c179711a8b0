"""A chunk ends at its count of readings or once its reader has read CHUNK_TEXT_BEATS heartbeats of text, whichever
comes first: what a chunk holds until it is written is bounded by the text it spans, and the cut depends on the
object alone."""

import io
import json
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sluice.domain.chunks import CHUNK_TEXT_BEATS, ReadMeter, SystemBook, chunk_streams
from sluice.domain.formats import HEARTBEAT_CHARS, Layout, ObjectFormat, Record, read_records
from sluice.domain.load import LoadPolicy, job_for
from sluice.domain.objects import ObjectRef, target_of
from sluice.domain.validation import ReadingValidator

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SYSTEM = UUID("3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01")
SENSOR = "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8"
DROP = ObjectRef("b", "drops/demo/padded.ndjson.gz")
JOB = job_for(DROP, target_of(DROP), LoadPolicy(50_000, timedelta(days=1)), NOW)
PAD = 900 * 1024  # under the 1 MiB bound: each line is a valid reading


def padded_readings(count: int) -> bytes:
    """``count`` valid NDJSON readings, each carrying 900 KiB besides its fields, gzipped as they are made."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = []
    for n in range(count):
        stamp = (NOW - timedelta(minutes=10, seconds=n)).isoformat()
        reading = {"system_id": str(SYSTEM), "sensor_id": SENSOR, "timestamp": stamp, "value": 200.0, "unit": "bar"}
        out.append(compressor.compress(json.dumps(reading | {"quality": 95, "note": "n" * PAD}).encode() + b"\n"))
    return b"".join(out) + compressor.flush()


def chunk_totals(body: bytes, *, judged: bool, metered: bool = True) -> list[int]:
    """The records of each chunk, judging every chunk (as a first attempt does) or skipping it (as a retry does)."""
    meter = ReadMeter(lambda: None) if metered else None
    records: Iterator[Record] = iter(read_records(io.BytesIO(body), Layout(ObjectFormat.NDJSON, True), heartbeat=meter))
    totals = []
    for chunk in chunk_streams(records, 50_000, ReadingValidator(NOW), SystemBook(JOB, {SYSTEM}), meter):
        if judged:
            assert sum(1 for _ in chunk.valid_rows()) == chunk.total
        else:
            chunk.skip()
        totals.append(chunk.total)
    return totals


def test_chunks_of_large_readings_end_by_the_text_they_span_the_same_way_judged_or_skipped() -> None:
    body = padded_readings(100)

    judged = chunk_totals(body, judged=True)
    skipped = chunk_totals(body, judged=False)

    lines_per_chunk = CHUNK_TEXT_BEATS * HEARTBEAT_CHARS // PAD
    assert judged == skipped
    assert sum(judged) == 100
    assert len(judged) == 3
    assert all(total <= lines_per_chunk + 1 for total in judged), judged


def test_without_a_meter_only_the_count_cuts() -> None:
    assert chunk_totals(padded_readings(40), judged=False, metered=False) == [40]


def test_the_meter_counts_beats_and_passes_them_on() -> None:
    calls: list[int] = []
    meter = ReadMeter(lambda: calls.append(meter.beats))

    meter()
    meter()

    assert (meter.beats, calls) == (2, [1, 2])
