"""JobStatusFunction: GET /api/v1/jobs and GET /api/v1/jobs/{job_id}, read from DynamoDB only, so job status keeps
answering while the database is down or being upgraded."""

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.adapters.dynamodb import DynamoJobStore
from sluice.adapters.http import caller_of, json_response, query_of, register_error_responses
from sluice.domain.jobs import find_job, list_jobs
from sluice.models.api import JobQuery
from sluice.settings import get_job_status_settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
register_error_responses(app, logger, metrics)
SCOPE = "jobs:read"


@cache
def get_jobs() -> DynamoJobStore:
    """The jobs table's client, built on the first request and kept while the environment is warm."""
    return DynamoJobStore(get_job_status_settings().jobs_table)


@app.get("/api/v1/jobs")
@tracer.capture_method
def jobs() -> Response[str]:
    caller = caller_of(app.current_event, get_job_status_settings().tenant_claim, SCOPE)
    page = list_jobs(get_jobs(), caller.tenant_id, query_of(app.current_event, JobQuery))
    metrics.add_metric(name="JobListings", unit=MetricUnit.Count, value=1)
    return json_response(200, page)


# The HTTP API routes /api/v1/jobs/{job_id+} here, so a trailing slash reaches the function too.
@app.get("/api/v1/jobs/<job_id>")
@app.get("/api/v1/jobs/<job_id>/")
@tracer.capture_method
def job(job_id: str) -> Response[str]:
    caller = caller_of(app.current_event, get_job_status_settings().tenant_claim, SCOPE)
    found = find_job(get_jobs(), caller.tenant_id, job_id)
    metrics.add_metric(name="JobReads", unit=MetricUnit.Count, value=1)
    return json_response(200, found)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
