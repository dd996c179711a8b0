"""AlertEvaluatorFunction's wiring: settings -> the database connector -> the evaluation store."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sluice.adapters.evaluation import TimescaleEvaluationStore
from sluice.adapters.timescale import DatabaseConnector, database_dsn
from sluice.domain.evaluation import EvaluationStore, RunReport, Window, evaluate_all
from sluice.settings import AlertEvaluatorSettings, get_alert_evaluator_settings

# Time a tenant's evaluation may take before the function's timeout: a tenant is started only with this left.
TENANT_RESERVE_MS = 10_000


@dataclass(frozen=True, slots=True)
class AlertEvaluatorService:
    """What AlertEvaluatorFunction needs, built once per execution environment."""

    store: EvaluationStore
    connector: DatabaseConnector
    lookback: timedelta

    def run(self, now: datetime, remaining_ms: Callable[[], int]) -> RunReport:
        """Evaluate every tenant's rules at ``now``."""
        self.connector.checked_connection()
        window = Window(now, self.lookback)
        return evaluate_all(self.store, window, has_time=lambda: remaining_ms() > TENANT_RESERVE_MS)


def build_alert_evaluator_service(settings: AlertEvaluatorSettings) -> AlertEvaluatorService:
    """The evaluator's database connector and store."""
    connector = DatabaseConnector(
        lambda: database_dsn(settings), settings.db_statement_timeout_ms, application_name="sluice-alert-evaluator"
    )
    return AlertEvaluatorService(
        store=TimescaleEvaluationStore(connector.connection),
        connector=connector,
        lookback=timedelta(minutes=settings.alert_lookback_minutes),
    )


def wire_alert_evaluator_service() -> AlertEvaluatorService:
    """The service from the function's environment: each execution environment builds it once."""
    return build_alert_evaluator_service(get_alert_evaluator_settings())
