"""The tools' settings, read from the environment (the only module of ``sluice_tools`` that reads it)."""

from functools import cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_DB_DSN = "postgresql://postgres@127.0.0.1:5433/sluice"


class DatabaseSettings(BaseSettings):
    """The database the tools, the tests and the migration runner use: the local cluster unless SLUICE_DB_DSN
    names another."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", frozen=True)

    db_dsn: str = Field(default=LOCAL_DB_DSN, min_length=1)


class MigrationSettings(DatabaseSettings):
    """``sluice-migrate``: the database plus where the SQL files are."""

    migrations_dir: Path = Path("infra/migrations")


class FaultSwitches(BaseSettings):
    """The fault switches of ``make reliability`` (``SLUICE_FAULT_*``), all off by default. Read by the local
    runtime's bootstrap only; the functions' own settings know none of them."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_FAULT_", frozen=True)

    # LoadWorkerFunction: raise right after this chunk commits (before the ack).
    crash_after_chunk: int | None = Field(default=None, ge=0)
    # LoadWorkerFunction: on a message's first receive, kill the process right after this chunk commits.
    exit_after_chunk: int | None = Field(default=None, ge=0)
    # LoadWorkerFunction: kill the process in the middle of the COPY of a group of several jobs' chunks (an
    # invocation's small objects written together), once: the file named here marks that it happened.
    exit_mid_group_once: Path | None = None
    # AlertEvaluatorFunction: kill the process once a tenant's alarms, history and deliveries are written and before
    # they commit, once: the file named here marks that it happened.
    exit_in_evaluation_once: Path | None = None
    # WebhookDispatcherFunction: kill the process right after a receiver accepted a delivery and before the
    # delivery is recorded, once: the file named here marks that it happened.
    exit_after_webhook_send_once: Path | None = None
    # IngestApiFunction: every n-th job record or batch object write in an execution environment is refused.
    fail_job_write_every: int | None = Field(default=None, ge=1)
    fail_batch_put_every: int | None = Field(default=None, ge=1)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def any_on(self) -> bool:
        """Is any switch on?"""
        return any(value is not None for value in self.model_dump().values())


@cache
def get_database_settings() -> DatabaseSettings:
    """Return the database settings, validated on first use."""
    return DatabaseSettings()


@cache
def get_migration_settings() -> MigrationSettings:
    """Return the migration runner's settings, validated on first use."""
    return MigrationSettings()
