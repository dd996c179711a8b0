"""SystemsFunction's wiring: settings -> the database connector and the per-principal limits -> the systems store."""

from dataclasses import dataclass

from sluice.adapters.quarantine import database_faults
from sluice.adapters.systems import TimescaleSystemStore
from sluice.adapters.timescale import DatabaseConnector, database_dsn
from sluice.domain.ratelimit import PrincipalBudget
from sluice.services.limits import read_budget, systems_write_budget
from sluice.settings import SystemsSettings, get_systems_settings


@dataclass(frozen=True, slots=True)
class SystemsService:
    """What SystemsFunction needs, built once per execution environment."""

    store: TimescaleSystemStore
    connector: DatabaseConnector
    tenant_claim: str
    reads: PrincipalBudget
    writes: PrincipalBudget

    def check_database(self) -> None:
        """Make sure the kept connection answers (replacing one the server dropped while the environment slept)."""
        with database_faults("connecting to the database"):
            self.connector.checked_connection()


def build_systems_service(settings: SystemsSettings) -> SystemsService:
    """The database-backed ports of SystemsFunction."""
    connector = DatabaseConnector(
        lambda: database_dsn(settings), settings.db_statement_timeout_ms, application_name="sluice-systems"
    )
    return SystemsService(
        store=TimescaleSystemStore(connector.connection),
        connector=connector,
        tenant_claim=settings.tenant_claim,
        reads=read_budget(settings),
        writes=systems_write_budget(settings),
    )


def wire_systems_service() -> SystemsService:
    """The service from the function's environment: each execution environment builds it once."""
    return build_systems_service(get_systems_settings())
