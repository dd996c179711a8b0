"""WebhookDispatcherFunction, every minute: sends the outbox's webhook deliveries until its time is nearly up.

It sleeps on the outbox's notifications between sends, so a delivery written while it runs goes out within
milliseconds; runs overlap by a few seconds (the timeout is longer than the schedule's minute), so one is always
listening. Failed attempts are retried with backoff for 24 hours (sluice.domain.dispatch); a delivery failed for
good is counted in ``WebhookDeliveriesFailed``, which raises an alarm.
"""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.services import per_environment
from sluice.services.webhook_dispatcher import WebhookDispatcher, wire_webhook_dispatcher

logger = Logger()
# Traces keep timings, never return values.
tracer = Tracer()
metrics = Metrics()

# The store (its connection), the sender and the limits: built once per execution environment.
get_service = per_environment(wire_webhook_dispatcher)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: WebhookDispatcher | None = None
) -> dict[str, Any]:
    report = (service or get_service()).run(context.get_remaining_time_in_millis)
    summary: dict[str, Any] = report.summary()
    logger.info("webhook deliveries sent", **summary)
    metrics.add_metric(name="WebhooksDelivered", unit=MetricUnit.Count, value=report.delivered)
    metrics.add_metric(name="WebhookAttemptsFailed", unit=MetricUnit.Count, value=report.retried + report.failed)
    metrics.add_metric(name="WebhookDeliveriesFailed", unit=MetricUnit.Count, value=report.failed)
    return summary
