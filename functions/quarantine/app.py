"""QuarantineFunction: list and read a tenant's quarantined readings, and review them (one, or many at once).

An approved or fixed reading is judged again and inserted into readings in the review's own transaction; the
job's review counts are then copied onto its record, so GET /api/v1/jobs/{job_id} tells the whole story.
"""

from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.adapters.http import Caller, body_of, caller_of, json_response, query_of, register_error_responses
from sluice.adapters.quarantine import QuarantineService, TimescaleQuarantineStore, build_quarantine_service
from sluice.domain.review import (
    Reviewer,
    check_notes,
    find_quarantined,
    list_quarantine,
    quarantine_item,
    review_many,
    review_quarantined,
)
from sluice.errors import StorageUnavailableError
from sluice.models.api import BulkReviewRequest, QuarantineQuery, ReviewRequest
from sluice.models.quarantine import JobReviewCounts
from sluice.settings import get_quarantine_settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
register_error_responses(app, logger, metrics)
READ, REVIEW = "quarantine:read", "quarantine:review"


@cache
def get_service() -> QuarantineService:
    """The database connector and clients, built on the first request and kept while the environment is warm."""
    return build_quarantine_service(get_quarantine_settings())


def caller(scope: str) -> Caller:
    """The verified caller; checked before anything else, so a request without the scope costs no database work."""
    return caller_of(app.current_event, get_service().tenant_claim, scope)


def store() -> TimescaleQuarantineStore:
    """The quarantine store, its connection checked (a request that was refused never gets this far)."""
    service = get_service()
    service.check_database()
    return service.store


@app.get("/api/v1/quarantine")
@tracer.capture_method
def quarantine() -> Response[str]:
    tenant_id = caller(READ).tenant_id
    query = query_of(app.current_event, QuarantineQuery)
    page = list_quarantine(store(), tenant_id, query)
    metrics.add_metric(name="QuarantineListings", unit=MetricUnit.Count, value=1)
    return json_response(200, page)


@app.get("/api/v1/quarantine/<row_id>")
@tracer.capture_method
def quarantined(row_id: str) -> Response[str]:
    tenant_id = caller(READ).tenant_id
    item = find_quarantined(store(), tenant_id, row_id)
    metrics.add_metric(name="QuarantineReads", unit=MetricUnit.Count, value=1)
    return json_response(200, item)


@app.post("/api/v1/quarantine/<row_id>/review")
@tracer.capture_method
def review(row_id: str) -> Response[str]:
    reviewer = reviewer_of(caller(REVIEW))
    request = body_of(app.current_event, ReviewRequest)
    check_notes(request.notes)
    reviewed = review_quarantined(store(), reviewer, row_id, request)
    tracer.put_annotation("job_id", str(reviewed.row.job_id))
    logger.info("reading reviewed", row_id=reviewed.row.id, job_id=str(reviewed.row.job_id), action=request.action)
    metrics.add_metric(name="ReviewedReadings", unit=MetricUnit.Count, value=1)
    show_on_jobs([reviewed.counts])
    return json_response(200, quarantine_item(reviewed.row))


@app.post("/api/v1/quarantine/review")
@tracer.capture_method
def review_bulk() -> Response[str]:
    reviewer = reviewer_of(caller(REVIEW))
    request = body_of(app.current_event, BulkReviewRequest)
    check_notes(request.notes)
    result, counts = review_many(store(), reviewer, request)
    job_ids = sorted({str(job_counts.job_id) for job_counts in counts})
    logger.info(
        "readings reviewed", action=request.action, reviewed=result.reviewed, failed=result.failed, job_ids=job_ids
    )
    metrics.add_metric(name="ReviewedReadings", unit=MetricUnit.Count, value=result.reviewed)
    show_on_jobs(counts)
    return json_response(200, result)


def reviewer_of(verified: Caller) -> Reviewer:
    """The reviewer recorded on each row, and the moment the rules judge a reviewed reading at."""
    return Reviewer(tenant_id=verified.tenant_id, principal=verified.principal, now=datetime.now(UTC))


def show_on_jobs(counts: list[JobReviewCounts]) -> None:
    """Copy committed review counts onto the job records. The review stands whatever happens here: a failed copy
    is logged and counted, and the job's next review copies the (larger) counts again."""
    for job_counts in counts:
        try:
            get_service().jobs.record_reviews(job_counts)
        except StorageUnavailableError:
            logger.exception("review counts not copied to the job", job_id=str(job_counts.job_id))
            metrics.add_metric(name="JobReviewCountFailures", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
