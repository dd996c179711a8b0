"""A small SQL migration runner for psycopg 3: numbered up/down files, applied versions recorded in the database.

Files are named ``NNNN_description.up.sql`` and ``NNNN_description.down.sql``. Each migration runs in its own
transaction together with its bookkeeping row, so a failed migration leaves no trace. A session advisory lock
keeps two runners (two deploys, two test sessions) from migrating the same database at once.
"""

import hashlib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import LiteralString

import psycopg
from psycopg import sql

from sluice.errors import MigrationChecksumError, MigrationError, MigrationFileError

VERSION_TABLE = "sluice_schema_migrations"
# The newest migration this code needs (the functions ship without infra/; the deep health check compares).
SCHEMA_VERSION = 10
# Arbitrary but fixed: the advisory lock key every Sluice migration runner takes.
_LOCK_KEY = 0x51_1C_E0
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<direction>up|down)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change and its inverse."""

    version: int
    name: str
    up_sql: str
    down_sql: str

    @property
    def checksum(self) -> str:
        """Fingerprint of the up script, to notice an applied migration whose file was edited afterwards."""
        return hashlib.sha256(self.up_sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A version recorded as applied."""

    version: int
    name: str
    checksum: str
    applied_at: datetime


def load_migrations(directory: Path) -> list[Migration]:
    """Read the migrations in ``directory``: paired up/down files, versions 1..n without gaps."""
    if not directory.is_dir():
        raise MigrationFileError(f"migrations directory {directory} does not exist")
    scripts: dict[tuple[int, str], dict[str, str]] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationFileError(f"{path.name}: expected NNNN_name.up.sql or NNNN_name.down.sql")
        key = (int(match["version"]), match["name"])
        scripts.setdefault(key, {})[match["direction"]] = path.read_text(encoding="utf-8")

    migrations: list[Migration] = []
    for expected_version, ((version, name), pair) in enumerate(sorted(scripts.items()), start=1):
        if version != expected_version:
            raise MigrationFileError(f"migration {version:04d}_{name}: expected version {expected_version:04d}")
        if set(pair) != {"up", "down"}:
            missing = ({"up", "down"} - set(pair)).pop()
            raise MigrationFileError(f"migration {version:04d}_{name} has no .{missing}.sql file")
        migrations.append(Migration(version, name, pair["up"], pair["down"]))
    return migrations


class MigrationRunner:
    """Applies and reverts ``migrations`` on the database at ``conninfo``."""

    def __init__(self, conninfo: str, migrations: Sequence[Migration]) -> None:
        self._conninfo = conninfo
        self._migrations = {m.version: m for m in migrations}

    def applied(self) -> list[AppliedMigration]:
        """Return the versions recorded as applied, oldest first."""
        with self._connect() as conn:
            self._ensure_version_table(conn)
            return self._applied(conn)

    def up(self, target: int | None = None) -> list[Migration]:
        """Apply every pending migration up to ``target`` (default: the newest); return what was applied."""
        target = max(self._migrations, default=0) if target is None else target
        done: list[Migration] = []
        with self._connect() as conn, _advisory_lock(conn):
            applied = self._check_history(conn)
            for version in sorted(self._migrations):
                if version > target or version in applied:
                    continue
                migration = self._migrations[version]
                _run_with_record(
                    conn,
                    migration.up_sql,
                    "INSERT INTO {} (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
                done.append(migration)
        return done

    def down(self, target: int) -> list[Migration]:
        """Revert applied migrations newer than ``target``, newest first; return what was reverted."""
        if target < 0:
            raise MigrationError(f"target version must be >= 0, got {target}")
        done: list[Migration] = []
        with self._connect() as conn, _advisory_lock(conn):
            applied = self._check_history(conn)
            for version in sorted(applied, reverse=True):
                if version <= target:
                    break
                migration = self._migrations[version]
                _run_with_record(conn, migration.down_sql, "DELETE FROM {} WHERE version = %s", (version,))
                done.append(migration)
        return done

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self._conninfo, autocommit=True)

    def _check_history(self, conn: psycopg.Connection[tuple[object, ...]]) -> dict[int, AppliedMigration]:
        """Refuse to move when the database holds versions we have no file for, or files were edited."""
        self._ensure_version_table(conn)
        applied = {a.version: a for a in self._applied(conn)}
        for version, record in applied.items():
            migration = self._migrations.get(version)
            if migration is None:
                raise MigrationError(
                    f"database has migration {version:04d}_{record.name} applied but there is no file for it"
                )
            if migration.checksum != record.checksum:
                raise MigrationChecksumError(
                    f"migration {version:04d}_{record.name} was edited after it was applied; "
                    "add a new migration instead"
                )
        return applied

    @staticmethod
    def _ensure_version_table(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " version integer PRIMARY KEY,"
                " name text NOT NULL,"
                " checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(sql.Identifier(VERSION_TABLE))
        )

    @staticmethod
    def _applied(conn: psycopg.Connection[tuple[object, ...]]) -> list[AppliedMigration]:
        rows = conn.execute(
            sql.SQL("SELECT version, name, checksum, applied_at FROM {} ORDER BY version").format(
                sql.Identifier(VERSION_TABLE)
            )
        ).fetchall()
        return [AppliedMigration(*row) for row in rows]  # type: ignore[arg-type]


@contextmanager
def _advisory_lock(conn: psycopg.Connection[tuple[object, ...]]) -> Iterator[None]:
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _run_with_record(
    conn: psycopg.Connection[tuple[object, ...]], script: str, record: LiteralString, params: tuple[object, ...]
) -> None:
    """Run a migration script and its bookkeeping statement in one transaction: both happen or neither."""
    with conn.transaction():
        # Migration files are trusted project source, run as written (several statements, dollar quoting).
        conn.execute(sql.SQL(script))
        conn.execute(sql.SQL(record).format(sql.Identifier(VERSION_TABLE)), params)
