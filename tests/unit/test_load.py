"""The load domain without AWS or a database: S3 events, job ids, chunks, system checks and quarantine rows."""

import json
import math
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from sluice.domain.formats import Record, Unparsable
from sluice.domain.load import (
    ChunkStream,
    LoadCounts,
    LoadPolicy,
    ObjectRef,
    SystemBook,
    Target,
    TargetKind,
    chunk_streams,
    drop_job_id,
    job_for,
    object_refs,
    quarantine_row,
    storable_json,
    target_of,
)
from sluice.domain.validation import ReadingValidator
from sluice.errors import UnreadableObjectError
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice.models.readings import QuarantineReason, Rejection

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SYSTEM = UUID("3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01")
SENSOR = "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8"
POLICY = LoadPolicy(chunk_readings=3, job_retention=timedelta(days=90))
INVALID = Rejection(QuarantineReason.INVALID_UNIT, "unit", "bar", "'psi'")


def s3_event(*records: dict[str, object]) -> str:
    return json.dumps({"Records": list(records)})


def created(key: str, **object_fields: object) -> dict[str, object]:
    return {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": key} | object_fields}}


def job(tenant: str = "demo") -> Job:
    return job_for(
        ObjectRef("b", f"drops/{tenant}/x.csv"), target_of(ObjectRef("b", f"drops/{tenant}/x.csv")), POLICY, NOW
    )


def reading(second: int, **changes: object) -> dict[str, object]:
    stamp = (NOW - timedelta(minutes=10) + timedelta(seconds=second)).isoformat()
    return {"sensor_id": SENSOR, "timestamp": stamp, "value": 200.0, "unit": "bar", "quality": 95} | changes


# --- S3 events and what they name --------------------------------------------------------------------------------


def test_an_s3_event_names_its_objects_with_keys_decoded() -> None:
    body = s3_event(
        created("drops/demo/a+b%2Bc%C3%A9.csv", versionId="v1", eTag="e1"),
        {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "b"}, "object": {"key": "gone"}}},
    )

    assert object_refs(body) == [ObjectRef("b", "drops/demo/a b+cé.csv", "v1", "e1")]


def test_a_test_event_names_nothing() -> None:
    assert object_refs(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1]",
        '{"Records": [{"eventName": "ObjectCreated:Put"}]}',
        "{}",
        '{"Records": "nope"}',
        '{"Records": [7]}',
    ],
)
def test_a_message_that_is_not_an_s3_event_is_unreadable(body: str) -> None:
    with pytest.raises(UnreadableObjectError, match="not an S3 event notification"):
        object_refs(body)


@pytest.mark.parametrize(
    ("key", "kind", "tenant"),
    [
        ("drops/demo/2026/x.csv", TargetKind.DROP, "demo"),
        ("incoming/acme.eu/2026/11/20/0b7f6a8e-2c1d-4e5f-9a8b-7c6d5e4f3a2b.json", TargetKind.API_BATCH, "acme.eu"),
        ("drops/demo/", TargetKind.IGNORED, ""),
        ("drops/x.csv", TargetKind.IGNORED, ""),
        ("exports/demo/x.csv", TargetKind.IGNORED, ""),
        ("drops/-demo/x.csv", TargetKind.IGNORED, ""),
        ("drops/dé/x.csv", TargetKind.IGNORED, ""),
        ("drops/" + "t" * 129 + "/x.csv", TargetKind.IGNORED, ""),
        ("incoming/demo/2026/11/20/not-a-uuid.json", TargetKind.IGNORED, ""),
    ],
)
def test_the_key_says_which_job_an_object_belongs_to(key: str, kind: TargetKind, tenant: str) -> None:
    target = target_of(ObjectRef("b", key))

    assert (target.kind, target.tenant_id) == (kind, tenant)
    assert (target.job_id is None) == (kind is TargetKind.IGNORED)
    assert bool(target.reason) == (kind is TargetKind.IGNORED)


def test_a_drop_job_id_is_the_same_for_the_same_version_and_differs_for_another() -> None:
    first = drop_job_id(ObjectRef("b", "drops/t/x.csv", "v1"))

    assert drop_job_id(ObjectRef("b", "drops/t/x.csv", "v1", "other-etag")) == first
    assert drop_job_id(ObjectRef("b", "drops/t/x.csv", "v2")) != first
    assert drop_job_id(ObjectRef("b", "drops/t/x.csv", None, '"e1"')) == drop_job_id(
        ObjectRef("b", "drops/t/x.csv", None, "e1")
    )
    assert first.version == 5


def test_a_drop_job_is_queued_without_a_system_of_its_own() -> None:
    made = job("demo")

    assert (made.source, made.status, made.system_id, made.tenant_id) == (
        JobSource.DROP,
        JobStatus.QUEUED,
        None,
        "demo",
    )
    assert made.expires_at == int((NOW + timedelta(days=90)).timestamp())


def test_an_ignored_object_has_no_job() -> None:
    with pytest.raises(ValueError, match="belongs to no job"):
        job_for(ObjectRef("b", "drops/"), Target(TargetKind.IGNORED, reason="a folder"), POLICY, NOW)


# --- systems and chunks -----------------------------------------------------------------------------------------------


def test_system_ids_are_parsed_once_and_checked_against_the_tenant() -> None:
    book = SystemBook(job(), {SYSTEM})

    assert book.suffix(str(SYSTEM)) == (SYSTEM, job().job_id)
    assert book.suffix(str(SYSTEM).upper()) == (SYSTEM, job().job_id)
    unknown = book.suffix(str(uuid4()))
    assert isinstance(unknown, Rejection)
    assert (unknown.reason, unknown.expected) == (QuarantineReason.SYSTEM_NOT_FOUND, "a system of tenant demo")
    for text, got in (
        (None, "nothing (field missing)"),
        ("x", "'x'"),
        (["a"], "an array of 1"),
        ("a" * 50, "'" + "a" * 50 + "'"),
    ):
        verdict = book.suffix(text)
        assert isinstance(verdict, Rejection)
        assert (verdict.reason, verdict.field, verdict.got) == (QuarantineReason.PARSE_ERROR, "system_id", got)


def test_a_chunk_sorts_its_records_into_rows_and_quarantine() -> None:
    records = [
        Record(0, str(SYSTEM), reading(0)),
        Record(1, str(SYSTEM), reading(1, unit="psi")),
        Record(2, "nope", reading(2)),
        Record(3, str(uuid4()), reading(3)),
        Record(4, str(uuid4()), reading(4, unit="psi")),
        Record(5, str(SYSTEM), reading(0)),
        Record(6, None, Unparsable("garbage", "a JSON object", "invalid JSON")),
        Record(7, {"x": 1}, reading(7)),
    ]

    chunk = ChunkStream(0, iter(records), ReadingValidator(NOW), SystemBook(job(), {SYSTEM}))
    chunk.finish()

    assert chunk.total == 8
    assert [row[5] for row in chunk.rows] == [SYSTEM]
    assert chunk.sources == [records[0]]
    assert [(row.position, row.reason.value) for row in chunk.quarantine] == [
        (1, "invalid_unit"),
        (2, "parse_error"),
        (3, "system_not_found"),
        (4, "invalid_unit"),
        (5, "duplicate"),
        (6, "parse_error"),
        (7, "parse_error"),
    ]
    assert chunk.quarantine[0].system_id == SYSTEM
    assert chunk.quarantine[2].system_id == UUID(str(records[3].system_id))  # kept for the reviewer
    assert chunk.quarantine[3].system_id == UUID(str(records[4].system_id))
    assert json.loads(chunk.quarantine[4].details)["got"] == "a repeat of #0"
    assert chunk.quarantine[5].raw == '"garbage"'


def test_chunks_are_cut_by_count_and_a_skipped_chunk_is_read_past() -> None:
    records = iter([Record(n, str(SYSTEM), reading(n)) for n in range(7)])
    book = SystemBook(job(), {SYSTEM})
    seen = []

    for chunk in chunk_streams(records, 3, ReadingValidator(NOW), book):
        if chunk.chunk_no == 1:
            chunk.skip()
        else:
            chunk.finish()
        seen.append((chunk.chunk_no, chunk.total, len(chunk.rows)))

    assert seen == [(0, 3, 3), (1, 3, 0), (2, 1, 1)]


def test_a_chunk_read_in_part_is_finished_without_judging_twice() -> None:
    chunk = ChunkStream(
        0,
        iter([Record(n, str(SYSTEM), reading(n)) for n in range(4)]),
        ReadingValidator(NOW),
        SystemBook(job(), {SYSTEM}),
    )

    first = next(chunk.valid_rows())
    chunk.finish()

    assert chunk.rows[0] == first
    assert (chunk.total, len(chunk.rows)) == (4, 4)


# --- quarantine rows --------------------------------------------------------------------------------------------------


def test_a_quarantine_row_keeps_every_field_that_fits_its_column() -> None:
    row = quarantine_row(3, reading(0, system_id=str(SYSTEM), quality=12.0), INVALID, None)

    assert (row.position, row.system_id, row.sensor_id, row.unit, row.quality) == (3, SYSTEM, UUID(SENSOR), "bar", 12)
    assert row.time == NOW - timedelta(minutes=10)
    assert row.value == 200.0
    assert json.loads(row.details) == INVALID.as_details()


@pytest.mark.parametrize(
    ("changes", "column", "expected"),
    [
        ({"value": 10**400}, "value", None),
        ({"value": float("inf")}, "value", math.inf),
        ({"value": "12"}, "value", None),
        ({"value": True}, "value", None),
        ({"unit": "b\x00ar"}, "unit", None),
        ({"unit": "\ud800"}, "unit", None),
        ({"unit": "u" * 300}, "unit", None),
        ({"quality": 40000}, "quality", None),
        ({"quality": 12.5}, "quality", None),
        ({"timestamp": "2026-11-20T08:00:00"}, "time", None),
        ({"timestamp": "soon"}, "time", None),
        ({"timestamp": 12}, "time", None),
        ({"sensor_id": "x" * 50}, "sensor_id", None),
        ({"sensor_id": 7}, "sensor_id", None),
    ],
)
def test_a_field_that_does_not_fit_its_column_is_left_out(
    changes: dict[str, object], column: str, expected: object
) -> None:
    row = quarantine_row(0, reading(0) | changes, INVALID, SYSTEM)

    assert getattr(row, column) == expected


def test_a_quarantined_non_object_keeps_only_its_raw_value() -> None:
    row = quarantine_row(0, [1, 2], INVALID, None)

    assert (row.system_id, row.sensor_id, row.time, row.value, row.unit, row.quality) == (None,) * 6
    assert row.raw == "[1,2]"


@pytest.mark.parametrize(
    "value",
    [
        {"value": float("nan")},
        {"value": float("-inf")},
        {"sensor_id": "a\x00b"},
        {"sensor_id": "\udc00"},
    ],
)
def test_values_jsonb_cannot_hold_are_wrapped_and_come_back_exactly(value: dict[str, object]) -> None:
    stored = json.loads(storable_json(value))

    restored = json.loads(stored["unstorable_json"])
    assert list(restored) == list(value)
    assert repr(restored) == repr(value)


def test_plain_values_are_stored_as_they_are_and_unserialisable_ones_as_text() -> None:
    assert storable_json({"é": [1, 2.5, None, True]}) == '{"é":[1,2.5,null,true]}'
    assert json.loads(json.loads(storable_json({1, 2}))["unstorable_json"]) == "{1, 2}"


def test_counts_give_a_success_rate_when_there_were_readings() -> None:
    assert LoadCounts(chunks=1, total=4, inserted=3, quarantined=1, duplicates=0).success_rate == 0.75
    assert LoadCounts(chunks=0, total=0, inserted=0, quarantined=0, duplicates=0).success_rate is None
