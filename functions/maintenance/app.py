"""MaintenanceFunction, on a schedule: the readings' retention, the dead-letter backstop and the stuck-job sweeper.

Each step runs whatever became of the others and reports its counts in the log and as metrics. A failed step is
logged and counted (``MaintenanceStepFailures``) rather than raised: the next run tries again, and a retry of the
whole invocation by EventBridge would only repeat the steps that worked.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.services import per_environment
from sluice.services.maintenance import MaintenanceService, wire_maintenance_service

logger = Logger()
# Traces keep timings and annotations, never return values: a response body holds tenant data, and X-Ray is
# readable by whoever may debug the account.
tracer = Tracer()
metrics = Metrics()


# Clients, the database connector and the policy: built once per execution environment (at init in Lambda).
get_service = per_environment(wire_maintenance_service)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: MaintenanceService | None = None
) -> dict[str, Any]:
    results = (service or get_service()).run(datetime.now(UTC), context.get_remaining_time_in_millis)
    answer: dict[str, Any] = {}
    for result in results:
        if result.report is None:
            logger.error("maintenance step failed", step=result.step, exc_info=result.error)
            answer[result.step] = {"error": f"{type(result.error).__name__}: {result.error}"}
            continue
        answer[result.step] = result.report.summary()
        logger.info("maintenance step done", step=result.step, **answer[result.step])
        for name, value in result.report.counts.items():
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    failed = [result.step for result in results if result.report is None]
    metrics.add_metric(name="MaintenanceStepFailures", unit=MetricUnit.Count, value=len(failed))
    return answer | {"failed_steps": failed}
