"""The review domain without a database: the decision on a row, the cursors, and the listing of jobs, with
in-memory fakes for the stores."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from sluice.adapters.migrations import SCHEMA_VERSION, load_migrations
from sluice.domain.jobs import JobFilter, JobListing, JobPosition, find_job, list_jobs
from sluice.domain.pages import decode_cursor, encode_cursor
from sluice.domain.review import (
    Decide,
    ReviewDecision,
    Reviewed,
    Reviewer,
    check_notes,
    corrections,
    decide_review,
    list_quarantine,
    reading_fields,
    review_many,
)
from sluice.domain.validation import ReadingValidator
from sluice.errors import (
    InvalidRequestError,
    NotFoundError,
    NotPendingError,
    ReadingInvalidError,
    StorageUnavailableError,
)
from sluice.models.api import BulkReviewRequest, Correction, JobQuery, QuarantineQuery
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice.models.quarantine import JobReviewCounts, QuarantinedReading, ReviewAction, ReviewStatus
from sluice.models.readings import QuarantineReason, ValidReading

from ..paths import MIGRATIONS_DIR

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
SENSOR = UUID("6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8")
TIME = NOW - timedelta(hours=1)
ROW = QuarantinedReading(
    id=7,
    tenant_id="demo",
    job_id=uuid4(),
    position=1,
    system_id=uuid4(),
    sensor_id=SENSOR,
    time=TIME,
    value=950.0,
    unit="bar",
    quality=97,
    raw={},
    reason=QuarantineReason.OUT_OF_RANGE,
    reason_details={},
    review_status=ReviewStatus.PENDING,
    reviewed_by=None,
    reviewed_at=None,
    review_notes=None,
    review_correction=None,
    quarantined_at=NOW - timedelta(minutes=50),
)


def decide(row: QuarantinedReading, body: dict[str, object], *, system_known: bool = True) -> ReviewDecision:
    return decide_review(row, Correction.model_validate(body), system_known, ReadingValidator(NOW))


def test_a_fix_judges_the_corrected_reading_and_records_the_correction() -> None:
    decision = decide(ROW, {"action": "fix", "value": 95.0})

    assert decision.status is ReviewStatus.FIXED
    assert decision.reading == ValidReading(TIME, SENSOR, 95.0, "bar", 97)
    assert decision.correction == {"value": 95.0}


def test_a_rejection_needs_no_rule_and_replays_nothing() -> None:
    decision = decide(ROW, {"action": "reject"}, system_known=False)

    assert (decision.status, decision.reading) == (ReviewStatus.REJECTED, None)


def test_an_approval_is_judged_as_of_the_review() -> None:
    future = replace(ROW, value=100.0, time=NOW + timedelta(minutes=10))

    with pytest.raises(ReadingInvalidError) as caught:
        decide(future, {"action": "approve"})

    assert caught.value.details[0].field == "timestamp"
    assert caught.value.details[0].reason.startswith("invalid_timestamp: ")
    assert decide(replace(future, time=NOW - timedelta(minutes=1)), {"action": "approve"}).reading is not None


def test_the_system_is_checked_after_the_rules() -> None:
    with pytest.raises(ReadingInvalidError, match="system_not_found"):
        decide(replace(ROW, value=1.0), {"action": "approve"}, system_known=False)
    with pytest.raises(ReadingInvalidError, match="out_of_range"):
        decide(ROW, {"action": "approve"}, system_known=False)


def test_a_reviewed_row_is_not_decided_again() -> None:
    reviewed = replace(ROW, review_status=ReviewStatus.REJECTED, reviewed_by="ben", reviewed_at=NOW)

    with pytest.raises(NotPendingError) as caught:
        decide(reviewed, {"action": "approve"})

    assert caught.value.details[0].reason == "rejected by ben at 2026-11-22T12:00:00Z"


def test_missing_fields_stay_missing_so_the_rules_name_them() -> None:
    bare = replace(ROW, sensor_id=None, time=None, quality=None)

    assert reading_fields(bare) == {"value": 950.0, "unit": "bar"}
    with pytest.raises(ReadingInvalidError) as caught:
        decide(bare, {"action": "fix", "value": 1.0})
    assert caught.value.details[0].field == "sensor_id"


def test_corrections_are_reading_fields() -> None:
    correction = Correction(action=ReviewAction.FIX, unit="lpm", timestamp=NOW)

    assert corrections(correction) == {"unit": "lpm", "timestamp": "2026-11-22T12:00:00+00:00"}


@pytest.mark.parametrize(
    "body",
    [{"action": "fix"}, {"action": "approve", "value": 1.0}, {"action": "reject", "unit": "bar"}],
)
def test_corrections_belong_to_fix_alone(body: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="fix"):
        Correction.model_validate(body)


def test_a_cursor_round_trips_and_refuses_other_listings() -> None:
    cursor = encode_cursor("quarantine", {"before_id": 41})

    assert decode_cursor("quarantine", cursor) == {"before_id": 41}
    assert cursor.isascii()
    assert "=" not in cursor
    for bad in (cursor[:-2], "%%%", encode_cursor("jobs", {"before_id": 41}), "bnVsbA"):
        with pytest.raises(InvalidRequestError):
            decode_cursor("quarantine", bad)


class FakeJobs:
    """Jobs in memory, listed newest first like the index."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = {job.job_id: job for job in jobs}
        self.asked: list[tuple[str, JobFilter, int, JobPosition | None]] = []

    def get_job(self, job_id: UUID) -> Job | None:
        return self.jobs.get(job_id)

    def list_jobs(self, tenant_id: str, keep: JobFilter, limit: int, after: JobPosition | None) -> JobListing:
        self.asked.append((tenant_id, keep, limit, after))
        newest = sorted(self.jobs.values(), key=lambda job: job.created_at, reverse=True)[:limit]
        last = newest[-1]
        return JobListing(newest, JobPosition(created_at=last.created_at.isoformat(), job_id=last.job_id))


def job(tenant: str = "demo", **changes: object) -> Job:
    return Job(
        job_id=uuid4(),
        tenant_id=tenant,
        status=JobStatus.QUEUED,
        source=JobSource.DROP,
        bucket="b",
        object_key="drops/demo/a.csv",
        created_at=NOW,
        expires_at=int((NOW + timedelta(days=90)).timestamp()),
    ).model_copy(update=changes)


def test_a_job_is_found_only_in_its_tenant() -> None:
    mine, theirs = job(), job("other")
    store = FakeJobs([mine, theirs])

    assert find_job(store, "demo", str(mine.job_id), NOW).total_readings == 0
    for wanted in (str(theirs.job_id), "nope", str(uuid4())):
        with pytest.raises(NotFoundError):
            find_job(store, "demo", wanted, NOW)


def test_an_expired_job_is_not_found_while_its_item_lingers() -> None:
    # DynamoDB deletes an expired item days after its expires_at, not at it.
    lingering = job(expires_at=int(NOW.timestamp()))
    store = FakeJobs([lingering])

    with pytest.raises(NotFoundError):
        find_job(store, "demo", str(lingering.job_id), NOW)
    assert find_job(store, "demo", str(lingering.job_id), NOW - timedelta(seconds=1)).job_id == lingering.job_id


def test_a_listing_hands_its_position_back_as_a_cursor_and_takes_it_again() -> None:
    store = FakeJobs([job(created_at=NOW - timedelta(seconds=i)) for i in range(3)])

    page = list_jobs(store, "demo", JobQuery(limit=2, status=JobStatus.QUEUED), NOW)
    list_jobs(store, "demo", JobQuery(limit=2, cursor=page.next_cursor), NOW)

    assert page.next_cursor is not None
    assert store.asked[0][1] == JobFilter(status=JobStatus.QUEUED, alive_at=int(NOW.timestamp()))
    assert store.asked[1][3] == JobPosition(
        created_at=(NOW - timedelta(seconds=1)).isoformat(), job_id=page.items[1].job_id
    )


def test_a_listing_reads_its_date_range_through_the_store() -> None:
    store = FakeJobs([job()])
    start, end = NOW - timedelta(days=1), NOW

    list_jobs(store, "demo", JobQuery(created_from=start, created_to=end), NOW)

    assert store.asked[0][1] == JobFilter(alive_at=int(NOW.timestamp()), created_from=start, created_to=end)
    assert store.asked[0][1].keeps_everything is False  # alive_at; the range itself filters nothing after reading


def test_a_job_shows_its_creator_and_a_drop_none() -> None:
    sent = job(source=JobSource.API, created_by="press-gateway-17")
    dropped = job(source=JobSource.DROP)

    assert find_job(FakeJobs([sent]), "demo", str(sent.job_id), NOW).created_by == "press-gateway-17"
    assert find_job(FakeJobs([dropped]), "demo", str(dropped.job_id), NOW).created_by is None


def test_the_schema_version_the_code_needs_is_the_newest_migration() -> None:
    assert max(migration.version for migration in load_migrations(Path(MIGRATIONS_DIR))) == SCHEMA_VERSION


class FakeQuarantine:
    """Pending rows in memory; the database "goes away" before reviewing ``fail_at``."""

    def __init__(self, ids: list[int], fail_at: int | None = None) -> None:
        self.rows = {row_id: replace(ROW, id=row_id, value=1.0) for row_id in ids}
        self.fail_at = fail_at
        self.counted: list[QuarantineQuery] = []

    def list_rows(
        self, tenant_id: str, selection: QuarantineQuery, limit: int, before_id: int | None
    ) -> list[QuarantinedReading]:
        wanted = [
            row
            for row in self.rows.values()
            if row.review_status is ReviewStatus.PENDING and (before_id is None or row.id < before_id)
        ]
        return sorted(wanted, key=lambda row: row.id, reverse=True)[:limit]

    def count_rows(self, tenant_id: str, selection: QuarantineQuery) -> int:
        self.counted.append(selection)
        return len(self.list_rows(tenant_id, selection, len(self.rows), None))

    def get_row(self, tenant_id: str, row_id: int) -> QuarantinedReading | None:
        return self.rows.get(row_id)

    def review_row(self, tenant_id: str, row_id: int, reviewer: str, notes: str | None, decide: Decide) -> Reviewed:
        if row_id == self.fail_at:
            raise StorageUnavailableError("connection lost")
        decision = decide(self.rows[row_id], True)
        self.rows[row_id] = replace(self.rows[row_id], review_status=decision.status, reviewed_by=reviewer)
        return Reviewed(self.rows[row_id], JobReviewCounts(ROW.job_id, reviewed=row_id, replayed=0))


def test_a_total_is_counted_only_when_asked_for_and_whatever_the_cursor() -> None:
    store = FakeQuarantine([1, 2, 3, 4, 5])

    plain = list_quarantine(store, "demo", QuarantineQuery(limit=2))
    counted = list_quarantine(store, "demo", QuarantineQuery(limit=2, include_total=True))
    later = list_quarantine(store, "demo", QuarantineQuery(limit=2, include_total=True, cursor=counted.next_cursor))

    assert (plain.total, counted.total, later.total) == (None, 5, 5)
    assert [item.id for item in later.items] == [3, 2]
    assert len(store.counted) == 2


def test_a_bulk_review_cut_short_by_the_database_says_which_rows_were_not_reviewed() -> None:
    store = FakeQuarantine([1, 2, 3, 4], fail_at=2)
    reviewer = Reviewer(tenant_id="demo", principal="anna", now=NOW)
    request = BulkReviewRequest.model_validate({"action": "reject", "filter": {}})

    result, counts = review_many(store, reviewer, request)
    resumed, _ = review_many(store, reviewer, request.model_copy(update={"cursor": result.next_cursor}))

    assert [(r.id, r.review_status, r.error and r.error.code) for r in result.results] == [
        (4, ReviewStatus.REJECTED, None),
        (3, ReviewStatus.REJECTED, None),
        (2, None, "storage_unavailable"),
        (1, None, "storage_unavailable"),
    ]
    assert (result.reviewed, result.failed) == (2, 2)
    assert counts == [JobReviewCounts(ROW.job_id, reviewed=4, replayed=0)]  # the larger of the job's counts
    assert [r.id for r in resumed.results] == [2, 1]  # the cursor resumes at the row that was not reviewed


@pytest.mark.parametrize("notes", [None, "", "gauge reset at 08:00", "\u2028\uffff"])
def test_notes_postgresql_can_keep_pass(notes: str | None) -> None:
    check_notes(notes)


def test_notes_with_a_nul_character_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRequestError) as refused:
        check_notes("gauge\x00reset")

    assert [detail.field for detail in refused.value.details] == ["notes"]
