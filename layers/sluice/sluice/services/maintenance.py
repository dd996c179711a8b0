"""MaintenanceFunction's wiring: settings -> clients and the database connector -> the maintenance steps."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sluice.adapters.dynamodb import DynamoJobStore
from sluice.adapters.maintenance import (
    SWEEP_RESERVE_MS,
    S3ObjectProbe,
    SqsDeadLetters,
    SqsJobRequeue,
    TimescaleMaintenanceStore,
)
from sluice.adapters.timescale import DatabaseConnector, database_dsn
from sluice.domain.maintenance import (
    MaintenancePolicy,
    StepResult,
    SweepPorts,
    apply_retention,
    fail_parked_jobs,
    run_steps,
    settle_uploads,
    sweep_jobs,
)
from sluice.settings import MaintenanceSettings, get_maintenance_settings


@dataclass(frozen=True, slots=True)
class MaintenanceService:
    """What MaintenanceFunction needs, built once per execution environment."""

    policy: MaintenancePolicy
    connector: DatabaseConnector
    store: TimescaleMaintenanceStore
    jobs: DynamoJobStore
    dead_letters: SqsDeadLetters
    sweep: SweepPorts

    def run(self, now: datetime, remaining_ms: Callable[[], int]) -> list[StepResult]:
        """Retention, the dead-letter backstop, expired uploads, then the sweeper (which sends the S3 event of an
        upload just queued); each whatever became of the others."""
        return run_steps(
            {
                "retention": lambda: apply_retention(self.store, self.policy),
                "dead_letters": lambda: fail_parked_jobs(self.dead_letters, self.jobs, now),
                "uploads": lambda: settle_uploads(self.jobs, self.sweep.objects, self.policy, now),
                "stuck_jobs": lambda: sweep_jobs(
                    self.sweep, self.policy, now, has_time=lambda: remaining_ms() > SWEEP_RESERVE_MS
                ),
            }
        )


def build_maintenance_service(settings: MaintenanceSettings) -> MaintenanceService:
    """MaintenanceFunction's clients, database connector and policy."""
    connector = DatabaseConnector(
        lambda: database_dsn(settings), settings.db_statement_timeout_ms, application_name="sluice-maintenance"
    )
    store = TimescaleMaintenanceStore(connector)
    jobs = DynamoJobStore(settings.jobs_table)
    policy = MaintenancePolicy(
        retention_years=settings.retention_years,
        rollup_retention_years=settings.rollup_retention_years,
        stuck_after=timedelta(minutes=settings.stuck_job_minutes),
        queued_after=timedelta(minutes=settings.unstored_job_minutes),
        upload_grace=timedelta(minutes=settings.upload_grace_minutes),
    )
    return MaintenanceService(
        policy=policy,
        connector=connector,
        store=store,
        jobs=jobs,
        dead_letters=SqsDeadLetters(
            settings.dead_letter_queue_url, settings.dead_letter_visibility_seconds, settings.dead_letter_max_messages
        ),
        sweep=SweepPorts(
            jobs=jobs, ledger=store, objects=S3ObjectProbe(), queue=SqsJobRequeue(settings.ingest_queue_url)
        ),
    )


def wire_maintenance_service() -> MaintenanceService:
    """The service from the function's environment: each execution environment builds it once."""
    return build_maintenance_service(get_maintenance_settings())
