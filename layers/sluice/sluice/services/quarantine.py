"""QuarantineFunction's wiring: settings -> the database connector, the jobs table and the per-principal limits ->
the review ports."""

from dataclasses import dataclass

from sluice.adapters.dynamodb import DynamoJobStore
from sluice.adapters.quarantine import TimescaleQuarantineStore, database_faults
from sluice.adapters.timescale import DatabaseConnector, database_dsn
from sluice.domain.ratelimit import PrincipalBudget
from sluice.services.limits import read_budget, review_budget, reviewed_rows_budget
from sluice.settings import QuarantineSettings, get_quarantine_settings


@dataclass(frozen=True, slots=True)
class QuarantineService:
    """What QuarantineFunction needs, built once per execution environment."""

    store: TimescaleQuarantineStore
    jobs: DynamoJobStore
    connector: DatabaseConnector
    tenant_claim: str
    reads: PrincipalBudget
    reviews: PrincipalBudget
    reviewed_rows: PrincipalBudget
    # The most rows one bulk review may name or choose.
    max_rows_per_request: int

    def check_database(self) -> None:
        """Make sure the kept connection answers (replacing one the server dropped while the environment slept)."""
        with database_faults("connecting to the database"):
            self.connector.checked_connection()


def build_quarantine_service(settings: QuarantineSettings) -> QuarantineService:
    """The database- and DynamoDB-backed ports of QuarantineFunction."""
    connector = DatabaseConnector(
        lambda: database_dsn(settings), settings.db_statement_timeout_ms, application_name="sluice-quarantine"
    )
    return QuarantineService(
        store=TimescaleQuarantineStore(connector),
        jobs=DynamoJobStore(settings.jobs_table),
        connector=connector,
        tenant_claim=settings.tenant_claim,
        reads=read_budget(settings),
        reviews=review_budget(settings),
        reviewed_rows=reviewed_rows_budget(settings),
        max_rows_per_request=settings.review_max_rows_per_request,
    )


def wire_quarantine_service() -> QuarantineService:
    """The service from the function's environment: each execution environment builds it once."""
    return build_quarantine_service(get_quarantine_settings())
