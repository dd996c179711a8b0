"""S3 events and batch object keys: what an IngestQueue message names, and which job each object belongs to."""

import json
from datetime import UTC, datetime
from uuid import UUID

import pytest

from sluice.domain.objects import (
    BATCH_PREFIX,
    DROP_PREFIX,
    IngestMessage,
    ObjectRef,
    Target,
    TargetedObject,
    TargetKind,
    batch_object_key,
    drop_job_id,
    is_tenant_id,
    object_created_body,
    parse_message,
    target_of,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
JOB_ID = UUID("0b7f6a8e-2c1d-4e5f-9a8b-7c6d5e4f3a2b")


def s3_event(*records: object) -> str:
    return json.dumps({"Records": list(records)})


def created(key: str, **object_fields: object) -> dict[str, object]:
    return {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": key} | object_fields}}


# --- messages ----------------------------------------------------------------------------------------------------


def test_an_s3_event_names_its_objects_with_keys_decoded() -> None:
    body = s3_event(
        created("drops/demo/a+b%2Bc%C3%A9.csv", versionId="v1", eTag="e1", size=12),
        {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "b"}, "object": {"key": "gone"}}},
    )

    message = parse_message(body)

    assert message.unreadable is None
    assert message.refs == (ObjectRef("b", "drops/demo/a b+cé.csv", "v1", "e1"),)
    assert message.refs[0].size == 12


def test_each_object_named_carries_its_job_and_the_jobs_are_listed_in_order() -> None:
    api_key = f"incoming/acme/2026/11/20/{JOB_ID}.json"
    body = s3_event(created(api_key), created("drops/demo/a.csv", eTag='"e1"'), created("elsewhere/x"))

    message = parse_message(body)

    drop = ObjectRef("b", "drops/demo/a.csv", etag='"e1"')
    assert message.objects == (
        TargetedObject(ObjectRef("b", api_key), Target(TargetKind.API_BATCH, tenant_id="acme", job_id=JOB_ID)),
        TargetedObject(drop, Target(TargetKind.DROP, tenant_id="demo", job_id=drop_job_id(drop))),
        TargetedObject(ObjectRef("b", "elsewhere/x"), target_of(ObjectRef("b", "elsewhere/x"))),
    )
    assert message.objects[2].target.kind is TargetKind.IGNORED
    # An ignored object names no job: only the two others do.
    assert message.job_ids == (JOB_ID, drop_job_id(drop))


def test_a_test_event_names_nothing() -> None:
    message = parse_message(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}))

    assert message == IngestMessage()
    assert (message.unreadable, message.refs, message.job_ids) == (None, (), ())


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "",
        "null",
        '"a string"',
        "[1]",
        '{"Records": [{"eventName": "ObjectCreated:Put"}]}',
        "{}",
        '{"Records": "nope"}',
        '{"Records": null}',
        '{"Records": [7]}',
        '{"Records": [{"eventName": "ObjectCreated:Put", "s3": "x"}]}',
        '{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": 7}}}]}',
    ],
)
def test_a_message_that_is_not_an_s3_event_is_unreadable_never_an_exception(body: str) -> None:
    message = parse_message(body)

    assert message.unreadable is not None
    assert "not an S3 event notification" in message.unreadable
    assert (message.objects, message.refs, message.job_ids) == ((), (), ())


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000,
        s3_event(created("drops/demo/x.csv", eTag=5)),
        s3_event(created("drops/demo/x.csv", versionId=["v1"])),
        s3_event(created("drops/demo/x.csv", size="12")),
        s3_event(created("drops/demo/\ud800.csv")),
        json.dumps(
            {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": 7}, "object": {"key": "k"}}}]}
        ),
    ],
    ids=[
        "deeply-nested",
        "etag-not-a-string",
        "version-not-a-string",
        "size-not-an-integer",
        "lone-surrogate-key",
        "bucket-not-a-string",
    ],
)
def test_a_hostile_body_is_a_value_too(body: str) -> None:
    # The handler parses every message of a batch before any is handled, and the maintenance function every
    # parked one: one body that raised would stop them all.
    message = parse_message(body)

    assert message.unreadable is not None
    assert "not an S3 event notification" in message.unreadable
    assert (message.objects, message.job_ids) == ((), ())


# --- keys --------------------------------------------------------------------------------------------------------


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


def test_an_api_batch_belongs_to_the_job_its_key_names() -> None:
    key = batch_object_key("acme", NOW, JOB_ID)

    assert key == f"{BATCH_PREFIX}/acme/2026/11/20/{JOB_ID}.json"
    assert target_of(ObjectRef("b", key)) == Target(TargetKind.API_BATCH, tenant_id="acme", job_id=JOB_ID)


def test_a_drop_job_id_is_the_same_for_the_same_version_and_differs_for_another() -> None:
    first = drop_job_id(ObjectRef("b", "drops/t/x.csv", "v1"))

    assert drop_job_id(ObjectRef("b", "drops/t/x.csv", "v1", "other-etag")) == first
    assert drop_job_id(ObjectRef("b", "drops/t/x.csv", "v2")) != first
    assert drop_job_id(ObjectRef("b", "drops/t/x.csv", None, '"e1"')) == drop_job_id(
        ObjectRef("b", "drops/t/x.csv", None, "e1")
    )
    # "null" is what S3 calls the version of an object written while versioning was off: the etag names it.
    assert drop_job_id(ObjectRef("b", "drops/t/x.csv", "null", "e1")) == drop_job_id(
        ObjectRef("b", "drops/t/x.csv", None, "e1")
    )
    assert first.version == 5
    assert target_of(ObjectRef("b", f"{DROP_PREFIX}/t/x.csv", "v1")).job_id == first


@pytest.mark.parametrize(
    ("text", "is_one"),
    [
        ("demo", True),
        ("acme.eu", True),
        ("a_b-c.9", True),
        ("7", True),
        ("t" * 128, True),
        ("", False),
        ("t" * 129, False),
        ("-demo", False),
        (".demo", False),
        ("dé", False),
        ("de mo", False),
        ("de/mo", False),
        ("٨", False),  # a digit, but not an ASCII one
    ],
)
def test_a_tenant_id_is_short_ascii_and_starts_alphanumeric(text: str, is_one: bool) -> None:
    assert is_tenant_id(text) is is_one


# --- events sent again -------------------------------------------------------------------------------------------


def test_an_object_created_body_reads_back_as_the_same_object_and_job() -> None:
    ref = ObjectRef("b", "drops/demo/press 17+export (2).csv", version_id="v1", etag="e" * 32, size=99)

    body = object_created_body(ref, NOW, "someone")
    message = parse_message(body)

    assert message.refs == (ref,)
    assert message.refs[0].size == 99
    assert message.job_ids == (drop_job_id(ref),)
    record = json.loads(body)["Records"][0]
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["object"]["key"] == "drops/demo/press+17%2Bexport+%282%29.csv"
    assert record["userIdentity"] == {"principalId": "someone"}
    assert record["eventTime"] == "2026-11-20T12:00:00.000Z"


def test_an_unversioned_object_created_body_carries_only_the_key() -> None:
    body = json.loads(object_created_body(ObjectRef("b", "drops/demo/a.csv"), NOW, "someone"))

    assert body["Records"][0]["s3"]["object"] == {"key": "drops/demo/a.csv"}
    assert body["Records"][0]["s3"]["bucket"] == {"name": "b"}
