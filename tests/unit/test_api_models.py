"""The API shapes: the ingest envelope's precise errors, and responses that serialise as the contract says."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from sluice.models.api import (
    BulkReviewRequest,
    ErrorInfo,
    ErrorResponse,
    IngestRequest,
    JobAccepted,
    JobQuery,
    JobView,
    QuarantineItem,
    QuarantinePage,
    QuarantineQuery,
    ReadingIn,
    ReviewRequest,
    error_details,
)
from sluice.models.jobs import JobSource, JobStatus, sortable_instant
from sluice.models.quarantine import ReviewAction, ReviewStatus
from sluice.models.readings import QuarantineReason, Unit

SYSTEM = "0b7e7c1e-1111-4222-8333-444455556666"


def envelope_errors(body: dict[str, Any]) -> list[tuple[str | None, int | None]]:
    with pytest.raises(ValidationError) as caught:
        IngestRequest.model_validate(body)
    return [(d.field, d.index) for d in error_details(caught.value)]


def test_an_envelope_takes_any_readings_so_bad_ones_reach_quarantine() -> None:
    request = IngestRequest.model_validate({"system_id": SYSTEM, "readings": [{"value": "junk"}, 42, None]})

    assert request.system_id == UUID(SYSTEM)
    assert request.readings == [{"value": "junk"}, 42, None]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"readings": [{}]}, [("system_id", None)]),
        ({"system_id": "press-7", "readings": [{}]}, [("system_id", None)]),
        ({"system_id": SYSTEM, "readings": []}, [("readings", None)]),
        ({"system_id": SYSTEM, "readings": [{}] * 10_001}, [("readings", None)]),
        ({"system_id": SYSTEM, "readings": {"0": {}}}, [("readings", None)]),
        ({"system_id": SYSTEM, "readings": [{}], "tenant_id": "evil"}, [("tenant_id", None)]),
        ({"system_id": SYSTEM, "readings": [{}], "job_id": str(uuid4())}, [("job_id", None)]),
    ],
)
def test_a_malformed_envelope_names_the_field(
    body: dict[str, Any], expected: list[tuple[str | None, int | None]]
) -> None:
    assert envelope_errors(body) == expected


def test_the_batch_bounds_are_inclusive() -> None:
    assert len(IngestRequest.model_validate({"system_id": SYSTEM, "readings": [{}]}).readings) == 1
    assert len(IngestRequest.model_validate({"system_id": SYSTEM, "readings": [{}] * 10_000}).readings) == 10_000


def test_reading_errors_carry_the_index_inside_a_list() -> None:
    class Batch(IngestRequest):
        readings: list[ReadingIn]

    good = {
        "sensor_id": str(uuid4()),
        "timestamp": "2026-11-22T10:00:00Z",
        "value": 1.0,
        "unit": "bar",
        "quality": 90,
    }
    with pytest.raises(ValidationError) as caught:
        Batch.model_validate({"system_id": SYSTEM, "readings": [good, {**good, "unit": "psi"}]})

    assert [(d.field, d.index) for d in error_details(caught.value)] == [("readings.unit", 1)]


def test_a_reading_needs_an_offset_timestamp() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        ReadingIn(sensor_id=uuid4(), timestamp=datetime(2026, 1, 1), value=1.0, unit=Unit.BAR, quality=90)


def test_review_requests_accept_the_three_actions_and_nothing_else() -> None:
    fix = ReviewRequest.model_validate({"action": "fix", "value": 12.5, "unit": "bar", "notes": "sensor recalibrated"})

    assert fix.action is ReviewAction.FIX
    assert fix.unit is Unit.BAR
    with pytest.raises(ValidationError):
        ReviewRequest.model_validate({"action": "delete"})
    with pytest.raises(ValidationError, match="finite"):
        ReviewRequest.model_validate({"action": "fix", "value": float("nan")})
    with pytest.raises(ValidationError):
        ReviewRequest.model_validate({"action": "approve", "review_status": "approved"})


def test_responses_serialise_to_the_contract() -> None:
    job_id = uuid4()
    accepted = JobAccepted(job_id=job_id, status_url=f"/api/v1/jobs/{job_id}")
    now = datetime(2026, 11, 22, 10, tzinfo=UTC)
    job = JobView(
        job_id=job_id,
        status=JobStatus.COMPLETED,
        source=JobSource.API,
        system_id=UUID(SYSTEM),
        created_by="press-gateway-17",
        total_readings=10,
        inserted_readings=8,
        quarantined_readings=2,
        duplicate_readings=1,
        success_rate=0.8,
        created_at=now,
        started_at=now,
        completed_at=now,
        processing_time_ms=12,
        error_message=None,
        reviewed_readings=1,
        replayed_readings=1,
    )
    item = QuarantineItem(
        id=1,
        job_id=job_id,
        position=3,
        system_id=None,
        sensor_id=None,
        timestamp=None,
        value=None,
        unit=None,
        quality=None,
        raw="not json",
        raw_bytes=None,
        raw_sha256=None,
        reason=QuarantineReason.PARSE_ERROR,
        reason_details={"field": None},
        review_status=ReviewStatus.PENDING,
        reviewed_by=None,
        reviewed_at=None,
        review_notes=None,
        review_correction=None,
        quarantined_at=now,
    )
    error = ErrorResponse(error=ErrorInfo(code="invalid_request", message="bad envelope"))

    assert accepted.model_dump(mode="json") == {
        "job_id": str(job_id),
        "status": "queued",
        "status_url": f"/api/v1/jobs/{job_id}",
    }
    assert job.model_dump(mode="json")["status"] == "completed"
    assert job.model_dump(mode="json")["created_by"] == "press-gateway-17"
    page = QuarantinePage(items=[item], next_cursor=None).model_dump(mode="json")
    assert (page["items"][0]["reason"], page["total"]) == ("parse_error", None)
    assert error.model_dump(mode="json") == {
        "error": {"code": "invalid_request", "message": "bad envelope", "details": []}
    }


# --- listing queries ----------------------------------------------------------------------------------------------


def query_errors(model: type[JobQuery | QuarantineQuery], query: dict[str, str]) -> list[tuple[str | None, str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(query)
    return [(detail.field, detail.reason) for detail in error_details(caught.value)]


def test_a_date_range_takes_rfc_3339_instants_with_an_offset_and_keeps_them_in_utc() -> None:
    query = JobQuery.model_validate(
        {"created_from": "2026-11-20T00:00:00+01:00", "created_to": "2026-11-20t23:00:00.123456789z"}
    )

    assert query.created_from == datetime(2026, 11, 19, 23, tzinfo=UTC)
    assert query.created_to == datetime(2026, 11, 20, 23, 0, 0, 123456, tzinfo=UTC)
    assert query.created_from is not None
    assert query.created_from.utcoffset() == timedelta(0)
    assert JobQuery.model_validate({"created_to": "2026-11-20T00:00:00Z"}).created_from is None


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20T08:00:00",  # no offset
        "2026-11-20",  # a date alone
        "1795680000",  # seconds since the epoch
        "2026-11-20 08:00:00Z",  # a space for the T
        "20261120T080000Z",  # ISO 8601's basic form
        "yesterday",
    ],
)
def test_an_instant_that_is_not_rfc_3339_with_an_offset_is_refused_naming_its_parameter(text: str) -> None:
    assert query_errors(JobQuery, {"created_from": text}) == [
        ("created_from", "Value error, expected an RFC 3339 date-time with an offset, like 2026-11-20T08:00:00Z")
    ]
    assert [field for field, _ in query_errors(JobQuery, {"created_to": text})] == ["created_to"]


def test_an_offset_whose_plus_became_a_space_in_the_url_is_refused_with_a_hint() -> None:
    assert query_errors(JobQuery, {"created_from": "2026-11-20T08:00:00 01:00"}) == [
        (
            "created_from",
            "Value error, expected an RFC 3339 date-time with an offset, like 2026-11-20T08:00:00Z"
            " (a + in a URL's query is a space: send it as %2B)",
        )
    ]


def test_an_instant_outside_the_years_datetime_holds_in_utc_is_refused() -> None:
    assert query_errors(JobQuery, {"created_from": "0001-01-01T00:00:00+01:00"}) == [
        ("created_from", "Value error, must fall within the years 1 to 9999 in UTC")
    ]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-11-20T08:00:00Z", "2026-11-20T08:00:00Z"),  # empty: the end is not included
        ("2026-11-20T09:00:00+01:00", "2026-11-20T08:00:00Z"),  # the same instant, written two ways
        ("2026-11-21T00:00:00Z", "2026-11-20T00:00:00Z"),
    ],
)
def test_a_range_must_end_after_it_starts(start: str, end: str) -> None:
    assert query_errors(JobQuery, {"created_from": start, "created_to": end}) == [
        ("created_to", "Value error, must be later than created_from (created_from is included, created_to is not)")
    ]


def test_a_sensor_filter_is_a_uuid_in_a_listing_and_in_a_bulk_reviews_filter() -> None:
    sensor = "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8"

    assert QuarantineQuery.model_validate({"sensor_id": sensor}).sensor_id == UUID(sensor)
    bulk = BulkReviewRequest.model_validate({"action": "reject", "filter": {"sensor_id": sensor}})
    assert bulk.filter is not None
    assert bulk.filter.sensor_id == UUID(sensor)
    assert [field for field, _ in query_errors(QuarantineQuery, {"sensor_id": "press-17-a"})] == ["sensor_id"]
    with pytest.raises(ValidationError) as caught:
        BulkReviewRequest.model_validate({"action": "reject", "filter": {"sensor_id": "17"}})
    assert [detail.field for detail in error_details(caught.value)] == ["filter.sensor_id"]


@pytest.mark.parametrize(("text", "asked"), [("true", True), ("false", False), ("True", True), ("FALSE", False)])
def test_include_total_is_true_or_false(text: str, asked: bool) -> None:
    assert QuarantineQuery.model_validate({"include_total": text}).include_total is asked
    assert QuarantineQuery.model_validate({}).include_total is False


@pytest.mark.parametrize("text", ["1", "0", "yes", "on", "", "truth"])
def test_include_total_refuses_what_a_boolean_is_not_written_as(text: str) -> None:
    assert query_errors(QuarantineQuery, {"include_total": text}) == [
        ("include_total", "Value error, expected true or false")
    ]


def test_a_page_total_is_a_count_or_null() -> None:
    assert QuarantinePage(items=[], next_cursor=None, total=1234).model_dump(mode="json")["total"] == 1234
    with pytest.raises(ValidationError):
        QuarantinePage(items=[], next_cursor=None, total=-1)


def test_instants_are_stored_as_text_that_sorts_as_time() -> None:
    whole = datetime(2026, 11, 20, 8, 0, 5, tzinfo=UTC)
    berlin = timezone(timedelta(hours=1))

    assert sortable_instant(whole) == "2026-11-20T08:00:05.000000Z"
    assert sortable_instant(whole.astimezone(berlin)) == "2026-11-20T08:00:05.000000Z"
    assert sortable_instant(datetime(999, 1, 1, tzinfo=UTC)) == "0999-01-01T00:00:00.000000Z"
    assert sortable_instant(whole) < sortable_instant(whole + timedelta(microseconds=1))
