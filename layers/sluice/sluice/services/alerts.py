"""AlertsFunction's wiring: settings -> the database connector, the per-principal limits, the tenant limits and the
webhook target policy -> the alerts store."""

from dataclasses import dataclass

from sluice.adapters.alerts import PostgresAlertStore
from sluice.adapters.outbox import resolve_addresses
from sluice.adapters.quarantine import database_faults
from sluice.adapters.timescale import DatabaseConnector, database_dsn
from sluice.domain.alerts import AlertLimits
from sluice.domain.ratelimit import PrincipalBudget
from sluice.domain.webhooks import Resolver, TargetPolicy
from sluice.services.limits import alerts_write_budget, read_budget
from sluice.settings import AlertsSettings, get_alerts_settings


@dataclass(frozen=True, slots=True)
class AlertsService:
    """What AlertsFunction needs, built once per execution environment."""

    store: PostgresAlertStore
    connector: DatabaseConnector
    tenant_claim: str
    reads: PrincipalBudget
    writes: PrincipalBudget
    limits: AlertLimits
    target_policy: TargetPolicy
    # Where a webhook's host name is looked up; tests pass their own.
    resolve: Resolver

    def check_database(self) -> None:
        """Make sure the kept connection answers (replacing one the server dropped while the environment slept)."""
        with database_faults("connecting to the database"):
            self.connector.checked_connection()


def build_alerts_service(settings: AlertsSettings, resolve: Resolver = resolve_addresses) -> AlertsService:
    """The database-backed ports of AlertsFunction."""
    connector = DatabaseConnector(
        lambda: database_dsn(settings), settings.db_statement_timeout_ms, application_name="sluice-alerts"
    )
    return AlertsService(
        store=PostgresAlertStore(connector.connection),
        connector=connector,
        tenant_claim=settings.tenant_claim,
        reads=read_budget(settings),
        writes=alerts_write_budget(settings),
        limits=AlertLimits(rules_max=settings.alert_rules_max, webhooks_max=settings.webhooks_max),
        target_policy=TargetPolicy(allow_local=settings.webhook_allow_local),
        resolve=resolve,
    )


def wire_alerts_service() -> AlertsService:
    """The service from the function's environment: each execution environment builds it once."""
    return build_alerts_service(get_alerts_settings())
