"""HealthFunction's wiring: settings -> probe clients and the database connector -> the deep check."""

from sluice.adapters.health import HealthService
from sluice.adapters.timescale import DatabaseConnector, database_dsn
from sluice.settings import HealthSettings, get_health_settings


def build_health_service(settings: HealthSettings) -> HealthService:
    """HealthFunction's clients and database connector."""
    connector = DatabaseConnector(
        lambda: database_dsn(settings),
        settings.db_statement_timeout_ms,
        application_name="sluice-health",
        connect_timeout_s=3,
    )
    return HealthService(settings=settings, connector=connector)


def wire_health_service() -> HealthService:
    """The service from the function's environment: each execution environment builds it once."""
    return build_health_service(get_health_settings())
