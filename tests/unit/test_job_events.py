"""Which job changes are announced (sluice.domain.job_events), how the handler reads a stream batch, and the local
twin's stream poller: its filter and the records it hands over."""

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from sluice.adapters.dynamodb import job_item
from sluice.domain.job_events import job_announcement
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice_tools.local.stack import planned_context
from sluice_tools.local.streams import StreamEventSource, checked_pattern, dynamodb_event_sources, stream_record
from sluice_tools.local.template import TemplateError

from ..lambdas import handler_module
from ..paths import REPO_ROOT

NOW = datetime(2026, 12, 5, 12, 30, tzinfo=UTC)


def job(status: JobStatus, **changes: Any) -> Job:
    fields: dict[str, Any] = {
        "job_id": uuid4(),
        "tenant_id": "acme",
        "source": JobSource.API,
        "status": status,
        "created_by": "device-7",
        "bucket": "b",
        "object_key": "incoming/acme/x.json",
        "created_at": NOW,
        "expires_at": 1_900_000_000,
    }
    return Job.model_validate(fields | changes)


def finished(before: Job, status: JobStatus) -> Job:
    return Job.model_validate(before.model_dump() | {"status": status, "completed_at": NOW})


@pytest.mark.parametrize(("status", "event_type"), [(JobStatus.COMPLETED, "job.completed"),
                                                    (JobStatus.FAILED, "job.failed")])  # fmt: skip
def test_a_job_reaching_a_finished_status_is_announced_under_its_key(status: JobStatus, event_type: str) -> None:
    before = job(JobStatus.PROCESSING)
    after = finished(before, status)

    announcement = job_announcement(before, after, NOW)

    assert announcement is not None
    assert (announcement.tenant_id, announcement.event_type) == ("acme", event_type)
    assert announcement.event_key == f"{event_type}:{after.job_id}"
    assert announcement.data["job_id"] == str(after.job_id)
    assert announcement.data["status"] == status.value


def test_changes_that_do_not_finish_a_job_are_not_announced() -> None:
    queued = job(JobStatus.QUEUED)
    processing = Job.model_validate(queued.model_dump() | {"status": JobStatus.PROCESSING})
    completed = finished(processing, JobStatus.COMPLETED)
    reviewed = Job.model_validate(completed.model_dump() | {"reviewed_readings": 3})

    assert job_announcement(None, queued, NOW) is None
    assert job_announcement(queued, processing, NOW) is None
    assert job_announcement(completed, reviewed, NOW) is None  # a review's counts on a finished job
    # A job failed, then redriven and completed: both finishes are announced.
    failed = finished(processing, JobStatus.FAILED)
    assert job_announcement(failed, completed, NOW) is not None


def test_the_handler_reads_finishes_skips_removals_and_counts_unreadable_images() -> None:
    module = handler_module("JobEventsFunction")
    before = job(JobStatus.PROCESSING)
    after = finished(before, JobStatus.COMPLETED)
    records = [
        {"eventName": "MODIFY", "dynamodb": {"OldImage": job_item(before), "NewImage": job_item(after)}},
        {"eventName": "REMOVE", "dynamodb": {"OldImage": job_item(after)}},
        {"eventName": "MODIFY", "dynamodb": {"NewImage": {"job_id": {"S": "not a job"}}}},
    ]

    found, unreadable = module.announcements(records, NOW)

    assert [change.event_key for change in found] == [f"job.completed:{after.job_id}"]
    assert unreadable == 1


def test_the_twin_reads_the_templates_stream_source_and_applies_its_filter() -> None:
    [source] = [
        s
        for s in dynamodb_event_sources(planned_context(REPO_ROOT, moto_endpoint="http://127.0.0.1:4566"))
        if s.function == "JobEventsFunction"
    ]
    before = job(JobStatus.PROCESSING)

    def record(name: str, after: Job) -> dict[str, Any]:
        return {"eventName": name, "dynamodb": {"OldImage": job_item(before), "NewImage": job_item(after)}}

    assert (source.batch_size, source.starting_position) == (100, "TRIM_HORIZON")
    assert source.keeps(record("MODIFY", finished(before, JobStatus.COMPLETED)))
    assert source.keeps(record("INSERT", finished(before, JobStatus.FAILED)))
    assert not source.keeps(record("MODIFY", before))
    assert not source.keeps(record("REMOVE", finished(before, JobStatus.COMPLETED)))


def test_a_filter_the_twin_cannot_apply_fails_loudly() -> None:
    with pytest.raises(TemplateError, match="exact values"):
        checked_pattern({"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": ["x"]}]}}}}, "F")


def test_a_stream_record_is_handed_over_as_lambda_does() -> None:
    raw = {"eventID": "1", "eventName": "MODIFY", "dynamodb": {"ApproximateCreationDateTime": NOW, "Keys": {}}}

    record = stream_record(raw, "arn:stream", "eu-central-1")

    assert record["eventSource"] == "aws:dynamodb"
    assert record["eventSourceARN"] == "arn:stream"
    assert record["dynamodb"]["ApproximateCreationDateTime"] == NOW.timestamp()
    assert StreamEventSource("F", "E", "arn", 1, 0, "LATEST").keeps(record)
