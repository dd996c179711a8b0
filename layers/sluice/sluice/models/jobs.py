"""Ingest jobs: one per accepted batch or dropped file."""

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from sluice.models.types import JobId, Principal, SystemId, TenantId


class JobStatus(StrEnum):
    """Where a job is in its life."""

    # An upload's job, before its file has arrived (or before the worker saw it arrive).
    AWAITING_UPLOAD = "awaiting_upload"
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class JobSource(StrEnum):
    """How a batch arrived."""

    API = "api"
    DROP = "drop"
    # A file POSTed straight to S3 with a form ``POST /api/v1/uploads`` signed.
    UPLOAD = "upload"


class Job(BaseModel):
    """The job record kept in the jobs table. Counts stay empty until the worker has summed its ledger."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: JobId
    tenant_id: TenantId
    status: JobStatus
    source: JobSource
    # A drop names its systems per reading, so a drop job has none of its own.
    system_id: SystemId | None = None
    created_by: Principal | None = None
    total_readings: int | None = Field(default=None, ge=0)
    bucket: str
    object_key: str
    created_at: datetime
    # When DynamoDB's TTL removes the record (epoch seconds).
    expires_at: int
    started_at: datetime | None = None
    # The last time a worker started the job (a retry, a redrive) or the maintenance sweeper requeued it; with
    # started_at and the ledger's last commit it tells the sweeper when the job last moved.
    attempted_at: datetime | None = None
    completed_at: datetime | None = None
    inserted_readings: int | None = Field(default=None, ge=0)
    quarantined_readings: int | None = Field(default=None, ge=0)
    duplicate_readings: int | None = Field(default=None, ge=0)
    processing_time_ms: int | None = Field(default=None, ge=0)
    success_rate: float | None = Field(default=None, ge=0, le=1)
    error_message: str | None = None
    # An upload's: the client's file name (never part of the key), the size it declared (the form's bound), and
    # when its form expires.
    filename: str | None = None
    size: int | None = Field(default=None, ge=1)
    upload_expires_at: datetime | None = None
    # An upload's: the version of its key the worker started (the version id, or the ETag where the event has
    # none). A form can be POSTed twice before it expires; every other version is ignored.
    object_version: str | None = None
    # Kept by QuarantineFunction from the review counts it commits with each review (absent until a review).
    reviewed_readings: int | None = Field(default=None, ge=0)
    replayed_readings: int | None = Field(default=None, ge=0)

    @field_serializer("created_at", when_used="json")
    def _sortable_created_at(self, value: datetime) -> str:
        return sortable_instant(value)


def sortable_instant(moment: datetime) -> str:
    """``moment`` as the jobs table stores ``created_at``, the sort key of its indexes, which DynamoDB compares as
    text: UTC, a four-digit year and always six fraction digits, or a job created on a whole second ("...:05Z")
    would sort after the rest of that second ("...:05.2Z", since "." < "Z"). A bound compared with it must be
    written the same way. Raises OverflowError for an instant whose UTC date is outside years 1..9999."""
    return f"{moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec='microseconds')}Z"
