"""Shared fixtures: the real local TimescaleDB, reached through the DSN setting.

A test that needs the database fails with a clear message when it cannot be reached; nothing here skips.
"""

from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sluice.adapters.migrations import Migration, MigrationRunner, load_migrations
from sluice.settings import get_database_settings

from .paths import MIGRATIONS_DIR
from .scratch import scratch_database


@pytest.fixture(scope="session")
def server_dsn() -> str:
    """The DSN of the test server's maintenance database; fails the test when the server is unreachable."""
    dsn = get_database_settings().db_dsn
    admin = make_conninfo(dsn, dbname="postgres")
    try:
        with psycopg.connect(admin, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"cannot reach PostgreSQL at {_redacted(dsn)} (SLUICE_DB_DSN): {exc}\n"
            "Start it with 'make db' (or run the tests through 'make test', which does).",
            pytrace=False,
        )
    return admin


@pytest.fixture(scope="session")
def migrations() -> list[Migration]:
    """The project's migrations, read from infra/migrations."""
    return load_migrations(MIGRATIONS_DIR)


@pytest.fixture
def scratch_db(server_dsn: str) -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards; yields its DSN."""
    with scratch_database(server_dsn) as dsn:
        yield dsn


@pytest.fixture
def migrated_db(scratch_db: str, migrations: list[Migration]) -> str:
    """A scratch database with every migration applied; yields its DSN."""
    MigrationRunner(scratch_db, migrations).up()
    return scratch_db


@pytest.fixture
def conn(migrated_db: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit connection to a migrated scratch database."""
    with psycopg.connect(migrated_db, autocommit=True) as connection:
        yield connection


def _redacted(dsn: str) -> str:
    parts = conninfo_to_dict(dsn)
    if "password" in parts:
        parts["password"] = "***"
    return make_conninfo(**{k: str(v) for k, v in parts.items() if v is not None})
