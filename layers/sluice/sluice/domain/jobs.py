"""Reading jobs back: one job, or a tenant's jobs newest first. A job of another tenant does not exist (404), so
a caller cannot even learn that an id is taken."""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from pydantic import ValidationError

from sluice.domain.pages import bad_cursor, decode_cursor, encode_cursor, fill_page
from sluice.errors import NotFoundError
from sluice.models.api import JobPage, JobQuery, JobView
from sluice.models.jobs import Job, JobSource, JobStatus

JOBS_CURSOR = "jobs"


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What a listing keeps (None: anything)."""

    status: JobStatus | None = None
    source: JobSource | None = None
    system_id: UUID | None = None
    # Epoch seconds: only jobs whose ``expires_at`` is later. DynamoDB deletes expired items days after their
    # time, not at it; until then they must not be shown.
    alive_at: int | None = None
    # Only jobs created at or after ``created_from`` and before ``created_to``. Unlike the filters above, these
    # bound the index's sort key, so jobs outside them are never read.
    created_from: datetime | None = None
    created_to: datetime | None = None

    @property
    def keeps_everything(self) -> bool:
        """True when nothing read is filtered out (the created range is not read at all)."""
        return self.status is None and self.source is None and self.system_id is None and self.alive_at is None


@dataclass(frozen=True, slots=True)
class JobPosition:
    """A place in a tenant's newest-first listing: the last job a page showed."""

    created_at: str
    job_id: UUID


@dataclass(frozen=True, slots=True)
class JobListing:
    """Jobs in listing order, and where the next page starts (None: nothing after them)."""

    jobs: list[Job]
    next_position: JobPosition | None


class JobReader(Protocol):
    """Where job records are read."""

    def get_job(self, job_id: UUID) -> Job | None:
        """One job, or None."""
        ...

    def list_jobs(self, tenant_id: str, keep: JobFilter, limit: int, after: JobPosition | None) -> JobListing:
        """A tenant's jobs newest first, at most ``limit`` of them, after ``after``."""
        ...


def find_job(jobs: JobReader, tenant_id: str, job_id: str, now: datetime) -> JobView:
    """The caller's job ``job_id``; 404 when it is not a job of the caller's tenant (or not a job id at all), or
    has expired (its item may linger until DynamoDB's TTL deletes it)."""
    try:
        parsed = UUID(job_id)
    except ValueError:
        parsed = None
    job = None if parsed is None else jobs.get_job(parsed)
    if job is None or job.tenant_id != tenant_id or job.expires_at <= now.timestamp():
        raise NotFoundError(f"no job {job_id} in this tenant")
    return job_view(job)


def list_jobs(jobs: JobReader, tenant_id: str, query: JobQuery, now: datetime) -> JobPage:
    """One page of the tenant's unexpired jobs, newest first, within the page's rows and bytes."""
    after = None if query.cursor is None else job_position(decode_cursor(JOBS_CURSOR, query.cursor))
    keep = JobFilter(
        status=query.status,
        source=query.source,
        system_id=query.system_id,
        alive_at=int(now.timestamp()),
        created_from=query.created_from,
        created_to=query.created_to,
    )
    listing = jobs.list_jobs(tenant_id, keep, query.limit, after)
    shown, cut = fill_page((job_view(job) for job in listing.jobs), query.limit)
    following = listed_at(listing.jobs[len(shown) - 1]) if cut else listing.next_position
    return JobPage(
        items=shown,
        next_cursor=None
        if following is None
        else encode_cursor(JOBS_CURSOR, {"created_at": following.created_at, "job_id": str(following.job_id)}),
    )


def listed_at(job: Job) -> JobPosition:
    """The listing position of ``job``: its ``created_at`` as the index stores it."""
    stored = job.model_dump(mode="json", include={"created_at"})
    return JobPosition(created_at=str(stored["created_at"]), job_id=job.job_id)


def job_position(position: dict[str, object]) -> JobPosition:
    """The listing position a decoded cursor names."""
    try:
        created_at = str(position["created_at"])
        datetime.fromisoformat(created_at)
        return JobPosition(created_at=created_at, job_id=UUID(str(position["job_id"])))
    except (KeyError, ValueError, ValidationError):
        raise bad_cursor() from None


def job_view(job: Job) -> JobView:
    """A job as the API shows it: counts are 0 until the worker has them (a queued job has read nothing yet)."""
    return JobView(
        job_id=job.job_id,
        status=job.status,
        source=job.source,
        system_id=job.system_id,
        created_by=job.created_by,
        total_readings=job.total_readings or 0,
        inserted_readings=job.inserted_readings or 0,
        quarantined_readings=job.quarantined_readings or 0,
        duplicate_readings=job.duplicate_readings or 0,
        success_rate=job.success_rate,
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        processing_time_ms=job.processing_time_ms,
        error_message=job.error_message,
        reviewed_readings=job.reviewed_readings or 0,
        replayed_readings=job.replayed_readings or 0,
        filename=job.filename,
        size=job.size,
        upload_expires_at=job.upload_expires_at,
    )
