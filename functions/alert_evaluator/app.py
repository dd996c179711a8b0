"""AlertEvaluatorFunction, every minute: evaluate each tenant's alert rules over the minute rollups and the sensors'
newest readings, raise and clear alarms, and write their webhook deliveries in the same transaction.

The rules are in ``sluice.domain.evaluation``. A tenant whose evaluation fails is logged and counted
(``AlertEvaluationFailures``) and the others go on; the next minute evaluates it again over the same look-back, so a
failed or skipped run loses no alarm that its data still shows.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.services import per_environment
from sluice.services.alert_evaluator import AlertEvaluatorService, wire_alert_evaluator_service

logger = Logger()
# Traces keep timings, never return values.
tracer = Tracer()
metrics = Metrics()

get_service = per_environment(wire_alert_evaluator_service)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: AlertEvaluatorService | None = None
) -> dict[str, Any]:
    report = (service or get_service()).run(datetime.now(UTC), context.get_remaining_time_in_millis)
    for tenant_id, error in report.failures:
        logger.error("alert evaluation failed", tenant_id=tenant_id, exc_info=error)
    summary: dict[str, Any] = {
        "tenants": report.tenants,
        "evaluated": report.evaluated,
        "skipped": report.skipped,
        "deferred": report.deferred,
        "raised": report.raised,
        "cleared": report.cleared,
        "deliveries": report.deliveries,
        "failed": len(report.failures),
    }
    logger.info("alert evaluation done", **summary)
    metrics.add_metric(name="AlarmsRaised", unit=MetricUnit.Count, value=report.raised)
    metrics.add_metric(name="AlarmsCleared", unit=MetricUnit.Count, value=report.cleared)
    metrics.add_metric(name="AlertTenantsDeferred", unit=MetricUnit.Count, value=report.deferred)
    metrics.add_metric(name="AlertEvaluationFailures", unit=MetricUnit.Count, value=len(report.failures))
    return summary
