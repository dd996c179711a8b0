"""ReadingsFunction: a system's readings read back, at a resolution of the caller's choice, and its sensors with
their newest readings and whether they still send. Read-only: it logs in as a member of ``sluice_reader``.

The windows, bounds and cursors are in ``sluice.domain.readings``; the SQL in ``sluice.adapters.readings``.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.adapters.http import JSON, Caller, caller_of, json_response, query_of, register_error_responses
from sluice.adapters.readings import TimescaleReadingsStore
from sluice.domain.readings import find_system_silence, list_sensors, plan_page, read_page
from sluice.models.readings_api import ReadingsQuery
from sluice.services import per_environment
from sluice.services.readings import ReadingsService, wire_readings_service

logger = Logger()
# Traces keep timings, never return values: a response body holds tenant data.
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
register_error_responses(app, logger, metrics)
READ = "readings:read"

get_service = per_environment(wire_readings_service)


def service_of() -> ReadingsService:
    """The service this invocation runs with."""
    service: ReadingsService = app.context["service"]
    return service


def caller() -> Caller:
    """The verified caller; checked before anything else, so a request without the scope costs no database work."""
    return caller_of(app.current_event, service_of().tenant_claim, READ)


def spend(verified: Caller) -> None:
    """Spend one of the caller's reads (429 once they are used up), before any database work."""
    service_of().reads.spend(verified.tenant_id, verified.principal, datetime.now(UTC))


def store() -> TimescaleReadingsStore:
    """The readings store, its connection checked."""
    service = service_of()
    service.check_database()
    return service.store


@app.get("/api/v1/systems/<system_id>/readings")
@tracer.capture_method(capture_response=False)
def readings(system_id: str) -> Response[str]:
    verified = caller()
    query = query_of(app.current_event, ReadingsQuery)
    spend(verified)
    readings_store = store()
    system, _ = find_system_silence(readings_store, verified.tenant_id, system_id)
    plan = plan_page(system, query, datetime.now(UTC))
    body = read_page(readings_store, plan)
    metrics.add_metric(name="ReadingsPages", unit=MetricUnit.Count, value=1)
    return Response(status_code=200, content_type=JSON, body=body)


@app.get("/api/v1/systems/<system_id>/sensors")
@tracer.capture_method(capture_response=False)
def sensors(system_id: str) -> Response[str]:
    verified = caller()
    spend(verified)
    readings_store = store()
    system, silent_after = find_system_silence(readings_store, verified.tenant_id, system_id)
    listed = list_sensors(readings_store, system, silent_after, datetime.now(UTC))
    metrics.add_metric(name="SensorListings", unit=MetricUnit.Count, value=1)
    return json_response(200, listed)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: ReadingsService | None = None
) -> dict[str, Any]:
    app.context["service"] = service or get_service()
    return app.resolve(event, context)
