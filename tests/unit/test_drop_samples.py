"""The sample drops in tests/data/drops follow docs/drops.md, and each holds readings the rules keep and refuse."""

import csv
import gzip
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, get_args
from uuid import UUID

import pytest
from pydantic import StringConstraints

from sluice.domain.chunks import ChunkStream, SystemBook
from sluice.domain.formats import Record
from sluice.domain.load import LoadPolicy, job_for
from sluice.domain.objects import ObjectRef, target_of
from sluice.domain.rules import UNIT_RANGES
from sluice.domain.validation import ReadingValidator
from sluice.models.api import IngestRequest
from sluice.models.readings import QuarantineReason
from sluice.models.types import TenantId

from ..paths import REPO_ROOT

DROPS_DIR = REPO_ROOT / "tests" / "data" / "drops"
DOC = REPO_ROOT / "docs" / "drops.md"
# Near the samples' timestamps (2026-11-20T08:00Z to 08:20Z), so none of them is too old or in the future.
NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
CSV_HEADER = ["system_id", "sensor_id", "timestamp", "value", "unit", "quality"]
READING_FIELDS = CSV_HEADER[1:]
SYSTEM = UUID("3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01")
_DROP = ObjectRef("b", "drops/demo/sample.csv")
JOB = job_for(_DROP, target_of(_DROP), LoadPolicy(chunk_readings=50_000, job_retention=timedelta(days=1)), NOW)

# A located reading: where it sits in its file ("readings[4]", "line 7") and the decoded reading.
Located = list[tuple[str, dict[str, Any]]]


def decoded(name: str) -> str:
    """A sample's text, gunzipped when it ends in .gz; strict UTF-8, line ends kept as they are in the file."""
    data = (DROPS_DIR / name).read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8-sig")


def envelope_readings(name: str) -> Located:
    document = json.loads(decoded(name))
    return [(f"readings[{index}]", reading) for index, reading in enumerate(document["readings"])]


def ndjson_readings(name: str) -> Located:
    located: Located = []
    for number, line in enumerate(decoded(name).splitlines(), start=1):
        if line.strip():  # blank lines are skipped
            reading = json.loads(line)
            located.append((f"line {number}", {field: reading[field] for field in READING_FIELDS}))
    return located


def csv_rows(name: str) -> list[tuple[int, list[str]]]:
    """Every row after the header, with the line it ends on."""
    reader = csv.reader(io.StringIO(decoded(name), newline=""))
    next(reader)
    return [(reader.line_num, row) for row in reader]


def csv_readings(name: str) -> Located:
    located: Located = []
    for line, row in csv_rows(name):
        reading: dict[str, Any] = dict(zip(CSV_HEADER, row, strict=True))
        del reading["system_id"]
        # CSV fields are text: the worker reads value as a number and quality as an integer before judging.
        reading["value"] = float(reading["value"])
        reading["quality"] = int(reading["quality"])
        located.append((f"line {line}", reading))
    return located


READERS: dict[str, Callable[[str], Located]] = {
    "sample.json": envelope_readings,
    "sample.ndjson": ndjson_readings,
    "sample.csv": csv_readings,
    "sample.csv.gz": csv_readings,
}

# What tests/data/drops/README.md says each sample holds for quarantine.
EXPECTED_REJECTIONS: dict[str, dict[str, QuarantineReason]] = {
    "sample.json": {"readings[4]": QuarantineReason.OUT_OF_RANGE, "readings[6]": QuarantineReason.LOW_QUALITY},
    "sample.ndjson": {"line 6": QuarantineReason.INVALID_UNIT, "line 8": QuarantineReason.INVALID_TIMESTAMP},
    "sample.csv": {"line 7": QuarantineReason.OUT_OF_RANGE, "line 8": QuarantineReason.DUPLICATE},
    "sample.csv.gz": {"line 5": QuarantineReason.OUT_OF_RANGE, "line 7": QuarantineReason.LOW_QUALITY},
}


def test_every_sample_is_covered_and_documented() -> None:
    samples = {path.name for path in DROPS_DIR.iterdir() if path.name != "README.md"}
    doc = DOC.read_text(encoding="utf-8")
    readme = (DROPS_DIR / "README.md").read_text(encoding="utf-8")

    assert samples == set(READERS)
    for name in samples:
        assert f"`{name}`" in doc
        assert f"`{name}`" in readme


@pytest.mark.parametrize("name", sorted(READERS))
def test_samples_are_strict_utf8(name: str) -> None:
    data = (DROPS_DIR / name).read_bytes()
    text = gzip.decompress(data) if name.endswith(".gz") else data

    text.decode("utf-8")  # raises on anything that is not UTF-8


def test_json_sample_is_an_api_envelope() -> None:
    envelope = IngestRequest.model_validate(json.loads(decoded("sample.json")))

    assert len(envelope.readings) == 8
    assert all(isinstance(reading, dict) and set(reading) == set(READING_FIELDS) for reading in envelope.readings)


def test_ndjson_lines_are_objects_with_exactly_the_documented_keys() -> None:
    lines = decoded("sample.ndjson").splitlines()

    objects = [json.loads(line) for line in lines if line.strip()]

    assert len(objects) < len(lines), "the sample shows a blank line, which readers skip"
    assert all(isinstance(reading, dict) and set(reading) == set(CSV_HEADER) for reading in objects)


def test_csv_sample_has_the_header_six_fields_a_row_a_quoted_field_and_lf() -> None:
    text = decoded("sample.csv")

    header = next(csv.reader(io.StringIO(text, newline="")))

    assert header == CSV_HEADER
    assert all(len(row) == 6 for _, row in csv_rows("sample.csv"))
    assert '"' in text
    assert "\r" not in text


def test_gzip_sample_is_a_reproducible_crlf_csv_with_the_same_header() -> None:
    data = (DROPS_DIR / "sample.csv.gz").read_bytes()
    text = decoded("sample.csv.gz")

    header = next(csv.reader(io.StringIO(text, newline="")))

    assert header == CSV_HEADER
    assert all(len(row) == 6 for _, row in csv_rows("sample.csv.gz"))
    assert text.count("\r\n") == text.count("\n") == 9
    # Bytes 4..7 of a gzip member are its MTIME: zero, so rebuilding the file does not change it.
    assert data[:2] == b"\x1f\x8b"
    assert data[4:8] == b"\0\0\0\0"


@pytest.mark.parametrize("name", sorted(READERS))
def test_sample_holds_readings_the_rules_accept_and_the_documented_rejects(name: str) -> None:
    located = READERS[name](name)

    # Judged as the worker judges a chunk (the rules, then repeats of an earlier sensor and instant), every
    # reading under one registered system.
    records = [Record(position, str(SYSTEM), reading) for position, (_, reading) in enumerate(located)]
    chunk = ChunkStream(0, iter(records), ReadingValidator(now=NOW), SystemBook(JOB, {SYSTEM}))
    chunk.finish()

    rejected = {located[row.position][0]: row.reason for row in chunk.quarantine}
    assert rejected == EXPECTED_REJECTIONS[name]
    assert len(chunk.rows) >= 1
    assert chunk.total == len(located)


def test_doc_states_the_rules_the_code_enforces() -> None:
    doc = DOC.read_text(encoding="utf-8")
    constraints = next(meta for meta in get_args(TenantId) if isinstance(meta, StringConstraints))
    ranges = ", ".join(f"{unit} {low:g}..{high:g}" for unit, (low, high) in UNIT_RANGES.items())

    assert f"`{constraints.pattern}`" in doc
    assert f"at most {constraints.max_length} characters" in doc
    assert ranges in doc
    assert ",".join(CSV_HEADER) in doc
