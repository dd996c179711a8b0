"""Settings read from the environment: one model per consumer, validated once and cached.

This is the only module that reads ``os.environ`` (through pydantic-settings).
"""

from functools import cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_DB_DSN = "postgresql://postgres@127.0.0.1:5433/sluice"


class DatabaseSettings(BaseSettings):
    """Where PostgreSQL is and how long a statement may run."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", frozen=True)

    db_dsn: str = Field(default=LOCAL_DB_DSN, min_length=1)
    # A hung statement must fail the invocation (and so be retried) rather than eat the Lambda's whole timeout.
    db_statement_timeout_ms: int = Field(default=60_000, gt=0)


class MigrationSettings(DatabaseSettings):
    """The migration runner: the database plus where the SQL files are."""

    migrations_dir: Path = Path("infra/migrations")


@cache
def get_database_settings() -> DatabaseSettings:
    """Return the database settings, validated on first use."""
    return DatabaseSettings()


@cache
def get_migration_settings() -> MigrationSettings:
    """Return the migration runner's settings, validated on first use."""
    return MigrationSettings()
