"""SystemsFunction: a tenant's systems register. List and read systems with what lately reached Sluice for each,
register one (with the id its devices already send, if any), rename one and set how long its sensors may stay
silent.

Registration is idempotent (201 when this request created the system, 200 when it was there already); the rules
are in ``sluice.domain.systems``.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.adapters.http import Caller, body_of, caller_of, json_response, query_of, register_error_responses
from sluice.adapters.systems import TimescaleSystemStore
from sluice.domain.ratelimit import PrincipalBudget
from sluice.domain.systems import find_system, list_systems, register_system, show_system, update_system
from sluice.models.api import SystemCreate, SystemQuery, SystemUpdate
from sluice.services import per_environment
from sluice.services.systems import SystemsService, wire_systems_service

logger = Logger()
# Traces keep timings, never return values: a response body holds tenant data.
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
register_error_responses(app, logger, metrics)
READ, WRITE = "systems:read", "systems:write"

get_service = per_environment(wire_systems_service)


def service_of() -> SystemsService:
    """The service this invocation runs with."""
    service: SystemsService = app.context["service"]
    return service


def caller(scope: str) -> Caller:
    """The verified caller; checked before anything else, so a request without the scope costs no database work."""
    return caller_of(app.current_event, service_of().tenant_claim, scope)


def spend(budget: PrincipalBudget, verified: Caller) -> None:
    """Spend one request of the caller's ``budget`` (429 once it is used up), before any database work."""
    budget.spend(verified.tenant_id, verified.principal, datetime.now(UTC))


def store() -> TimescaleSystemStore:
    """The systems store, its connection checked."""
    service = service_of()
    service.check_database()
    return service.store


@app.get("/api/v1/systems")
@tracer.capture_method(capture_response=False)
def systems() -> Response[str]:
    verified = caller(READ)
    query = query_of(app.current_event, SystemQuery)
    spend(service_of().reads, verified)
    page = list_systems(store(), verified.tenant_id, query, datetime.now(UTC))
    metrics.add_metric(name="SystemListings", unit=MetricUnit.Count, value=1)
    return json_response(200, page)


@app.get("/api/v1/systems/<system_id>")
@tracer.capture_method(capture_response=False)
def system(system_id: str) -> Response[str]:
    verified = caller(READ)
    spend(service_of().reads, verified)
    systems_store = store()
    found = find_system(systems_store, verified.tenant_id, system_id)
    metrics.add_metric(name="SystemReads", unit=MetricUnit.Count, value=1)
    return json_response(200, show_system(systems_store, found, datetime.now(UTC)))


@app.post("/api/v1/systems")
@tracer.capture_method(capture_response=False)
def register() -> Response[str]:
    verified = caller(WRITE)
    request = body_of(app.current_event, SystemCreate)
    spend(service_of().writes, verified)
    systems_store = store()
    registered = register_system(systems_store, verified.tenant_id, request)
    if registered.created:
        logger.info("system registered", system_id=str(registered.system.id), chosen_id=request.id is not None)
    # Zero for a registration that found its system: the figure is of systems, the count of requests is beside it.
    metrics.add_metric(name="SystemsRegistered", unit=MetricUnit.Count, value=int(registered.created))
    view = show_system(systems_store, registered.system, datetime.now(UTC))
    return json_response(201 if registered.created else 200, view)


@app.patch("/api/v1/systems/<system_id>")
@tracer.capture_method(capture_response=False)
def update(system_id: str) -> Response[str]:
    verified = caller(WRITE)
    request = body_of(app.current_event, SystemUpdate)
    spend(service_of().writes, verified)
    systems_store = store()
    updated = update_system(systems_store, verified.tenant_id, system_id, request)
    logger.info("system updated", system_id=str(updated.id), changed=sorted(request.model_fields_set))
    metrics.add_metric(name="SystemsUpdated", unit=MetricUnit.Count, value=1)
    return json_response(200, show_system(systems_store, updated, datetime.now(UTC)))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: SystemsService | None = None
) -> dict[str, Any]:
    app.context["service"] = service or get_service()
    return app.resolve(event, context)
