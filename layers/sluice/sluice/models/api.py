"""Request and response shapes of the HTTP API, kept apart from the domain's plain tuples."""

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sluice.errors import Problem
from sluice.limits import (
    DETAIL_FIELD_MAX,
    DETAIL_REASON_MAX,
    MAX_ERROR_DETAILS,
    MAX_READINGS_PER_BATCH,
    MIN_READINGS_PER_BATCH,
)
from sluice.models.jobs import JobSource, JobStatus
from sluice.models.quarantine import ReviewAction, ReviewStatus
from sluice.models.readings import QuarantineReason, Unit
from sluice.models.types import (
    SILENT_AFTER_DEFAULT_SECONDS,
    JobId,
    Quality,
    SensorId,
    SilentAfterSeconds,
    SystemId,
    SystemName,
    UtcTimestamp,
)

JOB_PAGE_DEFAULT = 25
JOB_PAGE_MAX = 100
QUARANTINE_PAGE_DEFAULT = 100
QUARANTINE_PAGE_MAX = 500
BULK_REVIEW_MAX = 500
# Each system on a page costs three index lookups (its latest reading, its readings of 24 hours, its pending rows).
SYSTEM_PAGE_DEFAULT = 50
SYSTEM_PAGE_MAX = 100
REVIEW_NOTES_MAX = 2000


def _shortened(limit: int) -> AfterValidator:
    def shorten(text: str) -> str:
        if len(text) > limit:
            text = f"{text[: limit - 3]}..."
        # A lone surrogate (from a JSON "\ud800" escape) cannot be written as UTF-8: show it escaped instead.
        return text.encode("utf-8", "backslashreplace").decode("utf-8")

    return AfterValidator(shorten)


# An instant in a query string: RFC 3339 text with an offset, and nothing else pydantic would take for a datetime
# (a number of seconds, a date alone, a space for the "T").
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
# A "+01:00" offset put in a URL unencoded arrives as " 01:00": a query string's "+" is a space.
_PLUS_AS_SPACE = re.compile(r"\S+ \d{2}:\d{2}")


def _rfc3339_text(value: object) -> object:
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        hint = " (a + in a URL's query is a space: send it as %2B)" if _PLUS_AS_SPACE.fullmatch(value) else ""
        raise ValueError(f"expected an RFC 3339 date-time with an offset, like 2026-11-20T08:00:00Z{hint}")
    return value


def _in_utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("must fall within the years 1 to 9999 in UTC") from None


def _true_or_false(value: object) -> object:
    # A flag is "true" or "false", in any case (Python's requests writes True as "True"); pydantic would also take
    # "1", "on" or "yes", which the spec's boolean does not, so a client meaning something else hears about it.
    if isinstance(value, str) and value.lower() not in {"true", "false"}:
        raise ValueError("expected true or false")
    return value.lower() if isinstance(value, str) else value


QueryInstant = Annotated[UtcTimestamp, BeforeValidator(_rfc3339_text), AfterValidator(_in_utc)]
QueryFlag = Annotated[bool, BeforeValidator(_true_or_false)]


class ApiModel(BaseModel):
    """Base of every API shape: unknown fields are refused, so a body can never set tenant, job or status."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadingIn(ApiModel):
    """One reading as a device sends it. Documents the contract; the worker judges readings without it."""

    sensor_id: SensorId
    timestamp: UtcTimestamp
    value: FiniteFloat
    unit: Unit
    quality: Quality


class IngestRequest(ApiModel):
    """The batch envelope. Readings are checked one by one by the worker, so one bad reading never costs the
    device its batch: here they are only counted."""

    system_id: SystemId
    readings: list[Any] = Field(min_length=MIN_READINGS_PER_BATCH, max_length=MAX_READINGS_PER_BATCH)


class ErrorDetail(ApiModel):
    """One problem with a request, as the API shows it (a ``sluice.errors.Problem``, its text shortened)."""

    field: Annotated[str, _shortened(DETAIL_FIELD_MAX)] | None
    index: int | None = None
    reason: Annotated[str, _shortened(DETAIL_REASON_MAX)]


def shown_details(problems: Iterable[Problem]) -> list[ErrorDetail]:
    """Problems as the API shows them."""
    return [ErrorDetail(field=problem.field, index=problem.index, reason=problem.reason) for problem in problems]


class ErrorInfo(ApiModel):
    """The ``error`` member of every error response."""

    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(ApiModel):
    """Every 4xx/5xx body: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorInfo


class JobAccepted(ApiModel):
    """202 answer to an accepted batch."""

    job_id: JobId
    status: Literal[JobStatus.QUEUED] = JobStatus.QUEUED
    status_url: str


FILENAME_MAX = 255


class UploadRequest(ApiModel):
    """The body of ``POST /api/v1/uploads``: the file to come, as its client names it and measures it."""

    # Recorded on the job and shown back; its extension picks the format. Never part of the key.
    filename: str = Field(min_length=1, max_length=FILENAME_MAX)
    # Bytes as they will be sent (compressed, for a gzip file): the form refuses a larger body.
    size: int = Field(ge=1)
    content_encoding: Literal["gzip"] | None = None


class UploadForm(ApiModel):
    """Where and how to POST the file: a ``multipart/form-data`` request to ``url`` carrying every one of
    ``fields`` (in any order), then the file itself as the last part, named ``file``."""

    url: str
    fields: dict[str, str]


class UploadCreated(ApiModel):
    """201 answer to ``POST /api/v1/uploads``: the job the file will be loaded in, and the signed form."""

    job_id: JobId
    status: Literal[JobStatus.AWAITING_UPLOAD] = JobStatus.AWAITING_UPLOAD
    upload: UploadForm
    expires_at: datetime
    status_url: str


class JobView(ApiModel):
    """A job as ``GET /api/v1/jobs/{job_id}`` shows it."""

    job_id: JobId
    status: JobStatus
    source: JobSource
    system_id: SystemId | None
    # Who sent the batch or asked for the upload: the token's ``sub``. A drop has no sender Sluice knows (null).
    created_by: str | None
    total_readings: int = Field(ge=0)
    inserted_readings: int = Field(ge=0)
    quarantined_readings: int = Field(ge=0)
    duplicate_readings: int = Field(ge=0)
    success_rate: float | None = Field(ge=0, le=1)
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    processing_time_ms: int | None = Field(ge=0)
    error_message: str | None
    # Review of the job's quarantined readings: how many were decided, and how many of those reached readings.
    reviewed_readings: int = Field(ge=0)
    replayed_readings: int = Field(ge=0)
    # An upload's (null for other jobs): the client's file name, the size it declared, and when its form expires.
    filename: str | None = None
    size: int | None = Field(default=None, ge=1)
    upload_expires_at: datetime | None = None


class JobQuery(ApiModel):
    """The query of ``GET /api/v1/jobs``; an unknown parameter is refused rather than silently ignored."""

    status: JobStatus | None = None
    source: JobSource | None = None
    system_id: SystemId | None = None
    # The jobs created from ``created_from`` (included) up to ``created_to`` (not included), so that consecutive
    # ranges never share a job.
    created_from: QueryInstant | None = None
    created_to: QueryInstant | None = None
    limit: int = Field(default=JOB_PAGE_DEFAULT, ge=1, le=JOB_PAGE_MAX)
    cursor: str | None = Field(default=None, max_length=512)

    @field_validator("created_to")
    @classmethod
    def _range_holds_an_instant(cls, created_to: datetime | None, info: ValidationInfo) -> datetime | None:
        created_from = info.data.get("created_from")
        if created_to is not None and created_from is not None and created_to <= created_from:
            raise ValueError("must be later than created_from (created_from is included, created_to is not)")
        return created_to


class JobPage(ApiModel):
    """One page of a tenant's jobs, newest first; ``next_cursor`` is null on the last page."""

    items: list[JobView]
    next_cursor: str | None


class QuarantineSelection(ApiModel):
    """Filters on a tenant's quarantined readings (all optional, combined with AND)."""

    job_id: JobId | None = None
    reason: QuarantineReason | None = None
    system_id: SystemId | None = None
    sensor_id: SensorId | None = None


class QuarantineQuery(QuarantineSelection):
    """The query of ``GET /api/v1/quarantine``."""

    review_status: ReviewStatus | None = None
    limit: int = Field(default=QUARANTINE_PAGE_DEFAULT, ge=1, le=QUARANTINE_PAGE_MAX)
    cursor: str | None = Field(default=None, max_length=512)
    # Count every row the filters match as well (one COUNT over them: asked for, not paid on every page).
    include_total: QueryFlag = False


class QuarantineItem(ApiModel):
    """A quarantined reading with the reason it was refused and its review state."""

    id: int
    job_id: JobId
    position: int | None
    system_id: SystemId | None
    sensor_id: SensorId | None
    timestamp: datetime | None
    value: float | None
    unit: str | None
    quality: int | None
    raw: Any
    # Set when the reading as it arrived was over 16 KiB: ``raw`` is then a string holding its start, and these are
    # the size in UTF-8 bytes and the SHA-256 (hex) of the whole. Null when ``raw`` is whole.
    raw_bytes: int | None
    raw_sha256: str | None
    reason: QuarantineReason
    reason_details: dict[str, Any]
    review_status: ReviewStatus
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_notes: str | None
    # What a fix changed (value, unit, timestamp); the fields above keep what arrived.
    review_correction: dict[str, Any] | None
    quarantined_at: datetime


class QuarantinePage(ApiModel):
    """One page of quarantine rows, newest first; ``next_cursor`` is null on the last page. ``total`` counts every
    row the filters match, whatever the cursor and limit, when ``include_total`` asked for it (else null)."""

    items: list[QuarantineItem]
    next_cursor: str | None
    total: int | None = Field(default=None, ge=0)


class Correction(ApiModel):
    """A reviewer's decision: ``approve`` and ``reject`` take the reading as it is, ``fix`` corrects at least one of
    value, unit or timestamp (the rest is kept)."""

    action: ReviewAction
    value: FiniteFloat | None = None
    unit: Unit | None = None
    timestamp: UtcTimestamp | None = None
    notes: str | None = Field(default=None, max_length=REVIEW_NOTES_MAX)

    @model_validator(mode="after")
    def _corrections_belong_to_fix(self) -> Self:
        corrected = self.value is not None or self.unit is not None or self.timestamp is not None
        if self.action is ReviewAction.FIX and not corrected:
            raise ValueError("fix needs at least one of value, unit or timestamp")
        if self.action is not ReviewAction.FIX and corrected:
            raise ValueError(f"{self.action} takes the reading as it is: send value, unit or timestamp with fix")
        return self


class ReviewRequest(Correction):
    """The body of ``POST /api/v1/quarantine/{id}/review``."""


class BulkReviewRequest(Correction):
    """The body of ``POST /api/v1/quarantine/review``: one decision for the rows named by ``ids``, or for the
    pending rows that ``filter`` selects (at most ``limit``, newest first, after ``cursor``)."""

    ids: list[int] | None = Field(default=None, min_length=1, max_length=BULK_REVIEW_MAX)
    filter: QuarantineSelection | None = None
    limit: int = Field(default=BULK_REVIEW_MAX, ge=1, le=BULK_REVIEW_MAX)
    cursor: str | None = Field(default=None, max_length=512)

    @model_validator(mode="after")
    def _ids_or_filter(self) -> Self:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("send either ids or filter")
        if self.ids is not None and len(set(self.ids)) != len(self.ids):
            raise ValueError("ids must not repeat")
        if self.ids is not None and self.cursor is not None:
            raise ValueError("cursor goes with filter, not with ids")
        return self


class ReviewOutcome(ApiModel):
    """What happened to one row of a bulk review: its new review status, or the error a review of that row alone
    would have answered (``not_found``, ``not_pending``, ``duplicate_reading``, ``reading_invalid``), or
    ``storage_unavailable`` when the database failed before its turn."""

    id: int
    review_status: ReviewStatus | None
    error: ErrorInfo | None


class BulkReviewResult(ApiModel):
    """Every row's outcome, in the order reviewed; with a filter, ``next_cursor`` continues after the last row."""

    results: list[ReviewOutcome]
    reviewed: int
    failed: int
    next_cursor: str | None


class SystemQuery(ApiModel):
    """The query of ``GET /api/v1/systems``."""

    limit: int = Field(default=SYSTEM_PAGE_DEFAULT, ge=1, le=SYSTEM_PAGE_MAX)
    cursor: str | None = Field(default=None, max_length=512)


class SystemCreate(ApiModel):
    """The body of ``POST /api/v1/systems``: a name, the id the tenant's devices already send (else Sluice chooses
    one), and how long its sensors may go without a reading before they count as silent."""

    name: SystemName
    id: SystemId | None = None
    silent_after_seconds: SilentAfterSeconds = SILENT_AFTER_DEFAULT_SECONDS


class SystemUpdate(ApiModel):
    """The body of ``PATCH /api/v1/systems/{system_id}``: a new name, a new silence setting, or both."""

    name: SystemName | None = None
    silent_after_seconds: SilentAfterSeconds | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if self.name is None and self.silent_after_seconds is None:
            raise ValueError("send name, silent_after_seconds or both")
        return self


class SystemView(ApiModel):
    """A registered system and what has lately reached Sluice for it."""

    id: SystemId
    name: str
    created_at: datetime
    # A sensor of the system that has sent nothing for this long counts as silent.
    silent_after_seconds: SilentAfterSeconds
    # The newest reading stored for the system (by the reading's own timestamp); null when none is.
    last_reading_at: datetime | None
    # Readings stored for the system whose timestamps fall in the 24 hours before the answer.
    readings_24h: int = Field(ge=0)
    # The tenant's quarantined readings naming the system that wait for review.
    pending_quarantine: int = Field(ge=0)


class SystemPage(ApiModel):
    """One page of a tenant's systems, by name; ``next_cursor`` is null on the last page."""

    items: list[SystemView]
    next_cursor: str | None


class Health(ApiModel):
    """``GET /health``: the function answers, and which version it runs."""

    status: Literal["ok"] = "ok"
    version: str


class HealthCheck(ApiModel):
    """One dependency of the deep check."""

    ok: bool
    latency_ms: float = Field(ge=0)
    detail: str


class DeepHealth(ApiModel):
    """``GET /health/deep``: every dependency reached; ``degraded`` (and 503) when any is not."""

    status: Literal["ok", "degraded"]
    version: str
    checks: dict[str, HealthCheck]


def error_details(exc: ValidationError) -> list[Problem]:
    """Turn pydantic's errors into details that name the field and, inside a list, the index (the first
    ``MAX_ERROR_DETAILS`` of them, then how many more there were)."""
    details = []
    errors = exc.errors(include_url=False, include_input=False)
    for error in errors[:MAX_ERROR_DETAILS]:
        location = error["loc"]
        index = next((part for part in reversed(location) if isinstance(part, int)), None)
        path = ".".join(str(part) for part in location if not isinstance(part, int)) or None
        details.append(Problem(field=path, index=index, reason=error["msg"]))
    return details + more_details(len(errors))


def more_details(total: int) -> list[Problem]:
    """The detail that stands for those past the first ``MAX_ERROR_DETAILS`` of ``total``, if there are any."""
    hidden = total - MAX_ERROR_DETAILS
    return [Problem(field=None, reason=f"and {hidden} more like these")] if hidden > 0 else []
