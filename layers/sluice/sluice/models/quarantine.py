"""Quarantine review vocabulary, and a quarantined reading as the review sees it."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sluice.models.readings import QuarantineReason


class ReviewStatus(StrEnum):
    """Where a quarantined reading is in review."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    FIXED = "fixed"


class ReviewAction(StrEnum):
    """What a reviewer can do with a pending row."""

    APPROVE = "approve"
    REJECT = "reject"
    FIX = "fix"


# The status a row takes when an action succeeds.
STATUS_AFTER: dict[ReviewAction, ReviewStatus] = {
    ReviewAction.APPROVE: ReviewStatus.APPROVED,
    ReviewAction.REJECT: ReviewStatus.REJECTED,
    ReviewAction.FIX: ReviewStatus.FIXED,
}


@dataclass(frozen=True, slots=True)
class QuarantinedReading:
    """One row of ``quarantined_readings``: the reading's fields as far as they could be read, why it was refused,
    and its review."""

    id: int
    tenant_id: str
    job_id: UUID
    position: int | None
    system_id: UUID | None
    sensor_id: UUID | None
    time: datetime | None
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
    review_correction: dict[str, Any] | None
    quarantined_at: datetime
    # Set when ``raw`` holds only the start of what arrived: the whole's size in UTF-8 bytes and its SHA-256 (hex).
    raw_bytes: int | None = None
    raw_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class JobReviewCounts:
    """How many of a job's quarantined readings were reviewed, and how many of those reached ``readings``."""

    job_id: UUID
    reviewed: int
    replayed: int
