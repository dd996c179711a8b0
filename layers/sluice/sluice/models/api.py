"""Request and response shapes of the HTTP API, kept apart from the domain's plain tuples."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError

from sluice.domain.rules import MAX_READINGS_PER_BATCH, MIN_READINGS_PER_BATCH
from sluice.models.jobs import JobSource, JobStatus
from sluice.models.quarantine import ReviewAction, ReviewStatus
from sluice.models.readings import QuarantineReason, Unit
from sluice.models.types import JobId, Quality, SensorId, SystemId, UtcTimestamp


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


class JobAccepted(ApiModel):
    """202 answer to an accepted batch."""

    job_id: JobId
    status: Literal[JobStatus.QUEUED] = JobStatus.QUEUED
    status_url: str


class JobView(ApiModel):
    """A job as ``GET /api/v1/jobs/{job_id}`` shows it."""

    job_id: JobId
    status: JobStatus
    source: JobSource
    system_id: SystemId | None
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
    reason: QuarantineReason
    reason_details: dict[str, Any]
    review_status: ReviewStatus
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_notes: str | None
    quarantined_at: datetime


class QuarantinePage(ApiModel):
    """One page of quarantine rows; ``next_cursor`` is absent on the last page."""

    items: list[QuarantineItem]
    next_cursor: str | None


class ReviewRequest(ApiModel):
    """A reviewer's decision on one quarantined reading; ``fix`` may correct value, unit or timestamp."""

    action: ReviewAction
    value: FiniteFloat | None = None
    unit: Unit | None = None
    timestamp: UtcTimestamp | None = None
    notes: str | None = Field(default=None, max_length=2000)


class ErrorDetail(ApiModel):
    """One problem with a request: where (field path, list index) and what."""

    field: str | None
    index: int | None = None
    reason: str


class ErrorInfo(ApiModel):
    """The ``error`` member of every error response."""

    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(ApiModel):
    """Every 4xx/5xx body: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorInfo


def error_details(exc: ValidationError) -> list[ErrorDetail]:
    """Turn pydantic's errors into details that name the field and, inside a list, the index."""
    details = []
    for error in exc.errors(include_url=False, include_input=False):
        location = error["loc"]
        index = next((part for part in reversed(location) if isinstance(part, int)), None)
        path = ".".join(str(part) for part in location if not isinstance(part, int)) or None
        details.append(ErrorDetail(field=path, index=index, reason=error["msg"]))
    return details
