"""ReadingsFunction's wiring: settings -> the database connector (a sluice_reader login) and the read limit -> the
readings store."""

from dataclasses import dataclass

from sluice.adapters.quarantine import database_faults
from sluice.adapters.readings import TimescaleReadingsStore
from sluice.adapters.timescale import DatabaseConnector, database_dsn
from sluice.domain.ratelimit import PrincipalBudget
from sluice.services.limits import read_budget
from sluice.settings import ReadingsSettings, get_readings_settings


@dataclass(frozen=True, slots=True)
class ReadingsService:
    """What ReadingsFunction needs, built once per execution environment."""

    store: TimescaleReadingsStore
    connector: DatabaseConnector
    tenant_claim: str
    reads: PrincipalBudget

    def check_database(self) -> None:
        """Make sure the kept connection answers (replacing one the server dropped while the environment slept)."""
        with database_faults("connecting to the database"):
            self.connector.checked_connection()


def build_readings_service(settings: ReadingsSettings) -> ReadingsService:
    """The database-backed ports of ReadingsFunction."""
    connector = DatabaseConnector(
        lambda: database_dsn(settings), settings.db_statement_timeout_ms, application_name="sluice-readings"
    )
    return ReadingsService(
        store=TimescaleReadingsStore(connector.connection),
        connector=connector,
        tenant_claim=settings.tenant_claim,
        reads=read_budget(settings),
    )


def wire_readings_service() -> ReadingsService:
    """The service from the function's environment: each execution environment builds it once."""
    return build_readings_service(get_readings_settings())
