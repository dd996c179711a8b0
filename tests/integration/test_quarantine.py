"""QuarantineFunction against the real TimescaleDB and template.yaml's resources in moto. Rows are quarantined by
the real worker first; then they are listed, read and reviewed through the handler, and every review is checked
where it lands: the row, ``readings`` and the job's record."""

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg.types.json import Jsonb

from sluice.adapters.aws import dynamodb_client, secretsmanager_client
from sluice.limits import MAX_RAW_BYTES
from sluice.settings import (
    get_ingest_api_settings,
    get_job_status_settings,
    get_load_worker_settings,
    get_quarantine_settings,
)
from sluice_tools.local.template import StackContext, function_environment

from ..api_client import OTHER_TENANT, TENANT, Answer, call, claims
from ..lambdas import FakeLambdaContext, handler_module, load_event
from ..worker_harness import WorkerHarness

NOW = datetime.now(UTC).replace(microsecond=0)
SENSOR = "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8"
OTHER_SENSOR = "0d9e8f7a-6b5c-4d3e-a2f1-0e9d8c7b6a50"
REVIEWER = claims("quarantine:read quarantine:review", sub="operator-anna")
READER = claims("quarantine:read", sub="viewer-ben")
# The most a Lambda function may answer (its "6 MB"), from the error it reports past it (ResponseSizeTooLarge).
LAMBDA_ANSWER_MAX = 6_291_556


def stamp(seconds: int) -> str:
    return (NOW - timedelta(days=1) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def reading(second: int, **changes: Any) -> dict[str, Any]:
    return {"sensor_id": SENSOR, "timestamp": stamp(second), "value": 212.5, "unit": "bar", "quality": 97} | changes


@dataclass(repr=False)  # short in hypothesis's reports (tests/integration/test_rollups.py)
class Review:
    """The worker that quarantines, the function that reviews, and the job status function that shows the job."""

    worker: WorkerHarness
    quarantine: ModuleType
    job_status: ModuleType
    system_id: UUID

    def load(self, readings: list[Any], system: UUID | None = None, tenant: str = TENANT) -> UUID:
        """A batch accepted for ``tenant`` and loaded by the worker; its job id."""
        body = json.dumps({"system_id": str(system or self.system_id), "readings": readings}).encode()
        job_id = self.worker.send_api_batch(tenant, system or self.system_id, body, len(readings))
        assert self.worker.deliver() == {"batchItemFailures": []}
        return job_id

    def get(self, path: str, query: dict[str, str] | None = None, verified: dict[str, str] | None = READER) -> Answer:
        return call(self.quarantine, "GET", path, verified=verified, query=query)

    def post(self, path: str, body: Any, verified: dict[str, str] | None = REVIEWER, **extra: Any) -> Answer:
        return call(self.quarantine, "POST", path, verified=verified, body=body, **extra)

    def review(self, row_id: int, body: dict[str, Any], verified: dict[str, str] | None = REVIEWER) -> Answer:
        return self.post(f"/api/v1/quarantine/{row_id}/review", body, verified)

    def rows(self, job_id: UUID) -> dict[str, dict[str, Any]]:
        """The job's quarantined readings by reason, through the API."""
        answer = self.get("/api/v1/quarantine", {"job_id": str(job_id)})
        assert answer.status == 200, answer.body
        return {item["reason"]: item for item in answer.body["items"]}

    def job(self, job_id: UUID) -> dict[str, Any]:
        answer = call(self.job_status, "GET", f"/api/v1/jobs/{job_id}", verified=claims("jobs:read"))
        assert answer.status == 200, answer.body
        body: dict[str, Any] = answer.body
        return body

    def stored(self, job_id: UUID) -> list[tuple[Any, ...]]:
        return self.worker.query(
            "SELECT sensor_id, time, value, unit, quality, system_id FROM readings WHERE job_id = %s ORDER BY time",
            job_id,
        )

    def add_system(self, tenant: str = TENANT, system_id: UUID | None = None) -> UUID:
        found = self.worker.query(
            "INSERT INTO systems (id, tenant_id, name) VALUES (%s, %s, %s) RETURNING id",
            system_id or uuid4(),
            tenant,
            f"press-{uuid4().hex[:8]}",
        )
        return UUID(str(found[0][0]))


@pytest.fixture
def review(
    aws_stack: StackContext, migrated_db: str, database_secret: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Review]:
    """The worker, QuarantineFunction and JobStatusFunction, imported cold with the template's environments; the
    database is reached through the Secrets Manager secret, as in AWS."""
    for function in ("LoadWorkerFunction", "QuarantineFunction", "JobStatusFunction"):
        for name, value in function_environment(aws_stack, function).items():
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", database_secret)
    for settings in (get_load_worker_settings, get_quarantine_settings, get_job_status_settings):
        settings.cache_clear()
    worker = WorkerHarness(handler_module("LoadWorkerFunction"), aws_stack, migrated_db)
    harness = Review(worker, handler_module("QuarantineFunction"), handler_module("JobStatusFunction"), uuid4())
    harness.add_system(system_id=harness.system_id)
    yield harness
    worker.module.get_service().connector.close()
    harness.quarantine.get_service().connector.close()
    for settings in (get_load_worker_settings, get_quarantine_settings, get_job_status_settings):
        settings.cache_clear()


@pytest.fixture
def mixed(review: Review) -> UUID:
    """A loaded batch: two valid readings and one of each reason the rules give."""
    return review.load(
        [
            reading(0),
            reading(1, value=950.0),
            reading(2, unit="psi"),
            reading(3, quality=20),
            reading(0),
            17,
            reading(6),
        ]
    )


# --- reading ----------------------------------------------------------------------------------------------------


def test_the_listing_shows_every_quarantined_reading_with_its_reason(review: Review, mixed: UUID) -> None:
    answer = review.get("/api/v1/quarantine")

    assert answer.status == 200
    items = answer.body["items"]
    assert [item["reason"] for item in items] == [
        "parse_error",
        "duplicate",
        "low_quality",
        "invalid_unit",
        "out_of_range",
    ]
    assert [item["id"] for item in items] == sorted((item["id"] for item in items), reverse=True)
    assert answer.body["next_cursor"] is None
    out_of_range = items[-1]
    assert out_of_range | {"id": 0, "quarantined_at": None} == {
        "id": 0,
        "job_id": str(mixed),
        "position": 1,
        "system_id": str(review.system_id),
        "sensor_id": SENSOR,
        "timestamp": stamp(1),
        "value": 950.0,
        "unit": "bar",
        "quality": 97,
        "raw": reading(1, value=950.0),
        "raw_bytes": None,
        "raw_sha256": None,
        "reason": "out_of_range",
        "reason_details": {
            "field": "value",
            "expected": "0..700 bar",
            "got": "950.0",
            "message": "value: expected 0..700 bar, got 950.0",
        },
        "review_status": "pending",
        "reviewed_by": None,
        "reviewed_at": None,
        "review_notes": None,
        "review_correction": None,
        "quarantined_at": None,
    }
    assert items[0]["raw"] == 17


def test_filters_narrow_the_listing(review: Review, mixed: UUID) -> None:
    other_system = review.add_system()
    other_job = review.load([reading(40, value=-5.0)], system=other_system)

    def reasons(**query: str) -> list[str]:
        answer = review.get("/api/v1/quarantine", query)
        assert answer.status == 200, answer.body
        return [item["reason"] for item in answer.body["items"]]

    assert reasons(job_id=str(other_job)) == ["out_of_range"]
    assert reasons(reason="out_of_range") == ["out_of_range", "out_of_range"]
    assert reasons(reason="out_of_range", system_id=str(review.system_id)) == ["out_of_range"]
    assert reasons(review_status="approved") == []
    assert len(reasons(review_status="pending", job_id=str(mixed))) == 5


def test_a_sensor_filter_keeps_that_sensors_rows_of_the_callers_tenant(review: Review, mixed: UUID) -> None:
    # Given the mixed batch (every reading of SENSOR, but the unreadable 17, which has no sensor), two rows of
    # another sensor, and a row of SENSOR in another tenant
    other = review.load(
        [reading(50, sensor_id=OTHER_SENSOR, value=-3.0), reading(51, sensor_id=OTHER_SENSOR, quality=1)]
    )
    outsider = review.add_system(tenant=OTHER_TENANT)
    review.load([reading(52, value=-3.0)], system=outsider, tenant=OTHER_TENANT)

    # When the tenant lists by sensor
    mine = review.get("/api/v1/quarantine", {"sensor_id": SENSOR})
    theirs = review.get("/api/v1/quarantine", {"sensor_id": OTHER_SENSOR, "reason": "low_quality"})

    # Then each keeps that sensor's rows of the tenant, with the other filters
    assert mine.status == 200, mine.body
    assert [(item["reason"], item["job_id"]) for item in mine.body["items"]] == [
        (reason, str(mixed)) for reason in ("duplicate", "low_quality", "invalid_unit", "out_of_range")
    ]
    assert [(item["sensor_id"], item["job_id"]) for item in theirs.body["items"]] == [(OTHER_SENSOR, str(other))]


def test_a_total_counts_every_row_the_filters_match_whatever_the_page(review: Review, mixed: UUID) -> None:
    # Given the mixed batch's five rows, three out-of-range rows of another sensor, and a row of SENSOR in another
    # tenant
    review.load([reading(60 + i, sensor_id=OTHER_SENSOR, value=-1.0) for i in range(3)])
    outsider = review.add_system(tenant=OTHER_TENANT)
    review.load([reading(70, value=-1.0)], system=outsider, tenant=OTHER_TENANT)

    def total(**query: str) -> object:
        answer = review.get("/api/v1/quarantine", query)
        assert answer.status == 200, answer.body
        return answer.body["total"]

    # When pages are read with include_total, and without
    first = review.get("/api/v1/quarantine", {"include_total": "true", "limit": "2"})
    second = review.get(
        "/api/v1/quarantine", {"include_total": "true", "limit": "2", "cursor": first.body["next_cursor"]}
    )

    # Then every page counts the whole filter, in the caller's tenant only, and nothing is counted unasked
    assert (len(first.body["items"]), first.body["total"], second.body["total"]) == (2, 8, 8)
    assert total(include_total="true", reason="out_of_range") == 4
    assert total(include_total="True", sensor_id=SENSOR, review_status="pending") == 4
    assert total(include_total="true", job_id=str(uuid4())) == 0
    assert total(include_total="false") is None
    assert total(limit="2") is None
    # And a reviewed row leaves the pending count
    assert review.review(review.rows(mixed)["low_quality"]["id"], {"action": "reject"}).status == 200
    assert total(include_total="true", sensor_id=SENSOR, review_status="pending") == 3


def test_one_row_reads_like_its_listing_item(review: Review, mixed: UUID) -> None:
    listed = review.rows(mixed)["invalid_unit"]

    answer = review.get(f"/api/v1/quarantine/{listed['id']}")

    assert (answer.status, answer.body) == (200, listed)


def test_another_tenants_rows_do_not_exist_for_the_caller(review: Review, mixed: UUID) -> None:
    row_id = review.rows(mixed)["out_of_range"]["id"]
    outsider = claims("quarantine:read quarantine:review", tenant=OTHER_TENANT)

    listing = review.get("/api/v1/quarantine", verified=outsider)
    one = review.get(f"/api/v1/quarantine/{row_id}", verified=outsider)
    reviewed = review.review(row_id, {"action": "reject"}, verified=outsider)

    assert (listing.status, listing.body["items"]) == (200, [])
    assert (one.status, one.error["code"]) == (404, "not_found")
    assert (reviewed.status, reviewed.error["code"]) == (404, "not_found")
    assert review.rows(mixed)["out_of_range"]["review_status"] == "pending"
    assert review.get("/api/v1/quarantine/abc").status == 404
    assert review.get("/api/v1/quarantine/99999999").status == 404


def test_pages_walk_every_row_once_while_rows_are_added(review: Review, mixed: UUID) -> None:
    review.load([reading(100 + i, value=-1.0) for i in range(6)])
    expected = [item["id"] for item in review.get("/api/v1/quarantine").body["items"]]
    walked: list[int] = []
    cursor = None
    pages = 0
    while True:
        answer = review.get("/api/v1/quarantine", {"limit": "3"} | ({"cursor": cursor} if cursor else {}))
        assert answer.status == 200, answer.body
        walked += [item["id"] for item in answer.body["items"]]
        pages += 1
        cursor = answer.body["next_cursor"]
        if cursor is None:
            break
        review.load([reading(200 + pages, quality=1)])  # newer rows: before the cursor, never in this walk

    assert walked == expected
    assert len(walked) == 11
    assert pages == 4


def test_pages_of_large_rows_stay_under_lambdas_answer_limit_and_walk_every_row_once(review: Review) -> None:
    # Given 300 rows whose raw is as large as a row keeps (16 KiB of JSON text) and full of quotes, each taking four
    # bytes of the Lambda answer (once as JSON, once as the body string): 9.6 MB in one page of the largest limit
    job_id = uuid4()
    stored = [
        row_id
        for (row_id,) in review.worker.query(
            "INSERT INTO quarantined_readings (tenant_id, job_id, position, raw, reason)"
            " SELECT %s, %s, n, %s, 'parse_error' FROM generate_series(0, 299) AS n RETURNING id",
            TENANT,
            job_id,
            Jsonb('"' * 8000),
        )
    ]

    # When the listing is walked page by page, 500 rows a page
    walked: list[int] = []
    answers: list[int] = []
    cursor = None
    while True:
        query = {"job_id": str(job_id), "limit": "500"} | ({"cursor": cursor} if cursor else {})
        result = invoke_raw(review.quarantine, "/api/v1/quarantine", query)
        answers.append(len(json.dumps(result, ensure_ascii=False).encode()))
        assert result["statusCode"] == 200, result["body"][:500]
        page = json.loads(result["body"])
        walked += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    # Then every page fits Lambda's answer, and every row is shown once
    assert max(answers) <= LAMBDA_ANSWER_MAX
    assert len(answers) >= 2
    assert walked == sorted(stored, reverse=True)


def test_a_row_stored_whole_before_raw_was_cut_is_shown_cut_in_every_answer(review: Review) -> None:
    # Given a row written before migration 0006: its raw kept whole (7 MB of JSON text), raw_bytes and raw_sha256 null
    job_id = uuid4()
    ((row_id, text_bytes, text_sha256),) = review.worker.query(
        "INSERT INTO quarantined_readings (tenant_id, job_id, position, raw, reason)"
        " VALUES (%s, %s, 0, %s, 'parse_error')"
        " RETURNING id, octet_length(raw::text), encode(sha256(convert_to(raw::text, 'UTF8')), 'hex')",
        TENANT,
        job_id,
        Jsonb({"sensor_id": "é" * 3_500_000}),
    )

    # When it is listed, read, and reviewed
    listed = invoke_raw(review.quarantine, "/api/v1/quarantine", {"job_id": str(job_id)})
    read = invoke_raw(review.quarantine, f"/api/v1/quarantine/{row_id}", {})
    rejected = review.review(row_id, {"action": "reject", "notes": "garbage"})

    # Then each answer fits Lambda's limit, and shows the start of its JSON text with the size and hash of the whole
    for answer in (listed, read):
        assert answer["statusCode"] == 200, answer["body"][:500]
        assert len(json.dumps(answer, ensure_ascii=False).encode()) <= 64 * 1024
    (item,) = json.loads(listed["body"])["items"]
    assert item == json.loads(read["body"])
    assert rejected.status == 200
    assert rejected.body["raw"] == item["raw"]
    assert item["raw"].startswith('{"sensor_id": "ééé')
    assert len(json.dumps(item["raw"], ensure_ascii=False).encode()) <= MAX_RAW_BYTES
    assert (item["raw_bytes"], item["raw_sha256"]) == (text_bytes, text_sha256)
    assert text_bytes > 7_000_000


def invoke_raw(module: ModuleType, path: str, query: dict[str, str]) -> dict[str, Any]:
    """The handler's whole answer (what Lambda would measure), for a GET by a reader."""
    event = load_event("quarantine-list.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["queryStringParameters"] = query
    event["rawQueryString"] = "&".join(f"{name}={value}" for name, value in query.items())
    event["requestContext"]["authorizer"]["jwt"]["claims"] = READER
    result: dict[str, Any] = module.lambda_handler(event, FakeLambdaContext())
    return result


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "501"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"reason": "bad_vibes"}, "reason"),
        ({"review_status": "done"}, "review_status"),
        ({"job_id": "17"}, "job_id"),
        ({"sensor_id": "press-17-a"}, "sensor_id"),
        ({"include_total": "yes"}, "include_total"),
        ({"include_total": "1"}, "include_total"),
        ({"sort": "asc"}, "sort"),
        ({"cursor": "eyJrIjoiam9icyIsInAiOnt9fQ"}, "cursor"),
        ({"cursor": "eyJrIjoicXVhcmFudGluZSIsInAiOnsiYmVmb3JlX2lkIjoiMSJ9fQ"}, "cursor"),
    ],
)
def test_a_bad_query_is_refused_naming_the_parameter(review: Review, query: dict[str, str], field: str) -> None:
    answer = review.get("/api/v1/quarantine", query)

    assert (answer.status, answer.error["code"]) == (400, "invalid_request")
    assert [detail["field"] for detail in answer.error["details"]] == [field]


# --- reviewing one row --------------------------------------------------------------------------------------------


def test_fixing_an_out_of_range_reading_replays_it_into_readings(review: Review, mixed: UUID) -> None:
    row = review.rows(mixed)["out_of_range"]
    before = review.stored(mixed)

    answer = review.review(row["id"], {"action": "fix", "value": 95.0, "notes": "decimal point lost by the gateway"})

    assert answer.status == 200, answer.body
    assert answer.body["review_status"] == "fixed"
    assert answer.body["reviewed_by"] == "operator-anna"
    assert answer.body["review_notes"] == "decimal point lost by the gateway"
    assert answer.body["review_correction"] == {"value": 95.0}
    assert answer.body["value"] == 950.0  # what arrived is kept
    assert datetime.fromisoformat(answer.body["reviewed_at"]) >= NOW
    replayed = set(review.stored(mixed)) - set(before)
    assert [(str(r[0]), r[2], r[3], r[4], r[5]) for r in replayed] == [(SENSOR, 95.0, "bar", 97, review.system_id)]
    job = review.job(mixed)
    assert (job["reviewed_readings"], job["replayed_readings"]) == (1, 1)
    assert (job["inserted_readings"], job["quarantined_readings"]) == (2, 5)  # the load's own counts stay


def test_a_fix_may_correct_unit_and_timestamp(review: Review, mixed: UUID) -> None:
    row = review.rows(mixed)["invalid_unit"]

    answer = review.review(row["id"], {"action": "fix", "unit": "bar", "timestamp": stamp(300)})

    assert answer.status == 200, answer.body
    assert answer.body["review_correction"] == {"unit": "bar", "timestamp": stamp(300).replace("Z", "+00:00")}
    assert len(review.stored(mixed)) == 3


def test_approving_a_reading_that_still_breaks_a_rule_is_refused_and_it_stays_pending(
    review: Review, mixed: UUID
) -> None:
    row = review.rows(mixed)["out_of_range"]

    answer = review.review(row["id"], {"action": "approve"})
    bad_fix = review.review(row["id"], {"action": "fix", "value": 700.5})

    assert (answer.status, answer.error["code"]) == (422, "reading_invalid")
    assert answer.error["details"] == [
        {"field": "value", "index": None, "reason": "out_of_range: value: expected 0..700 bar, got 950.0"}
    ]
    assert (bad_fix.status, bad_fix.error["details"][0]["field"]) == (422, "value")
    assert review.rows(mixed)["out_of_range"]["review_status"] == "pending"
    assert len(review.stored(mixed)) == 2
    assert review.job(mixed)["reviewed_readings"] == 0


def test_a_parse_error_cannot_be_approved_for_want_of_fields(review: Review, mixed: UUID) -> None:
    row = review.rows(mixed)["parse_error"]

    answer = review.review(row["id"], {"action": "approve"})

    assert (answer.status, answer.error["details"][0]["field"]) == (422, "sensor_id")


def test_a_reading_too_large_to_keep_whole_shows_it_was_cut_and_can_still_be_fixed(review: Review) -> None:
    # Given a reading whose unit is wrong and which carries 100 KB besides its six fields
    large = reading(0, unit="psi", note="n" * 100_000)
    job_id = review.load([large])

    # When a reviewer lists it, approves it as it is, then fixes its unit
    item = review.rows(job_id)["invalid_unit"]
    approved = review.review(item["id"], {"action": "approve"})
    fixed = review.review(item["id"], {"action": "fix", "unit": "bar"})

    # Then the listing keeps only the start of its raw text, saying so with the size and SHA-256 of the whole; the
    # fields a review judges were read whole, so approval judges them (422: the unit) and the fix stores it.
    whole = json.dumps(large, separators=(",", ":")).encode()
    assert (item["raw_bytes"], item["raw_sha256"]) == (len(whole), hashlib.sha256(whole).hexdigest())
    assert isinstance(item["raw"], str)
    assert whole.decode().startswith(item["raw"])
    assert len(json.dumps(item["raw"], ensure_ascii=False).encode()) <= MAX_RAW_BYTES
    assert (approved.status, approved.error["details"][0]["field"]) == (422, "unit")
    assert (fixed.status, fixed.body["review_status"], fixed.body["raw_bytes"]) == (200, "fixed", len(whole))
    assert [row[3] for row in review.stored(job_id)] == ["bar"]


def test_a_line_cut_by_the_worker_can_be_rejected_and_not_approved(review: Review) -> None:
    # Given a drop whose second line is 3 MiB (over the 1 MiB bound)
    line = '{"sensor_id": "' + "s" * (3 << 20) + '"}'
    body = (json.dumps({"system_id": str(review.system_id)} | reading(0)) + "\n" + line + "\n").encode()
    review.worker.put("drops/demo/long-line.ndjson", body)
    assert review.worker.deliver() == {"batchItemFailures": []}
    job_id = review.worker.job_by_key("drops/demo/long-line.ndjson").job_id

    # When a reviewer finds its row, approves it, then rejects it
    item = review.rows(job_id)["parse_error"]
    approved = review.review(item["id"], {"action": "approve"})
    rejected = review.review(item["id"], {"action": "reject", "notes": "a broken export"})

    # Then the row is the line's start with its size and hash; nothing of it can be approved (no field was read)
    assert (item["position"], item["raw_bytes"]) == (2, len(line))
    assert item["raw_sha256"] == hashlib.sha256(line.encode()).hexdigest()
    assert line.startswith(item["raw"])
    assert item["reason_details"]["got"] == f"a line of {len(line) + 1} characters"
    assert (approved.status, approved.error["details"][0]["field"]) == (422, "sensor_id")
    assert (rejected.status, rejected.body["review_status"]) == (200, "rejected")
    assert len(review.stored(job_id)) == 1


def test_rejecting_records_the_decision_and_replays_nothing(review: Review, mixed: UUID) -> None:
    row = review.rows(mixed)["low_quality"]

    answer = review.review(row["id"], {"action": "reject", "notes": "sensor flagged faulty"})
    again = review.review(row["id"], {"action": "approve"})

    assert (answer.status, answer.body["review_status"], answer.body["review_correction"]) == (200, "rejected", None)
    assert (again.status, again.error["code"]) == (409, "not_pending")
    assert again.error["details"][0]["field"] == "review_status"
    assert again.error["details"][0]["reason"].startswith("rejected by operator-anna at ")
    assert len(review.stored(mixed)) == 2
    job = review.job(mixed)
    assert (job["reviewed_readings"], job["replayed_readings"]) == (1, 0)


def test_a_reading_of_a_system_registered_later_can_be_approved(review: Review) -> None:
    late = uuid4()
    job_id = review.load([reading(0), reading(1)], system=late)
    rows = list(review.get("/api/v1/quarantine", {"job_id": str(job_id)}).body["items"])

    refused = review.review(rows[0]["id"], {"action": "approve"})
    review.add_system(system_id=late)
    approved = [review.review(row["id"], {"action": "approve"}) for row in rows]

    assert (refused.status, refused.error["details"][0]["field"]) == (422, "system_id")
    assert "system_not_found" in refused.error["details"][0]["reason"]
    assert [answer.body["review_status"] for answer in approved] == ["approved", "approved"]
    assert len(review.stored(job_id)) == 2
    assert review.job(job_id)["replayed_readings"] == 2


def test_a_system_of_another_tenant_is_still_not_found(review: Review) -> None:
    theirs = review.add_system(tenant=OTHER_TENANT)
    job_id = review.load([reading(0)], system=theirs)
    (row,) = review.get("/api/v1/quarantine", {"job_id": str(job_id)}).body["items"]

    answer = review.review(row["id"], {"action": "approve"})

    assert (answer.status, answer.error["code"]) == (422, "reading_invalid")


def test_approving_a_duplicate_of_a_stored_reading_is_a_conflict(review: Review, mixed: UUID) -> None:
    row = review.rows(mixed)["duplicate"]

    answer = review.review(row["id"], {"action": "approve"})

    assert (answer.status, answer.error["code"]) == (409, "duplicate_reading")
    assert review.rows(mixed)["duplicate"]["review_status"] == "pending"
    assert review.job(mixed)["reviewed_readings"] == 0


def test_two_fixes_that_make_the_same_reading_replay_it_once(review: Review, mixed: UUID) -> None:
    rows = review.rows(mixed)
    fix = {"action": "fix", "unit": "bar", "value": 10.0, "timestamp": stamp(500)}

    first = review.review(rows["invalid_unit"]["id"], fix)
    second = review.review(rows["out_of_range"]["id"], fix)

    assert first.status == 200
    assert (second.status, second.error["code"]) == (409, "duplicate_reading")


# --- tenants and the reading identity (system, sensor, instant) ---------------------------------------------------


def test_another_tenant_reusing_a_sensor_id_neither_blocks_nor_learns_about_the_owners_reading(review: Review) -> None:
    # Tenant "other" posts demo's sensor id at demo's instant under a system of its own, before demo's reading arrives.
    # Before readings were keyed by system, demo's real reading became a "duplicate" and other's counts said so.
    intruder = review.add_system(OTHER_TENANT)
    forged = review.load([reading(0, value=1.0)], system=intruder, tenant=OTHER_TENANT)
    owner = review.load([reading(0)])

    other_job = call(
        review.job_status, "GET", f"/api/v1/jobs/{forged}", verified=claims("jobs:read", tenant=OTHER_TENANT)
    ).body
    assert (other_job["inserted_readings"], other_job["duplicate_readings"]) == (1, 0)
    assert (review.job(owner)["inserted_readings"], review.job(owner)["duplicate_readings"]) == (1, 0)
    assert [row[2] for row in review.stored(owner)] == [212.5]
    assert [row[2] for row in review.stored(forged)] == [1.0]


def test_a_fix_cannot_probe_another_tenants_readings(review: Review) -> None:
    owner = review.load([reading(0)])
    intruder = review.add_system(OTHER_TENANT)
    probe = review.load([reading(1, unit="psi")], system=intruder, tenant=OTHER_TENANT)
    other_reviewer = claims("quarantine:read quarantine:review", tenant=OTHER_TENANT, sub="intruder")
    listing = review.get("/api/v1/quarantine", {"job_id": str(probe)}, verified=other_reviewer)
    row_id = listing.body["items"][0]["id"]

    # The fix lands at the very instant demo holds a reading of that sensor: under other's own system it is
    # another reading, so it is replayed (not a 409 that would tell other that demo holds one there).
    answer = review.review(row_id, {"action": "fix", "unit": "bar", "timestamp": stamp(0)}, verified=other_reviewer)

    assert answer.status == 200, answer.body
    assert len(review.stored(owner)) == 1
    assert review.worker.query("SELECT count(*) FROM readings WHERE sensor_id = %s", UUID(SENSOR)) == [(2,)]


def test_a_duplicate_of_the_tenants_own_stored_reading_is_still_refused(review: Review) -> None:
    review.load([reading(0)])
    second = review.load([reading(0, value=1.0)])
    row = review.rows(second)["duplicate"]

    answer = review.review(row["id"], {"action": "approve"})

    assert (answer.status, answer.error["code"]) == (409, "duplicate_reading")
    assert answer.error["details"][0]["reason"] == "readings holds this system's sensor at this instant"


# Two "instances" here are two threads of one process, and Powertools keeps metrics in a store shared by every
# Metrics object of a process: when both finish together, one flush takes the other's metrics and the other warns
# that it has none. In Lambda each instance is its own process, so only that warning is let through here.
@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
def test_a_concurrent_double_review_has_one_winner(review: Review, mixed: UUID) -> None:
    row_id = review.rows(mixed)["out_of_range"]["id"]
    reviewers = [handler_module("QuarantineFunction") for _ in range(2)]  # two warm instances, two connections
    answers: list[Answer] = []

    def review_in(module: ModuleType, value: float) -> None:
        answers.append(
            call(
                module,
                "POST",
                f"/api/v1/quarantine/{row_id}/review",
                verified=REVIEWER,
                body={"action": "fix", "value": value},
            )
        )

    threads = [
        threading.Thread(target=review_in, args=(module, value))
        for module, value in zip(reviewers, (90.0, 91.0), strict=True)
    ]
    # Hold the row so both reviews reach its lock before either can take it.
    try:
        with psycopg.connect(review.worker.dsn) as holder:
            holder.execute("SELECT 1 FROM quarantined_readings WHERE id = %s FOR UPDATE", (row_id,))
            for thread in threads:
                thread.start()
            wait_for_lock_waiters(review.worker.dsn, 2)
            holder.rollback()
    finally:
        for thread in threads:
            thread.join(timeout=60)
        for module in reviewers:
            module.get_service().connector.close()

    assert sorted(answer.status for answer in answers) == [200, 409]
    assert {answer.error["code"] for answer in answers if answer.status == 409} == {"not_pending"}
    assert len(review.stored(mixed)) == 3
    assert review.job(mixed)["reviewed_readings"] == 1


def wait_for_lock_waiters(dsn: str, count: int) -> None:
    """Wait until ``count`` sessions are blocked on a lock (the reviews queued behind the holder)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(600):
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone()
            if waiting is not None and waiting[0] >= count:
                return
            time.sleep(0.05)
    raise AssertionError(f"fewer than {count} reviews reached the row lock")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "fix"}, None),
        ({"action": "approve", "value": 1.0}, None),
        ({"action": "delete"}, "action"),
        ({"action": "reject", "review_status": "approved"}, "review_status"),
        ({"action": "fix", "unit": "psi"}, "unit"),
        ({"action": "fix", "timestamp": "2026-11-20T08:00:00"}, "timestamp"),
        ({"action": "reject", "notes": "x" * 2001}, "notes"),
        # JSON carries a NUL, PostgreSQL's text does not: refused with the body, not a 500 from the database.
        ({"action": "reject", "notes": "gauge\u0000reset"}, "notes"),
        # Members of the wrong JSON type are refused, never coerced: false is not 0 bar, nor a number a timestamp.
        ({"action": "fix", "value": False}, "value"),
        ({"action": "fix", "value": "212.5"}, "value"),
        ({"action": "fix", "timestamp": 1763800000}, "timestamp"),
        ([], None),
    ],
)
def test_a_bad_review_body_is_refused_naming_the_field(
    review: Review, mixed: UUID, body: Any, field: str | None
) -> None:
    row_id = review.rows(mixed)["out_of_range"]["id"]

    answer = review.review(row_id, body)

    assert (answer.status, answer.error["code"]) == (400, "invalid_request")
    assert answer.error["details"][0]["field"] == field


def test_a_review_body_must_be_json_and_small(review: Review, mixed: UUID) -> None:
    path = f"/api/v1/quarantine/{review.rows(mixed)['out_of_range']['id']}/review"

    not_json = review.post(path, "action=reject")
    wrong_type = review.post(path, '{"action": "reject"}', headers={"content-type": "text/plain"})
    too_big = review.post(path, {"action": "reject", "notes": "x" * 300_000})

    assert (not_json.status, not_json.error["details"][0]["field"]) == (400, "body")
    assert (wrong_type.status, wrong_type.error["details"][0]["field"]) == (415, "Content-Type")
    assert (too_big.status, too_big.error["code"]) == (413, "payload_too_large")


def test_each_route_needs_its_scope(review: Review, mixed: UUID) -> None:
    row_id = review.rows(mixed)["out_of_range"]["id"]

    read_only_review = review.review(row_id, {"action": "reject"}, verified=READER)
    review_only_read = review.get("/api/v1/quarantine", verified=claims("quarantine:review"))
    bulk = review.post("/api/v1/quarantine/review", {"action": "reject", "ids": [row_id]}, verified=READER)
    anonymous = review.get(f"/api/v1/quarantine/{row_id}", verified=None)

    assert [read_only_review.status, review_only_read.status, bulk.status] == [403, 403, 403]
    assert read_only_review.error["details"][0]["reason"] == "quarantine:review is not among the token's scopes"
    assert anonymous.status == 401
    assert review.rows(mixed)["out_of_range"]["review_status"] == "pending"


# --- bulk ---------------------------------------------------------------------------------------------------------


def test_a_bulk_review_by_ids_reports_each_rows_outcome(review: Review, mixed: UUID) -> None:
    rows = review.rows(mixed)
    review.review(rows["low_quality"]["id"], {"action": "reject"})
    ids = [rows["out_of_range"]["id"], rows["low_quality"]["id"], 987654, rows["invalid_unit"]["id"]]

    answer = review.post("/api/v1/quarantine/review", {"action": "reject", "ids": ids, "notes": "bad gateway day"})

    assert answer.status == 200, answer.body
    assert [(r["id"], r["review_status"], r["error"] and r["error"]["code"]) for r in answer.body["results"]] == [
        (ids[0], "rejected", None),
        (ids[1], None, "not_pending"),
        (ids[2], None, "not_found"),
        (ids[3], "rejected", None),
    ]
    assert (answer.body["reviewed"], answer.body["failed"], answer.body["next_cursor"]) == (2, 2, None)
    assert review.job(mixed)["reviewed_readings"] == 3


def test_a_bulk_review_by_filter_clears_pending_rows_page_by_page(review: Review) -> None:
    job_id = review.load([reading(i, value=800.0 + i) for i in range(5)] + [reading(9, quality=5)])
    request: dict[str, Any] = {
        "action": "fix",
        "value": 100.0,
        "filter": {"job_id": str(job_id), "reason": "out_of_range"},
        "limit": 2,
    }

    first = review.post("/api/v1/quarantine/review", request)
    rest = []
    cursor = first.body["next_cursor"]
    while cursor is not None:
        page = review.post("/api/v1/quarantine/review", request | {"cursor": cursor})
        rest += page.body["results"]
        cursor = page.body["next_cursor"]

    results = first.body["results"] + rest
    outcomes = [(r["review_status"], r["error"] and r["error"]["code"]) for r in results]
    # One fixed value for five sensors-at-instants: same sensor, different times, so every one replays.
    assert outcomes == [("fixed", None)] * 5
    assert len(review.stored(job_id)) == 5
    assert review.rows(job_id)["low_quality"]["review_status"] == "pending"
    job = review.job(job_id)
    assert (job["reviewed_readings"], job["replayed_readings"]) == (5, 5)


def test_a_bulk_review_by_sensor_reviews_only_that_sensors_pending_rows(review: Review, mixed: UUID) -> None:
    # Given the mixed batch of SENSOR and a batch of another sensor's readings, one of them reviewed already
    other = review.load([reading(50 + i, sensor_id=OTHER_SENSOR, value=-3.0) for i in range(3)])
    done = review.get("/api/v1/quarantine", {"sensor_id": OTHER_SENSOR}).body["items"][0]["id"]
    assert review.review(done, {"action": "reject"}).status == 200

    # When the other sensor's rows are rejected by filter
    answer = review.post(
        "/api/v1/quarantine/review",
        {"action": "reject", "filter": {"sensor_id": OTHER_SENSOR}, "notes": "sensor replaced on 2026-11-19"},
    )

    # Then only its pending rows are reviewed, and SENSOR's stay pending
    assert answer.status == 200, answer.body
    assert (answer.body["reviewed"], answer.body["failed"], answer.body["next_cursor"]) == (2, 0, None)
    listed = review.get("/api/v1/quarantine", {"job_id": str(other)}).body["items"]
    assert {item["review_status"] for item in listed} == {"rejected"}
    assert {row["review_status"] for row in review.rows(mixed).values()} == {"pending"}


def test_a_bulk_reviews_sensor_must_be_a_uuid(review: Review, mixed: UUID) -> None:
    answer = review.post("/api/v1/quarantine/review", {"action": "reject", "filter": {"sensor_id": "press-17-a"}})

    assert (answer.status, answer.error["details"][0]["field"]) == (400, "filter.sensor_id")
    assert {row["review_status"] for row in review.rows(mixed).values()} == {"pending"}


def test_a_bulk_review_wants_ids_or_a_filter(review: Review, mixed: UUID) -> None:
    neither = review.post("/api/v1/quarantine/review", {"action": "reject"})
    both = review.post("/api/v1/quarantine/review", {"action": "reject", "ids": [1], "filter": {}})
    repeated = review.post("/api/v1/quarantine/review", {"action": "reject", "ids": [1, 1]})
    too_many = review.post("/api/v1/quarantine/review", {"action": "reject", "ids": list(range(1, 502))})

    coerced = review.post("/api/v1/quarantine/review", {"action": "reject", "ids": ["1", True]})
    text_limit = review.post("/api/v1/quarantine/review", {"action": "reject", "filter": {}, "limit": "5"})

    assert [neither.status, both.status, repeated.status, too_many.status] == [400, 400, 400, 400]
    assert too_many.error["details"][0]["field"] == "ids"
    assert [(detail["field"], detail["index"]) for detail in coerced.error["details"]] == [("ids", 0), ("ids", 1)]
    assert (text_limit.status, text_limit.error["details"][0]["field"]) == (400, "limit")


def test_bulk_review_notes_with_a_nul_character_are_refused_before_any_row_is_touched(
    review: Review, mixed: UUID
) -> None:
    rows = review.rows(mixed)

    answer = review.post("/api/v1/quarantine/review", {"action": "reject", "filter": {}, "notes": "a\u0000b"})

    assert (answer.status, answer.error["details"][0]["field"]) == (400, "notes")
    assert {row["review_status"] for row in review.rows(mixed).values()} == {"pending"}
    assert len(rows) == 5


# --- faults and samples -------------------------------------------------------------------------------------------


def test_a_review_stands_when_the_job_record_cannot_be_updated(
    review: Review, mixed: UUID, aws_stack: StackContext
) -> None:
    row_id = review.rows(mixed)["out_of_range"]["id"]
    dynamodb_client().delete_table(TableName=str(aws_stack.ref("JobsTable")))

    answer = review.review(row_id, {"action": "fix", "value": 95.0})

    assert (answer.status, answer.body["review_status"]) == (200, "fixed")
    assert len(review.stored(mixed)) == 3


def test_the_database_unreachable_answers_503_and_changes_nothing(
    review: Review, mixed: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    row_id = review.rows(mixed)["out_of_range"]["id"]
    review.quarantine.get_service().connector.close()
    secret = {"host": "127.0.0.1", "port": 1, "username": "postgres", "password": "", "dbname": "sluice"}
    arn = secretsmanager_client().create_secret(Name="sluice-nowhere", SecretString=json.dumps(secret))["ARN"]
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", arn)
    get_quarantine_settings.cache_clear()
    cold = handler_module("QuarantineFunction")

    listing = call(cold, "GET", "/api/v1/quarantine", verified=READER)
    reviewed = call(cold, "POST", f"/api/v1/quarantine/{row_id}/review", verified=REVIEWER, body={"action": "reject"})
    refused = call(cold, "POST", f"/api/v1/quarantine/{row_id}/review", verified=READER, body={"action": "reject"})

    assert (listing.status, listing.error["code"], listing.headers["Retry-After"]) == (503, "storage_unavailable", "5")
    assert reviewed.status == 503
    assert refused.status == 403  # refused before any database work
    assert review.rows(mixed)["out_of_range"]["review_status"] == "pending"


def test_the_sample_events_run_against_the_handler(review: Review) -> None:
    job_id = review.load([reading(0, value=950.0), reading(1)])

    answers = {
        name: review.quarantine.lambda_handler(load_event(name), FakeLambdaContext())
        for name in ("quarantine-list.json", "quarantine-review.json", "quarantine-review-bulk.json")
    }

    assert {name: answer["statusCode"] for name, answer in answers.items()} == dict.fromkeys(answers, 200)
    assert json.loads(answers["quarantine-review.json"]["body"])["review_status"] == "fixed"
    assert len(review.stored(job_id)) == 2


@pytest.mark.parametrize("secret", ["not json", '{"host": "127.0.0.1"}', "[]"])
def test_a_malformed_database_secret_answers_503_not_a_crash(
    review: Review, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    arn = secretsmanager_client().create_secret(Name="sluice-broken", SecretString=secret)["ARN"]
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", arn)
    get_quarantine_settings.cache_clear()

    answer = call(handler_module("QuarantineFunction"), "GET", "/api/v1/quarantine", verified=READER)

    assert (answer.status, answer.error["code"]) == (503, "storage_unavailable")


# --- per-principal limits: reads, reviews and reviewed rows, each a budget of its own -----------------------------


@pytest.fixture
def limited(review: Review, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ModuleType]]:
    """QuarantineFunction imported cold with some of its limits set lower (``SLUICE_<NAME>=<value>``)."""
    built: list[ModuleType] = []

    def build(**limits: int) -> ModuleType:
        for name, value in limits.items():
            monkeypatch.setenv(f"SLUICE_{name.upper()}", str(value))
        get_quarantine_settings.cache_clear()
        built.append(handler_module("QuarantineFunction"))
        return built[-1]

    yield build
    for module in built:
        module.get_service().connector.close()


def rejected(module: ModuleType, row_ids: list[int], verified: dict[str, str] = REVIEWER) -> Answer:
    return call(
        module, "POST", "/api/v1/quarantine/review", verified=verified, body={"action": "reject", "ids": row_ids}
    )


def rows_of(review: Review, job_id: UUID) -> list[dict[str, Any]]:
    """Every quarantined row of a job, through the API (as another reader, so no limit under test is spent)."""
    answer = review.get("/api/v1/quarantine", {"job_id": str(job_id)}, claims("quarantine:read", sub="auditor"))
    assert answer.status == 200, answer.body
    items: list[dict[str, Any]] = answer.body["items"]
    return items


def test_a_review_flood_is_refused_with_retry_after_and_the_row_stays_pending(
    review: Review, mixed: UUID, limited: Callable[..., ModuleType]
) -> None:
    module = limited(review_rate_limit_requests=2)
    rows = review.rows(mixed)
    ids = [rows[reason]["id"] for reason in ("out_of_range", "invalid_unit", "low_quality")]

    answers = [
        call(module, "POST", f"/api/v1/quarantine/{row_id}/review", verified=REVIEWER, body={"action": "reject"})
        for row_id in ids
    ]
    colleague = rejected(module, [ids[2]], claims("quarantine:review", sub="operator-carl"))

    assert [answer.status for answer in answers] == [200, 200, 429]
    assert answers[2].error["code"] == "rate_limited"
    assert answers[2].error["message"].startswith("rate limit reached (review)")
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
    # The refused review touched nothing; another principal's review of the same row is served.
    assert colleague.body["results"] == [{"id": ids[2], "review_status": "rejected", "error": None}]
    assert call(module, "GET", "/api/v1/quarantine", verified=REVIEWER).status == 200


def test_reads_used_up_block_neither_reviews_nor_ingest(
    review: Review,
    mixed: UUID,
    limited: Callable[..., ModuleType],
    aws_stack: StackContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = limited(read_rate_limit_requests=2)
    row_id = review.rows(mixed)["out_of_range"]["id"]
    for name, value in function_environment(aws_stack, "IngestApiFunction").items():
        monkeypatch.setenv(name, value)
    get_ingest_api_settings.cache_clear()
    ingest = handler_module("IngestApiFunction")

    reads = [call(module, "GET", f"/api/v1/quarantine/{row_id}", verified=REVIEWER).status for _ in range(3)]
    reviewed = call(module, "POST", f"/api/v1/quarantine/{row_id}/review", verified=REVIEWER, body={"action": "reject"})
    batch = {"system_id": str(review.system_id), "readings": [reading(40)]}
    accepted = call(
        ingest, "POST", "/api/v1/data/ingest", verified=claims("ingest:write", sub="operator-anna"), body=batch
    )
    get_ingest_api_settings.cache_clear()

    assert reads == [200, 200, 429]
    assert (reviewed.status, reviewed.body["review_status"]) == (200, "rejected")
    assert accepted.status == 202, accepted.body


def test_a_bulk_review_spends_one_row_each_from_a_budget_per_minute_and_a_single_one_none(
    review: Review, limited: Callable[..., ModuleType]
) -> None:
    module = limited(review_max_rows_per_request=3, review_rows_per_minute=5)
    job_id = review.load([reading(n, value=900.0 + n) for n in range(6)])
    ids = sorted(item["id"] for item in rows_of(review, job_id))

    first = rejected(module, ids[:3])
    over = rejected(module, ids[3:6])
    fits = rejected(module, ids[3:5])
    single = call(module, "POST", f"/api/v1/quarantine/{ids[5]}/review", verified=REVIEWER, body={"action": "reject"})

    assert (first.status, first.body["reviewed"]) == (200, 3)
    # 3 spent, 3 more asked: over the 5 a minute, refused whole before any row is touched.
    assert (over.status, over.error["code"]) == (429, "rate_limited")
    assert "this request spends 3 rows" in over.error["message"]
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert (fits.status, fits.body["reviewed"]) == (200, 2)
    # A single review is bounded by the review budget alone: it still passes.
    assert (single.status, single.body["review_status"]) == (200, "rejected")
    statuses = {item["id"]: item["review_status"] for item in rows_of(review, job_id)}
    assert [statuses[row_id] for row_id in ids] == ["rejected"] * 6


def test_a_bulk_review_is_bounded_in_rows_per_request(review: Review, limited: Callable[..., ModuleType]) -> None:
    module = limited(review_max_rows_per_request=2)
    job_id = review.load([reading(n, value=900.0 + n) for n in range(3)])
    ids = sorted(item["id"] for item in rows_of(review, job_id))
    by_filter = {"action": "reject", "filter": {"job_id": str(job_id)}}

    too_many_ids = rejected(module, ids)
    too_large_a_limit = call(
        module, "POST", "/api/v1/quarantine/review", verified=REVIEWER, body=by_filter | {"limit": 3}
    )
    bounded = call(module, "POST", "/api/v1/quarantine/review", verified=REVIEWER, body=by_filter)

    assert (too_many_ids.status, too_many_ids.error["details"][0]["field"]) == (400, "ids")
    assert (too_large_a_limit.status, too_large_a_limit.error["details"][0]["field"]) == (400, "limit")
    # A filter without a limit takes the bound: two rows now, and a cursor to the third.
    assert (bounded.status, bounded.body["reviewed"]) == (200, 2)
    assert bounded.body["next_cursor"] is not None
    assert sorted(item["review_status"] for item in rows_of(review, job_id)) == ["pending", "rejected", "rejected"]
