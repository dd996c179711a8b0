"""JobStatusFunction: GET /api/v1/jobs and GET /api/v1/jobs/{job_id}, read from DynamoDB only, so job status keeps
answering while the database is down or being upgraded."""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.adapters.http import Caller, caller_of, json_response, query_of, register_error_responses
from sluice.domain.jobs import find_job, list_jobs
from sluice.models.api import JobQuery
from sluice.services import per_environment
from sluice.services.job_status import JobStatusService, wire_job_status_service

logger = Logger()
# Traces keep timings and annotations, never return values: a response body holds tenant data, and X-Ray is
# readable by whoever may debug the account.
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
register_error_responses(app, logger, metrics)
SCOPE = "jobs:read"


# The jobs table's client: built once per execution environment (at init in Lambda).
get_service = per_environment(wire_job_status_service)


@app.get("/api/v1/jobs")
@tracer.capture_method(capture_response=False)
def jobs() -> Response[str]:
    service: JobStatusService = app.context["service"]
    caller = caller_of(app.current_event, service.tenant_claim, SCOPE)
    query = query_of(app.current_event, JobQuery)
    spend_read(service, caller)
    page = list_jobs(service.jobs, caller.tenant_id, query, datetime.now(UTC))
    metrics.add_metric(name="JobListings", unit=MetricUnit.Count, value=1)
    return json_response(200, page)


# The HTTP API routes /api/v1/jobs/{job_id+} here, so a trailing slash reaches the function too.
@app.get("/api/v1/jobs/<job_id>")
@app.get("/api/v1/jobs/<job_id>/")
@tracer.capture_method(capture_response=False)
def job(job_id: str) -> Response[str]:
    service: JobStatusService = app.context["service"]
    caller = caller_of(app.current_event, service.tenant_claim, SCOPE)
    spend_read(service, caller)
    found = find_job(service.jobs, caller.tenant_id, job_id, datetime.now(UTC))
    metrics.add_metric(name="JobReads", unit=MetricUnit.Count, value=1)
    return json_response(200, found)


def spend_read(service: JobStatusService, caller: Caller) -> None:
    """Count a well-formed read in the caller's read budget (429 once it is used up), before the table is read."""
    service.reads.spend(caller.tenant_id, caller.principal, datetime.now(UTC))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: JobStatusService | None = None
) -> dict[str, Any]:
    app.context["service"] = service or get_service()
    return app.resolve(event, context)
