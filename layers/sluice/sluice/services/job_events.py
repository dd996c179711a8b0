"""JobEventsFunction's wiring: settings -> the database connector -> the outbox."""

from dataclasses import dataclass

from sluice.adapters.job_events import TimescaleJobAnnouncements
from sluice.adapters.quarantine import database_faults
from sluice.adapters.timescale import DatabaseConnector, database_dsn
from sluice.settings import JobEventsSettings, get_job_events_settings


@dataclass(frozen=True, slots=True)
class JobEventsService:
    """What JobEventsFunction needs, built once per execution environment."""

    outbox: TimescaleJobAnnouncements
    connector: DatabaseConnector

    def check_database(self) -> None:
        """Make sure the kept connection answers (replacing one the server dropped while the environment slept)."""
        with database_faults("connecting to the database"):
            self.connector.checked_connection()


def build_job_events_service(settings: JobEventsSettings) -> JobEventsService:
    """The database connector and the outbox."""
    connector = DatabaseConnector(
        lambda: database_dsn(settings), settings.db_statement_timeout_ms, application_name="sluice-job-events"
    )
    return JobEventsService(outbox=TimescaleJobAnnouncements(connector.connection), connector=connector)


def wire_job_events_service() -> JobEventsService:
    """The service from the function's environment: each execution environment builds it once."""
    return build_job_events_service(get_job_events_settings())
