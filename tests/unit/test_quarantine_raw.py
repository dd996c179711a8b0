"""A quarantine row keeps at most MAX_RAW_BYTES of its raw reading; a longer one keeps its start, with the size and
SHA-256 of the whole."""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from sluice.domain.chunks import ChunkStream, SystemBook, inserted_and_duplicates, quarantine_row, raw_columns
from sluice.domain.formats import Record, Unparsable
from sluice.domain.load import LoadPolicy, job_for
from sluice.domain.objects import ObjectRef, target_of
from sluice.domain.validation import ReadingValidator
from sluice.limits import MAX_RAW_BYTES
from sluice.models.readings import QuarantineReason, Rejection

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SYSTEM = UUID("3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01")
SENSOR = "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8"
INVALID = Rejection(QuarantineReason.INVALID_UNIT, "unit", "bar", "'psi'")
DROP = ObjectRef("b", "drops/demo/x.ndjson")


def reading(**changes: object) -> dict[str, object]:
    stamp = (NOW - timedelta(minutes=10)).isoformat()
    return {"sensor_id": SENSOR, "timestamp": stamp, "value": 200.0, "unit": "bar", "quality": 95} | changes


def stored_bytes(raw: str) -> int:
    return len(raw.encode())


def test_a_raw_reading_that_fits_is_kept_whole_and_says_nothing_of_a_cut() -> None:
    fits = reading(unit="psi", note="n" * (MAX_RAW_BYTES - 200))

    row = quarantine_row(1, fits, INVALID, SYSTEM)

    assert json.loads(row.raw) == fits
    assert (row.raw_bytes, row.raw_sha256) == (None, None)


def test_a_raw_reading_over_the_bound_keeps_the_start_of_its_json_with_the_size_and_hash_of_the_whole() -> None:
    big = reading(unit="psi", note="n" * (3 * MAX_RAW_BYTES))
    whole = json.dumps(big, separators=(",", ":")).encode()

    row = quarantine_row(1, big, INVALID, SYSTEM)

    assert stored_bytes(row.raw) <= MAX_RAW_BYTES
    start = json.loads(row.raw)
    assert isinstance(start, str)
    assert whole.decode().startswith(start)
    assert len(start) > MAX_RAW_BYTES - 100
    assert (row.raw_bytes, row.raw_sha256) == (len(whole), hashlib.sha256(whole).hexdigest())
    # The fields are read from the reading itself, not from its cut raw: a reviewer can still fix it.
    assert (row.sensor_id, row.unit, row.quality) == (UUID(SENSOR), "psi", 95)


@pytest.mark.parametrize(
    "text",
    [
        "\x01" * (MAX_RAW_BYTES + 1),  # each a six-character escape in JSON
        '"\\' * MAX_RAW_BYTES,  # each a two-character escape
        "€" * MAX_RAW_BYTES,  # three bytes each
        "a" * MAX_RAW_BYTES + "😀" * 10,
    ],
)
def test_a_cut_raw_text_stays_within_the_bound_however_it_escapes(text: str) -> None:
    row = quarantine_row(3, Unparsable(text, "a JSON object", "invalid JSON"), INVALID, None)

    assert stored_bytes(row.raw) <= MAX_RAW_BYTES
    start = json.loads(row.raw)
    assert text.startswith(start)
    assert stored_bytes(json.dumps(text[: len(start) + 2], ensure_ascii=False)) > MAX_RAW_BYTES - 12
    assert row.raw_bytes == len(text.encode())
    assert row.raw_sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_a_line_the_reader_cut_keeps_the_size_and_hash_the_reader_took() -> None:
    line = Unparsable("x" * MAX_RAW_BYTES, "a JSON object", "a line of 1073741825 characters", 1 << 30, "ab" * 32)

    columns = raw_columns(line)

    assert (columns["raw_bytes"], columns["raw_sha256"]) == (1 << 30, "ab" * 32)
    assert MAX_RAW_BYTES - 8 <= stored_bytes(columns["raw"]) <= MAX_RAW_BYTES
    assert json.loads(columns["raw"]) == "x" * (stored_bytes(columns["raw"]) - 2)


def test_a_stored_duplicate_over_the_bound_is_cut_too() -> None:
    job = job_for(DROP, target_of(DROP), LoadPolicy(10, timedelta(days=1)), NOW)
    big = reading(system_id=str(SYSTEM), note="n" * (2 * MAX_RAW_BYTES))
    chunk = ChunkStream(0, iter([Record(1, str(SYSTEM), big)]), ReadingValidator(NOW), SystemBook(job, {SYSTEM}))
    chunk.finish()

    _, (duplicate,) = inserted_and_duplicates(chunk, set())

    whole = json.dumps(big, separators=(",", ":")).encode()
    assert stored_bytes(duplicate.raw) <= MAX_RAW_BYTES
    assert (duplicate.raw_bytes, duplicate.raw_sha256) == (len(whole), hashlib.sha256(whole).hexdigest())
