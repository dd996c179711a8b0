"""JobEventsFunction, on the jobs table's stream: a job that reaches ``completed`` or ``failed`` is announced to the
tenant's webhook subscriptions (``job.completed`` / ``job.failed``) through the outbox.

The stream holds every change of a job's record, written with the change, for 24 hours; a batch that fails (the
database is down) is retried until it succeeds or its records expire (IteratorAge raises JobEventsIteratorAgeAlarm
long before). Redelivered records write nothing twice. A record whose image is not a job this code can read is
logged and counted (``JobEventsUnreadable``) rather than left to block the stream.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from sluice.adapters.dynamodb import job_from_item
from sluice.domain.job_events import job_announcement
from sluice.domain.webhooks import Announcement
from sluice.services import per_environment
from sluice.services.job_events import JobEventsService, wire_job_events_service

logger = Logger()
# Traces keep timings, never return values.
tracer = Tracer()
metrics = Metrics()

get_service = per_environment(wire_job_events_service)


def announcements(records: list[dict[str, Any]], now: datetime) -> tuple[list[Announcement], int]:
    """The batch's announcements, in stream order, and how many records could not be read."""
    found: list[Announcement] = []
    unreadable = 0
    for record in records:
        if record.get("eventName") not in {"INSERT", "MODIFY"}:
            continue  # REMOVE: the job's TTL ran out
        change = record.get("dynamodb", {})
        try:
            before = job_from_item(change["OldImage"]) if "OldImage" in change else None
            after = job_from_item(change["NewImage"])
        except (KeyError, TypeError, ValueError, ValidationError):
            unreadable += 1
            logger.exception("unreadable job record", sequence=change.get("SequenceNumber"), keys=change.get("Keys"))
            continue
        announcement = job_announcement(before, after, now)
        if announcement is not None:
            found.append(announcement)
    return found, unreadable


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: JobEventsService | None = None
) -> dict[str, Any]:
    service = service or get_service()
    changes, unreadable = announcements(event.get("Records", []), datetime.now(UTC))
    # Counted before the write: a batch that fails still says what it could not read.
    metrics.add_metric(name="JobEventsUnreadable", unit=MetricUnit.Count, value=unreadable)
    written = 0
    if changes:
        service.check_database()
        written = service.outbox.announce(changes)
    logger.info("job events", records=len(event.get("Records", [])), announced=len(changes), deliveries=written)
    metrics.add_metric(name="JobEventsAnnounced", unit=MetricUnit.Count, value=len(changes))
    return {"announced": len(changes), "deliveries": written, "unreadable": unreadable}
