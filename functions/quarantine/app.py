"""QuarantineFunction: list and read a tenant's quarantined readings, and review them (one, or many at once).

An approved or fixed reading is judged again and inserted into readings in the review's own transaction; the
job's review counts are then copied onto its record, so GET /api/v1/jobs/{job_id} tells the whole story.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.adapters.http import Caller, body_of, caller_of, json_response, query_of, register_error_responses
from sluice.adapters.quarantine import TimescaleQuarantineStore
from sluice.domain.ratelimit import PrincipalBudget, bound_bulk_review, rows_asked
from sluice.domain.review import (
    Reviewer,
    check_notes,
    find_quarantined,
    list_quarantine,
    quarantine_item,
    review_many,
    review_quarantined,
    show_on_jobs,
)
from sluice.models.api import BulkReviewRequest, QuarantineQuery, ReviewRequest
from sluice.models.quarantine import JobReviewCounts
from sluice.services import per_environment
from sluice.services.quarantine import QuarantineService, wire_quarantine_service

logger = Logger()
# Traces keep timings and annotations, never return values: a response body holds tenant data, and X-Ray is
# readable by whoever may debug the account.
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
register_error_responses(app, logger, metrics)
READ, REVIEW = "quarantine:read", "quarantine:review"


# The database connector and clients: built once per execution environment (at init in Lambda).
get_service = per_environment(wire_quarantine_service)


def service_of() -> QuarantineService:
    """The service this invocation runs with."""
    service: QuarantineService = app.context["service"]
    return service


def caller(scope: str) -> Caller:
    """The verified caller; checked before anything else, so a request without the scope costs no database work."""
    return caller_of(app.current_event, service_of().tenant_claim, scope)


def spend(budget: PrincipalBudget, verified: Caller, amount: int = 1) -> None:
    """Spend ``amount`` of the caller's ``budget`` (429 once it is used up): once the request is known to be well
    formed, before any database work."""
    budget.spend(verified.tenant_id, verified.principal, datetime.now(UTC), amount)


def store() -> TimescaleQuarantineStore:
    """The quarantine store, its connection checked (a request that was refused never gets this far)."""
    service = service_of()
    service.check_database()
    return service.store


@app.get("/api/v1/quarantine")
@tracer.capture_method(capture_response=False)
def quarantine() -> Response[str]:
    verified = caller(READ)
    query = query_of(app.current_event, QuarantineQuery)
    spend(service_of().reads, verified)
    page = list_quarantine(store(), verified.tenant_id, query)
    metrics.add_metric(name="QuarantineListings", unit=MetricUnit.Count, value=1)
    return json_response(200, page)


@app.get("/api/v1/quarantine/<row_id>")
@tracer.capture_method(capture_response=False)
def quarantined(row_id: str) -> Response[str]:
    verified = caller(READ)
    spend(service_of().reads, verified)
    item = find_quarantined(store(), verified.tenant_id, row_id)
    metrics.add_metric(name="QuarantineReads", unit=MetricUnit.Count, value=1)
    return json_response(200, item)


@app.post("/api/v1/quarantine/<row_id>/review")
@tracer.capture_method(capture_response=False)
def review(row_id: str) -> Response[str]:
    verified = caller(REVIEW)
    request = body_of(app.current_event, ReviewRequest)
    check_notes(request.notes)
    # One row: the review budget bounds single reviews; the reviewed-rows budget is for bulk ones.
    spend(service_of().reviews, verified)
    reviewer = reviewer_of(verified)
    reviewed = review_quarantined(store(), reviewer, row_id, request)
    tracer.put_annotation("job_id", str(reviewed.row.job_id))
    logger.info("reading reviewed", row_id=reviewed.row.id, job_id=str(reviewed.row.job_id), action=request.action)
    metrics.add_metric(name="ReviewedReadings", unit=MetricUnit.Count, value=1)
    copy_counts([reviewed.counts])
    return json_response(200, quarantine_item(reviewed.row))


@app.post("/api/v1/quarantine/review")
@tracer.capture_method(capture_response=False)
def review_bulk() -> Response[str]:
    verified = caller(REVIEW)
    request = bound_bulk_review(body_of(app.current_event, BulkReviewRequest), service_of().max_rows_per_request)
    check_notes(request.notes)
    spend(service_of().reviews, verified)
    # A filter spends its limit: the most rows it may review, known before the first is touched.
    spend(service_of().reviewed_rows, verified, rows_asked(request))
    reviewer = reviewer_of(verified)
    result, counts = review_many(store(), reviewer, request)
    job_ids = sorted({str(job_counts.job_id) for job_counts in counts})
    logger.info(
        "readings reviewed", action=request.action, reviewed=result.reviewed, failed=result.failed, job_ids=job_ids
    )
    metrics.add_metric(name="ReviewedReadings", unit=MetricUnit.Count, value=result.reviewed)
    copy_counts(counts)
    return json_response(200, result)


def reviewer_of(verified: Caller) -> Reviewer:
    """The reviewer recorded on each row, and the moment the rules judge a reviewed reading at."""
    return Reviewer(tenant_id=verified.tenant_id, principal=verified.principal, now=datetime.now(UTC))


def copy_counts(counts: list[JobReviewCounts]) -> None:
    """Show committed review counts on the job records; a failed copy is logged and counted (the review stands)."""
    for job_id in show_on_jobs(service_of().jobs, counts):
        logger.error("review counts not copied to the job", job_id=str(job_id))
        metrics.add_metric(name="JobReviewCountFailures", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: QuarantineService | None = None
) -> dict[str, Any]:
    app.context["service"] = service or get_service()
    return app.resolve(event, context)
