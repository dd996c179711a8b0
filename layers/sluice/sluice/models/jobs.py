"""Ingest jobs: one per accepted batch or dropped file."""

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class JobSource(StrEnum):
    """How a batch arrived."""

    API = "api"
    DROP = "drop"
