"""AlertsFunction: a tenant's alert rules, its alarms (read and acknowledge) and its webhook subscriptions with
their deliveries.

Acknowledging an alarm and deleting a rule (which clears its open alarms) write their history and their webhook
deliveries in the same transaction; the rules are in ``sluice.domain.alerts``.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.adapters.alerts import PostgresAlertStore
from sluice.adapters.http import Caller, body_of, caller_of, json_response, query_of, register_error_responses
from sluice.domain import alerts
from sluice.models.alerts import (
    AcknowledgeRequest,
    AlarmQuery,
    AlertRuleCreate,
    AlertRuleQuery,
    AlertRuleUpdate,
    DeliveryQuery,
    WebhookCreate,
    WebhookQuery,
)
from sluice.services import per_environment
from sluice.services.alerts import AlertsService, wire_alerts_service

logger = Logger()
# Traces keep timings, never return values: a response body holds tenant data (and once, a signing secret).
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver()
register_error_responses(app, logger, metrics)
READ, WRITE = "alerts:read", "alerts:write"

get_service = per_environment(wire_alerts_service)


def service_of() -> AlertsService:
    """The service this invocation runs with."""
    service: AlertsService = app.context["service"]
    return service


def caller(scope: str) -> Caller:
    """The verified caller; checked before anything else, so a request without the scope costs no database work."""
    return caller_of(app.current_event, service_of().tenant_claim, scope)


def reads(verified: Caller) -> str:
    """Spend one of the caller's reads (429 once they are used up), before any database work; its tenant."""
    service_of().reads.spend(verified.tenant_id, verified.principal, datetime.now(UTC))
    return verified.tenant_id


def writes(verified: Caller) -> str:
    """Spend one of the caller's writes, before any database work; its tenant."""
    service_of().writes.spend(verified.tenant_id, verified.principal, datetime.now(UTC))
    return verified.tenant_id


def store() -> PostgresAlertStore:
    """The alerts store, its connection checked."""
    service = service_of()
    service.check_database()
    return service.store


# --- alert rules ----------------------------------------------------------------------------------------------


@app.post("/api/v1/alert-rules")
@tracer.capture_method(capture_response=False)
def create_rule() -> Response[str]:
    verified = caller(WRITE)
    request = body_of(app.current_event, AlertRuleCreate)
    tenant_id = writes(verified)
    rule = alerts.create_rule(store(), tenant_id, verified.principal, request, service_of().limits)
    logger.info("alert rule created", rule_id=str(rule.id), kind=rule.kind)
    metrics.add_metric(name="AlertRulesCreated", unit=MetricUnit.Count, value=1)
    return json_response(201, rule)


@app.get("/api/v1/alert-rules")
@tracer.capture_method(capture_response=False)
def list_rules() -> Response[str]:
    verified = caller(READ)
    query = query_of(app.current_event, AlertRuleQuery)
    tenant_id = reads(verified)
    page = alerts.list_rules(store(), tenant_id, query)
    metrics.add_metric(name="AlertRuleListings", unit=MetricUnit.Count, value=1)
    return json_response(200, page)


@app.get("/api/v1/alert-rules/<rule_id>")
@tracer.capture_method(capture_response=False)
def get_rule(rule_id: str) -> Response[str]:
    tenant_id = reads(caller(READ))
    rule = alerts.find_rule(store(), tenant_id, rule_id)
    metrics.add_metric(name="AlertRuleReads", unit=MetricUnit.Count, value=1)
    return json_response(200, rule)


@app.patch("/api/v1/alert-rules/<rule_id>")
@tracer.capture_method(capture_response=False)
def change_rule(rule_id: str) -> Response[str]:
    verified = caller(WRITE)
    request = body_of(app.current_event, AlertRuleUpdate)
    tenant_id = writes(verified)
    changed = alerts.change_rule(store(), tenant_id, rule_id, request)
    logger.info("alert rule changed", rule_id=str(changed.id), changed=sorted(request.model_fields_set))
    metrics.add_metric(name="AlertRulesChanged", unit=MetricUnit.Count, value=1)
    return json_response(200, changed)


@app.delete("/api/v1/alert-rules/<rule_id>")
@tracer.capture_method(capture_response=False)
def delete_rule(rule_id: str) -> Response[str]:
    verified = caller(WRITE)
    tenant_id = writes(verified)
    cleared = alerts.remove_rule(store(), tenant_id, rule_id, verified.principal, datetime.now(UTC))
    logger.info("alert rule deleted", rule_id=rule_id, alarms_cleared=len(cleared))
    metrics.add_metric(name="AlertRulesDeleted", unit=MetricUnit.Count, value=1)
    # Alarms cleared with their rule: zero when it had none open.
    metrics.add_metric(name="AlarmsClearedWithRule", unit=MetricUnit.Count, value=len(cleared))
    return Response(status_code=204, body="")


# --- alarms ---------------------------------------------------------------------------------------------------


@app.get("/api/v1/alarms")
@tracer.capture_method(capture_response=False)
def list_alarms() -> Response[str]:
    verified = caller(READ)
    query = query_of(app.current_event, AlarmQuery)
    tenant_id = reads(verified)
    page = alerts.list_alarms(store(), tenant_id, query)
    metrics.add_metric(name="AlarmListings", unit=MetricUnit.Count, value=1)
    return json_response(200, page)


@app.get("/api/v1/alarms/<alarm_id>")
@tracer.capture_method(capture_response=False)
def get_alarm(alarm_id: str) -> Response[str]:
    tenant_id = reads(caller(READ))
    alarm = alerts.find_alarm(store(), tenant_id, alarm_id)
    metrics.add_metric(name="AlarmReads", unit=MetricUnit.Count, value=1)
    return json_response(200, alarm)


@app.post("/api/v1/alarms/<alarm_id>/acknowledge")
@tracer.capture_method(capture_response=False)
def acknowledge(alarm_id: str) -> Response[str]:
    verified = caller(WRITE)
    request = body_of(app.current_event, AcknowledgeRequest)
    tenant_id = writes(verified)
    alarm = alerts.acknowledge_alarm(
        store(), tenant_id, alarm_id, principal=verified.principal, note=request.note, now=datetime.now(UTC)
    )
    logger.info("alarm acknowledged", alarm_id=alarm_id)
    metrics.add_metric(name="AlarmsAcknowledged", unit=MetricUnit.Count, value=1)
    return json_response(200, alarm)


# --- webhooks -------------------------------------------------------------------------------------------------


@app.post("/api/v1/webhooks")
@tracer.capture_method(capture_response=False)
def create_webhook() -> Response[str]:
    verified = caller(WRITE)
    request = body_of(app.current_event, WebhookCreate)
    tenant_id = writes(verified)
    service = service_of()
    created = alerts.create_webhook(
        store(),
        tenant_id,
        request,
        principal=verified.principal,
        policy=service.target_policy,
        resolve=service.resolve,
        limits=service.limits,
    )
    logger.info("webhook created", webhook_id=str(created.id), events=created.events)
    metrics.add_metric(name="WebhooksCreated", unit=MetricUnit.Count, value=1)
    return json_response(201, created)


@app.get("/api/v1/webhooks")
@tracer.capture_method(capture_response=False)
def list_webhooks() -> Response[str]:
    verified = caller(READ)
    query = query_of(app.current_event, WebhookQuery)
    tenant_id = reads(verified)
    page = alerts.list_webhooks(store(), tenant_id, query)
    metrics.add_metric(name="WebhookListings", unit=MetricUnit.Count, value=1)
    return json_response(200, page)


@app.get("/api/v1/webhooks/<webhook_id>")
@tracer.capture_method(capture_response=False)
def get_webhook(webhook_id: str) -> Response[str]:
    tenant_id = reads(caller(READ))
    webhook = alerts.find_webhook(store(), tenant_id, webhook_id)
    metrics.add_metric(name="WebhookReads", unit=MetricUnit.Count, value=1)
    return json_response(200, webhook)


@app.delete("/api/v1/webhooks/<webhook_id>")
@tracer.capture_method(capture_response=False)
def delete_webhook(webhook_id: str) -> Response[str]:
    tenant_id = writes(caller(WRITE))
    alerts.remove_webhook(store(), tenant_id, webhook_id)
    logger.info("webhook deleted", webhook_id=webhook_id)
    metrics.add_metric(name="WebhooksDeleted", unit=MetricUnit.Count, value=1)
    return Response(status_code=204, body="")


@app.get("/api/v1/webhooks/<webhook_id>/deliveries")
@tracer.capture_method(capture_response=False)
def list_deliveries(webhook_id: str) -> Response[str]:
    verified = caller(READ)
    query = query_of(app.current_event, DeliveryQuery)
    tenant_id = reads(verified)
    page = alerts.list_deliveries(store(), tenant_id, webhook_id, query)
    metrics.add_metric(name="DeliveryListings", unit=MetricUnit.Count, value=1)
    return json_response(200, page)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: AlertsService | None = None
) -> dict[str, Any]:
    app.context["service"] = service or get_service()
    return app.resolve(event, context)
