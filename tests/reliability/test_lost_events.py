"""A lost S3 event on the real local stack (twin + moto server + TimescaleDB): batches accepted and uploads POSTed
while S3 sends no notifications have their objects stored and their jobs queued (or awaiting their upload), and
nothing would ever load them. Maintenance finds them past their deadline (an upload once its form expired: it is
queued first), sends each S3 event once, and the oracle finds every reading exactly once.

S3 loses the events here because the bucket's notification configuration is emptied while the batches are posted
(the API still answers 202 and stores them), then put back. The jobs' ``created_at`` is then moved 20 minutes back,
past the sweeper's 15-minute deadline, as the issue found them, and MaintenanceFunction is invoked as its schedule
would.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest

from sluice.models.jobs import JobStatus

from ..stack_harness import RunningStack, running_stack
from .figures import record_figures
from .oracle import all_jobs, check, queue_depth
from .workload import Workload, wait_until

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import NotificationConfigurationTypeDef

pytestmark = pytest.mark.db

BATCHES = 6
UPLOADS = 2


@pytest.fixture
def stack(server_dsn: str) -> Iterator[RunningStack]:
    with running_stack(server_dsn, "sluice-lost-events", prefix="sluice_lost") as running:
        yield running


def run_maintenance(stack: RunningStack) -> dict[str, Any]:
    """One MaintenanceFunction invocation with the schedule's event; its result."""
    invoked = stack.invoke("MaintenanceFunction", "maintenance-schedule.json")
    assert invoked.returncode == 0, invoked.stdout + invoked.stderr
    result: dict[str, Any] = json.loads(invoked.stdout)
    return result


def age(stack: RunningStack, job_ids: set[str], by: timedelta) -> None:
    """Move the jobs' creation back by ``by``, as if they had waited that long."""
    created = (datetime.now(UTC) - by).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for job_id in job_ids:
        stack.dynamodb().update_item(
            TableName=stack.names().ref("JobsTable"),
            Key={"job_id": {"S": job_id}},
            UpdateExpression="SET created_at = :created",
            ExpressionAttributeValues={":created": {"S": created}},
        )


def expire_uploads(stack: RunningStack, job_ids: set[str], by: timedelta) -> None:
    """Move the uploads' forms' expiry back by ``by``, as if their clients had POSTed them that long ago."""
    expired = (datetime.now(UTC) - by).isoformat()
    for job_id in job_ids:
        stack.dynamodb().update_item(
            TableName=stack.names().ref("JobsTable"),
            Key={"job_id": {"S": job_id}},
            UpdateExpression="SET upload_expires_at = :expired",
            ExpressionAttributeValues={":expired": {"S": expired}},
        )


def test_batches_whose_s3_events_were_lost_are_requeued_by_the_sweeper_and_land_once(stack: RunningStack) -> None:
    # Given batches accepted while S3 delivers no events: stored, queued, and nothing on IngestQueue for them
    s3, bucket = stack.s3(), stack.names().ref("BatchBucket")
    answer = s3.get_bucket_notification_configuration(Bucket=bucket)
    notifications = cast(
        "NotificationConfigurationTypeDef", {k: v for k, v in answer.items() if k != "ResponseMetadata"}
    )
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    workload = Workload(stack)
    try:
        replies = workload.post_batches(BATCHES, 200)
        uploads = {workload.upload(500)[0] for _ in range(UPLOADS)}
    finally:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=notifications)
    accepted = {reply.body["job_id"] for reply in replies if reply.status == 202}
    assert len(accepted) == BATCHES
    # Only the s3:TestEvent S3 sends when notifications are configured again: the worker takes it, and nothing else.
    wait_until(lambda: queue_depth(stack, "IngestQueue") == 0, 60, "IngestQueue empty")

    # When the sweeper runs before their deadline, then 20 minutes after their acceptance, then once more
    early = run_maintenance(stack)
    statuses_before = {str(job.job_id): job.status for job in all_jobs(stack) if str(job.job_id) in accepted}
    uploads_before = {job.status for job in all_jobs(stack) if str(job.job_id) in uploads}
    age(stack, accepted | uploads, timedelta(minutes=35))
    expire_uploads(stack, uploads, timedelta(minutes=20))
    swept = run_maintenance(stack)
    again = run_maintenance(stack)
    report = check(stack, workload.log, timeout_s=240)

    # Then nothing was touched before the deadline, each job was requeued once, and every reading landed once
    record_figures(
        "lost_events",
        {
            **report.as_dict(),
            "accepted_202": workload.statuses[202],
            "requeued_unstarted": swept["stuck_jobs"]["requeued_unstarted_jobs"],
            "uploads_queued": len(swept["uploads"]["queued_jobs"]),
            "requeued_again_by_the_next_run": len(again["stuck_jobs"]["requeued_jobs"]),
        },
    )
    assert set(statuses_before.values()) == {JobStatus.QUEUED}
    assert uploads_before == {JobStatus.AWAITING_UPLOAD}
    assert early["stuck_jobs"]["requeued_jobs"] == early["uploads"]["queued_jobs"] == []
    # The uploads are queued by the uploads step, and their events sent by the stuck-jobs step of the same run.
    assert sorted(swept["uploads"]["queued_jobs"]) == sorted(uploads)
    assert sorted(swept["stuck_jobs"]["requeued_jobs"]) == sorted(accepted | uploads)
    assert swept["stuck_jobs"]["requeued_unstarted_jobs"] == BATCHES + UPLOADS
    assert swept["stuck_jobs"]["failed_jobs"] == []
    assert again["stuck_jobs"]["requeued_jobs"] == []
    assert (report.lost, report.duplicated) == (0, 0)
    assert report.accepted_uploads == UPLOADS
    assert report.ok, report.as_dict()
