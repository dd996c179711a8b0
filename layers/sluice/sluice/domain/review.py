"""Reviewing quarantined readings: reject one, or approve or fix it back into ``readings``.

A review is decided by the same rules the worker applies, as of the moment of the review: an approved reading
that still breaks a rule stays pending (422), and a fix corrects the reading before it is judged. The decision is
taken inside the store's transaction, on the row as locked there, so two reviewers of one row cannot both win:
the second finds it no longer pending (409).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from sluice.domain.pages import bad_cursor, decode_cursor, encode_cursor, fill_page
from sluice.domain.rules import DEFAULT_RULES, ReadingRules
from sluice.domain.validation import ReadingValidator
from sluice.errors import (
    InvalidRequestError,
    NotFoundError,
    NotPendingError,
    Problem,
    ReadingInvalidError,
    RequestError,
    StorageUnavailableError,
)
from sluice.models.api import (
    BulkReviewRequest,
    BulkReviewResult,
    Correction,
    ErrorInfo,
    QuarantineItem,
    QuarantinePage,
    QuarantineQuery,
    QuarantineSelection,
    ReviewOutcome,
    shown_details,
)
from sluice.models.quarantine import (
    STATUS_AFTER,
    JobReviewCounts,
    QuarantinedReading,
    ReviewAction,
    ReviewStatus,
)
from sluice.models.readings import QuarantineReason, Rejection, ValidReading

QUARANTINE_CURSOR = "quarantine"
BULK_CURSOR = "bulk-review"


@dataclass(frozen=True, slots=True)
class Reviewer:
    """Who reviews, for which tenant, and when."""

    tenant_id: str
    principal: str
    now: datetime


@dataclass(frozen=True, slots=True)
class ReviewDecision:
    """What a review does to its row: the new status, the correction a fix made, and the reading to insert
    (None for a rejection)."""

    status: ReviewStatus
    reading: ValidReading | None
    correction: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Reviewed:
    """A committed review: the row as it now is, and its job's review counts after it."""

    row: QuarantinedReading
    counts: JobReviewCounts


# Called by the store inside its transaction, with the locked row and whether its system is the tenant's.
Decide = Callable[[QuarantinedReading, bool], ReviewDecision]


class QuarantineStore(Protocol):
    """Where quarantined readings are kept, listed and reviewed."""

    def list_rows(
        self, tenant_id: str, selection: QuarantineQuery, limit: int, before_id: int | None
    ) -> list[QuarantinedReading]:
        """The tenant's rows matching ``selection``, newest (highest id) first, with ids below ``before_id``."""
        ...

    def count_rows(self, tenant_id: str, selection: QuarantineQuery) -> int:
        """How many of the tenant's rows match ``selection`` (its filters; not its cursor or limit)."""
        ...

    def get_row(self, tenant_id: str, row_id: int) -> QuarantinedReading | None:
        """One row of the tenant, or None."""
        ...

    def review_row(self, tenant_id: str, row_id: int, reviewer: str, notes: str | None, decide: Decide) -> Reviewed:
        """Lock the row, decide, insert the reading (if any), record the review and count it: one transaction.
        Raises what ``decide`` raises (nothing is changed then), NotFoundError and DuplicateReadingError."""
        ...


class JobReviewSink(Protocol):
    """Where a job's review counts are shown (its record in the jobs table)."""

    def record_reviews(self, counts: JobReviewCounts) -> bool:
        """Show the counts on the job; False when there is no job record to show them on, or it shows later ones."""
        ...


def show_on_jobs(jobs: JobReviewSink, counts: list[JobReviewCounts]) -> list[UUID]:
    """Copy committed review counts onto the job records; return the jobs whose copy failed. The review stands
    whatever happens here, and the job's next review copies the (larger) counts again."""
    failed: list[UUID] = []
    for job_counts in counts:
        try:
            jobs.record_reviews(job_counts)
        except StorageUnavailableError:
            failed.append(job_counts.job_id)
    return failed


def list_quarantine(store: QuarantineStore, tenant_id: str, query: QuarantineQuery) -> QuarantinePage:
    """One page of the tenant's quarantined readings, newest first, within the page's rows and bytes; with
    ``include_total``, and how many rows the filters match in all."""
    before_id = None if query.cursor is None else _row_id(decode_cursor(QUARANTINE_CURSOR, query.cursor))
    rows = store.list_rows(tenant_id, query, query.limit + 1, before_id)
    shown, following = fill_page((quarantine_item(row) for row in rows), query.limit)
    return QuarantinePage(
        items=shown,
        next_cursor=encode_cursor(QUARANTINE_CURSOR, {"before_id": shown[-1].id}) if following else None,
        total=store.count_rows(tenant_id, query) if query.include_total else None,
    )


def find_quarantined(store: QuarantineStore, tenant_id: str, row_id: str) -> QuarantineItem:
    """One quarantined reading of the caller's tenant; 404 otherwise."""
    row = None if not _is_row_id(row_id) else store.get_row(tenant_id, int(row_id))
    if row is None:
        raise NotFoundError(f"no quarantined reading {row_id} in this tenant")
    return quarantine_item(row)


def check_notes(notes: str | None) -> None:
    """Refuse notes the review record cannot keep: JSON carries a NUL character (U+0000), PostgreSQL's text does
    not. Checked with the body, before any row is touched (400)."""
    if notes is not None and "\x00" in notes:
        raise InvalidRequestError(
            "the request body is not valid",
            [Problem(field="notes", reason="must not contain NUL (U+0000) characters")],
        )


def review_quarantined(
    store: QuarantineStore,
    reviewer: Reviewer,
    row_id: str,
    correction: Correction,
    rules: ReadingRules = DEFAULT_RULES,
) -> Reviewed:
    """Review one row (``POST /api/v1/quarantine/{id}/review``)."""
    if not _is_row_id(row_id):
        raise NotFoundError(f"no quarantined reading {row_id} in this tenant")
    validator = ReadingValidator(reviewer.now, rules)

    def decide(row: QuarantinedReading, system_known: bool) -> ReviewDecision:
        return decide_review(row, correction, system_known, validator)

    return store.review_row(reviewer.tenant_id, int(row_id), reviewer.principal, correction.notes, decide)


def review_many(
    store: QuarantineStore,
    reviewer: Reviewer,
    request: BulkReviewRequest,
    rules: ReadingRules = DEFAULT_RULES,
) -> tuple[BulkReviewResult, list[JobReviewCounts]]:
    """Review many rows, each in its own transaction so one refusal does not undo the others. Returns every row's
    outcome and the latest review counts of each job touched."""
    row_ids, next_cursor = _bulk_targets(store, reviewer.tenant_id, request)
    results: list[ReviewOutcome] = []
    counts: dict[UUID, JobReviewCounts] = {}
    for done, row_id in enumerate(row_ids):
        try:
            reviewed = review_quarantined(store, reviewer, str(row_id), request, rules)
        except RequestError as exc:
            results.append(_failed(row_id, exc))
            continue
        except StorageUnavailableError:
            # The rows before this one are reviewed and stay so: say which were not, rather than answer 503 as if
            # nothing had happened. A filter's cursor resumes at this row.
            results += [_unavailable(left) for left in row_ids[done:]]
            if request.filter is not None:
                next_cursor = encode_cursor(BULK_CURSOR, {"before_id": row_id + 1})
            break
        counts[reviewed.counts.job_id] = _later(counts.get(reviewed.counts.job_id), reviewed.counts)
        results.append(ReviewOutcome(id=row_id, review_status=reviewed.row.review_status, error=None))
    failed = sum(1 for result in results if result.error is not None)
    result = BulkReviewResult(results=results, reviewed=len(results) - failed, failed=failed, next_cursor=next_cursor)
    return result, list(counts.values())


def decide_review(
    row: QuarantinedReading, correction: Correction, system_known: bool, validator: ReadingValidator
) -> ReviewDecision:
    """The decision on one locked row; raises NotPendingError or ReadingInvalidError, which leave it unchanged."""
    if row.review_status is not ReviewStatus.PENDING:
        raise NotPendingError(
            f"quarantined reading {row.id} was already reviewed",
            [
                Problem(
                    field="review_status",
                    reason=f"{row.review_status} by {row.reviewed_by} at {_iso(row.reviewed_at)}",
                )
            ],
        )
    status = STATUS_AFTER[correction.action]
    if correction.action is ReviewAction.REJECT:
        return ReviewDecision(status=status, reading=None, correction=None)
    changes = corrections(correction)
    verdict = validator.judge(reading_fields(row) | changes)
    if type(verdict) is Rejection:
        raise _still_invalid(verdict)
    if not system_known:
        raise _still_invalid(
            Rejection(
                QuarantineReason.SYSTEM_NOT_FOUND,
                "system_id",
                "a system of this tenant",
                str(row.system_id) if row.system_id is not None else "none",
            )
        )
    return ReviewDecision(status=status, reading=verdict, correction=changes or None)  # type: ignore[arg-type]


def reading_fields(row: QuarantinedReading) -> dict[str, object]:
    """The row's reading in the shape the rules judge (a field that could not be read stays absent)."""
    fields: dict[str, object] = {
        "sensor_id": None if row.sensor_id is None else str(row.sensor_id),
        "timestamp": None if row.time is None else row.time.isoformat(),
        "value": row.value,
        "unit": row.unit,
        "quality": row.quality,
    }
    return {name: value for name, value in fields.items() if value is not None}


def corrections(correction: Correction) -> dict[str, object]:
    """A fix's corrections, as reading fields."""
    changes: dict[str, object] = {}
    if correction.value is not None:
        changes["value"] = correction.value
    if correction.unit is not None:
        changes["unit"] = str(correction.unit)
    if correction.timestamp is not None:
        changes["timestamp"] = correction.timestamp.isoformat()
    return changes


def quarantine_item(row: QuarantinedReading) -> QuarantineItem:
    """A row as the API shows it."""
    return QuarantineItem(
        id=row.id,
        job_id=row.job_id,
        position=row.position,
        system_id=row.system_id,
        sensor_id=row.sensor_id,
        timestamp=row.time,
        value=row.value,
        unit=row.unit,
        quality=row.quality,
        raw=row.raw,
        raw_bytes=row.raw_bytes,
        raw_sha256=row.raw_sha256,
        reason=row.reason,
        reason_details=row.reason_details,
        review_status=row.review_status,
        reviewed_by=row.reviewed_by,
        reviewed_at=row.reviewed_at,
        review_notes=row.review_notes,
        review_correction=row.review_correction,
        quarantined_at=row.quarantined_at,
    )


def _bulk_targets(store: QuarantineStore, tenant_id: str, request: BulkReviewRequest) -> tuple[list[int], str | None]:
    if request.ids is not None:
        return request.ids, None
    selection = request.filter or QuarantineSelection()
    before_id = None if request.cursor is None else _row_id(decode_cursor(BULK_CURSOR, request.cursor))
    query = QuarantineQuery(**selection.model_dump(), review_status=ReviewStatus.PENDING)
    rows = store.list_rows(tenant_id, query, request.limit + 1, before_id)
    chosen = [row.id for row in rows[: request.limit]]
    following = len(rows) > request.limit
    return chosen, encode_cursor(BULK_CURSOR, {"before_id": chosen[-1]}) if following else None


def _failed(row_id: int, exc: RequestError) -> ReviewOutcome:
    return ReviewOutcome(
        id=row_id,
        review_status=None,
        error=ErrorInfo(code=exc.code, message=exc.message, details=shown_details(exc.details)),
    )


def _unavailable(row_id: int) -> ReviewOutcome:
    return ReviewOutcome(
        id=row_id,
        review_status=None,
        error=ErrorInfo(
            code="storage_unavailable",
            message="the database could not be reached; this row was not reviewed, send it again",
        ),
    )


def _later(known: JobReviewCounts | None, counts: JobReviewCounts) -> JobReviewCounts:
    return counts if known is None or counts.reviewed >= known.reviewed else known


def _still_invalid(rejection: Rejection) -> ReadingInvalidError:
    return ReadingInvalidError(
        f"the reading still breaks a rule ({rejection.reason}); it stays pending",
        [Problem(field=rejection.field, reason=f"{rejection.reason}: {rejection.message}")],
    )


def _is_row_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < len(text) <= 18  # bigint ids: 18 digits always fit


def _row_id(position: dict[str, object]) -> int:
    value = position.get("before_id")
    if type(value) is not int or value <= 0:
        raise bad_cursor()
    return value


def _iso(moment: datetime | None) -> str:
    return "an unknown time" if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
