"""QuarantineFunction's wiring: settings -> the database connector and the jobs table -> the review ports."""

from dataclasses import dataclass

from sluice.adapters.dynamodb import DynamoJobStore
from sluice.adapters.quarantine import TimescaleQuarantineStore, database_faults
from sluice.adapters.timescale import DatabaseConnector, database_dsn
from sluice.settings import QuarantineSettings, get_quarantine_settings


@dataclass(frozen=True, slots=True)
class QuarantineService:
    """What QuarantineFunction needs, built once per execution environment."""

    store: TimescaleQuarantineStore
    jobs: DynamoJobStore
    connector: DatabaseConnector
    tenant_claim: str

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
    )


def wire_quarantine_service() -> QuarantineService:
    """The service from the function's environment: each execution environment builds it once."""
    return build_quarantine_service(get_quarantine_settings())
