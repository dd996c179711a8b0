"""Which change of a job is announced to webhooks: its arrival at ``completed`` or ``failed``.

The job's record is its state (DynamoDB); its stream carries every change of the record, written with the change
itself, and delivers each at least once. A change is announced under the key ``job.<status>:<job id>``: written to
the outbox once per subscription however often the stream delivers it, so a client hears of a job's completion (or
failure) once. A job failed and later completed (a redriven batch) is announced both times.
"""

from datetime import datetime

from sluice.domain.jobs import job_view
from sluice.domain.webhooks import Announcement
from sluice.models.jobs import Job, JobStatus

ANNOUNCED = {JobStatus.COMPLETED: "job.completed", JobStatus.FAILED: "job.failed"}


def job_announcement(before: Job | None, after: Job, now: datetime) -> Announcement | None:
    """The announcement of one change of a job's record (``before`` None: the record was created), or None for a
    change that does not finish the job (a later count written to a finished job does not finish it again)."""
    event_type = ANNOUNCED.get(after.status)
    if event_type is None or (before is not None and before.status == after.status):
        return None
    data = job_view(after).model_dump(mode="json")
    at = after.completed_at or now
    return Announcement(after.tenant_id, event_type, f"{event_type}:{after.job_id}", at, data)
