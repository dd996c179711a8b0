"""HealthFunction's wiring: settings -> probe clients, the database connector and the read limit -> the deep
check."""

from dataclasses import dataclass

from sluice.adapters.health import HealthService
from sluice.adapters.timescale import DatabaseConnector, database_dsn
from sluice.domain.ratelimit import PrincipalBudget
from sluice.services.limits import read_budget
from sluice.settings import HealthSettings, get_health_settings


@dataclass(frozen=True, slots=True)
class DeepHealthService:
    """What the deep check needs, built once per execution environment."""

    probes: HealthService
    reads: PrincipalBudget

    @property
    def connector(self) -> DatabaseConnector:
        """The database connector the probes keep."""
        return self.probes.connector


def build_health_service(settings: HealthSettings) -> DeepHealthService:
    """HealthFunction's clients, database connector and read limit."""
    connector = DatabaseConnector(
        lambda: database_dsn(settings),
        settings.db_statement_timeout_ms,
        application_name="sluice-health",
        connect_timeout_s=3,
    )
    return DeepHealthService(probes=HealthService(settings=settings, connector=connector), reads=read_budget(settings))


def wire_health_service() -> DeepHealthService:
    """The service from the function's environment: each execution environment builds it once."""
    return build_health_service(get_health_settings())
