"""HealthFunction: GET /health (no token: the function answers, with its version) and GET /health/deep (a token
with the scope ops:read: the database, its schema version, the bucket, the queues and the jobs table, each
reached)."""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice import __version__
from sluice.adapters.http import json_response, operator_of, register_error_responses
from sluice.errors import StorageUnavailableError
from sluice.models.api import Health
from sluice.services import per_environment
from sluice.services.health import DeepHealthService, wire_health_service

logger = Logger()
# Traces keep timings and annotations, never return values: a response body holds tenant data, and X-Ray is
# readable by whoever may debug the account.
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
register_error_responses(app, logger, metrics)
# The deep check names the deployment's bucket, queues, tables and schema version: an operator's business only.
SCOPE = "ops:read"
# An operator's token need carry no tenant: its reads are counted under no tenant ("read#/<sub>").
NO_TENANT = ""


# Clients and the database connector: built once per execution environment (at init in Lambda).
get_service = per_environment(wire_health_service)


@app.get("/health")
def health() -> Response[str]:
    # Touches nothing: a load balancer or uptime probe may call it often, and it must not wake the database.
    metrics.add_metric(name="HealthProbes", unit=MetricUnit.Count, value=1)
    return json_response(200, Health(version=__version__), {"Cache-Control": "no-store"})


@app.get("/health/deep")
@tracer.capture_method(capture_response=False)
def deep_health() -> Response[str]:
    principal = operator_of(app.current_event, SCOPE)
    service: DeepHealthService = app.context.get("service") or get_service()
    try:
        service.reads.spend(NO_TENANT, principal, datetime.now(UTC))
    except StorageUnavailableError:
        # An operator reads the deep check while DynamoDB is failing: it runs (its jobs_table check says what is
        # wrong) rather than answer 503 for want of its rate limit.
        logger.warning("rate limit unreadable: the deep check runs without it", exc_info=True)
    report = service.probes.deep_check()
    failed = [name for name, check in report.checks.items() if not check.ok]
    if failed:
        logger.warning("deep health check failed", failed=failed)
    metrics.add_metric(name="FailedHealthChecks", unit=MetricUnit.Count, value=len(failed))
    return json_response(200 if not failed else 503, report, {"Cache-Control": "no-store"})


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: DeepHealthService | None = None
) -> dict[str, Any]:
    # GET /health needs no service: outside a Lambda execution environment (tests) none is built until a deep check
    # asks for one. In Lambda it is built at init, like every function's.
    if service is not None:
        app.context["service"] = service
    return app.resolve(event, context)
