"""The migration runner against the real TimescaleDB: up, down, up again, and refusing what it cannot trust."""

from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from sluice.adapters.migrations import VERSION_TABLE, Migration, MigrationRunner, load_migrations
from sluice.errors import MigrationChecksumError, MigrationError, MigrationFileError
from sluice_tools.migrate import main
from sluice_tools.settings import get_migration_settings

from ..paths import MIGRATIONS_DIR

USER_RELATIONS = """
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p') ORDER BY 1
"""


APPLIED_VERSIONS = sql.SQL("SELECT version, applied_at FROM {} ORDER BY 1").format(sql.Identifier(VERSION_TABLE))


def relations(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [row[0] for row in conn.execute(USER_RELATIONS)]


def test_up_from_empty_down_to_empty_and_up_again(scratch_db: str, migrations: list[Migration]) -> None:
    runner = MigrationRunner(scratch_db, migrations)

    applied = runner.up()
    assert [m.version for m in applied] == [m.version for m in migrations]
    assert {
        "systems",
        "readings",
        "quarantined_readings",
        "ingest_ledger",
        "readings_1m",
        "readings_1h",
        "readings_5m",
        "readings_1d",
        "sensor_latest",
    } <= set(relations(scratch_db))

    reverted = runner.down(0)
    assert [m.version for m in reverted] == sorted((m.version for m in migrations), reverse=True)
    assert relations(scratch_db) == [VERSION_TABLE]
    with psycopg.connect(scratch_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone() == (0,)

    assert [m.version for m in runner.up()] == [m.version for m in migrations]
    assert [a.version for a in runner.applied()] == [m.version for m in migrations]


def test_up_twice_is_a_no_op_that_keeps_data(scratch_db: str, migrations: list[Migration]) -> None:
    runner = MigrationRunner(scratch_db, migrations)
    runner.up()
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        conn.execute("INSERT INTO systems (tenant_id, name) VALUES ('acme', 'press-1')")
        before = conn.execute(APPLIED_VERSIONS).fetchall()

    assert runner.up() == []

    with psycopg.connect(scratch_db) as conn:
        assert conn.execute("SELECT name FROM systems").fetchall() == [("press-1",)]
        assert conn.execute(APPLIED_VERSIONS).fetchall() == before


def test_up_and_down_stop_at_a_target(scratch_db: str, migrations: list[Migration]) -> None:
    runner = MigrationRunner(scratch_db, migrations)

    assert [m.version for m in runner.up(1)] == [1]
    assert "readings_1m" not in relations(scratch_db)
    runner.up()
    assert [m.version for m in runner.down(1)] == [m.version for m in migrations if m.version > 1][::-1]
    assert "readings" in relations(scratch_db)
    with pytest.raises(MigrationError, match=">= 0"):
        runner.down(-1)


def test_a_failing_migration_leaves_no_trace(scratch_db: str, migrations: list[Migration]) -> None:
    broken = Migration(len(migrations) + 1, "broken", "CREATE TABLE half_done (id int); SELECT 1/0;", "")
    runner = MigrationRunner(scratch_db, [*migrations, broken])

    with pytest.raises(psycopg.errors.DivisionByZero):
        runner.up()

    assert "half_done" not in relations(scratch_db)
    assert [a.version for a in runner.applied()] == [m.version for m in migrations]


def test_an_edited_applied_migration_is_refused(scratch_db: str, migrations: list[Migration]) -> None:
    MigrationRunner(scratch_db, migrations).up()
    edited = [Migration(m.version, m.name, m.up_sql + "\n-- edited", m.down_sql) for m in migrations]

    with pytest.raises(MigrationChecksumError, match="edited after it was applied"):
        MigrationRunner(scratch_db, edited).up()


def test_a_database_ahead_of_the_files_is_refused(scratch_db: str, migrations: list[Migration]) -> None:
    MigrationRunner(scratch_db, migrations).up()

    with pytest.raises(MigrationError, match="no file for it"):
        MigrationRunner(scratch_db, migrations[:1]).down(0)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_a.up.sql": "", "0001_a.down.sql": "", "notes.sql": ""}, "expected NNNN_name"),
        ({"0001_a.up.sql": ""}, "has no .down.sql"),
        ({"0002_a.up.sql": "", "0002_a.down.sql": ""}, "expected version 0001"),
    ],
)
def test_misnamed_or_unpaired_files_are_refused(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)

    with pytest.raises(MigrationFileError, match=message):
        load_migrations(tmp_path)


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationFileError, match="does not exist"):
        load_migrations(tmp_path / "nowhere")


def test_the_command_line_moves_the_schema(
    scratch_db: str, migrations: list[Migration], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    names = [f"{migration.version:04d}_{migration.name}" for migration in migrations]
    monkeypatch.setenv("SLUICE_DB_DSN", scratch_db)
    monkeypatch.setenv("SLUICE_MIGRATIONS_DIR", str(MIGRATIONS_DIR))
    get_migration_settings.cache_clear()
    try:
        assert main(["status"]) == 0
        assert "0001_core_schema: pending" in capsys.readouterr().out
        assert main(["up"]) == 0
        assert "applied 0001_core_schema" in capsys.readouterr().out
        assert main(["up"]) == 0
        assert "schema is up to date" in capsys.readouterr().out
        assert main(["down"]) == 0
        assert capsys.readouterr().out.strip() == f"reverted {names[-1]}"
        assert main(["down", "--to", "0"]) == 0
        assert capsys.readouterr().out.split("\n")[:-1] == [f"reverted {name}" for name in reversed(names[:-1])]
        assert main(["down"]) == 0
        assert "nothing reverted" in capsys.readouterr().out
    finally:
        get_migration_settings.cache_clear()


def test_the_command_line_reports_an_unreachable_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLUICE_DB_DSN", "postgresql://postgres@127.0.0.1:1/sluice?connect_timeout=2")
    monkeypatch.setenv("SLUICE_MIGRATIONS_DIR", str(MIGRATIONS_DIR))
    get_migration_settings.cache_clear()
    try:
        assert main(["up"]) == 1
        assert capsys.readouterr().err.startswith("sluice-migrate: ")
    finally:
        get_migration_settings.cache_clear()


IDENTITY = 5  # 0005_reading_identity: readings keyed by (system_id, sensor_id, time)
INSERT_READING = (
    "INSERT INTO readings (time, system_id, sensor_id, value, unit, quality, job_id)"
    " VALUES ('2026-11-22T10:00:00Z', %s, %s, 1, 'bar', 90, %s)"
)


def test_the_reading_identity_migration_keeps_every_reading_both_ways(
    scratch_db: str, migrations: list[Migration]
) -> None:
    runner = MigrationRunner(scratch_db, migrations)
    runner.up(IDENTITY - 1)
    sensor, intruder = uuid4(), uuid4()
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        for _ in range(3):
            conn.execute(INSERT_READING, (uuid4(), uuid4(), uuid4()))
        conn.execute(INSERT_READING, (uuid4(), sensor, uuid4()))

    runner.up(IDENTITY)
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (4,)
        conn.execute(INSERT_READING, (intruder, sensor, uuid4()))  # the same sensor and instant, another system

    # The old index cannot hold both readings: the down migration refuses rather than delete one of them.
    with pytest.raises(psycopg.errors.RaiseException, match="held by more than one system"):
        runner.down(IDENTITY - 1)
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (5,)
        conn.execute("DELETE FROM readings WHERE system_id = %s", (intruder,))

    assert [m.version for m in runner.down(IDENTITY - 1)] == [IDENTITY]
    with psycopg.connect(scratch_db) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (4,)


RAW_CUT = 6  # 0006_quarantine_raw_cut: the size and SHA-256 of a raw reading kept only in part
INSERT_QUARANTINED = (
    "INSERT INTO quarantined_readings (tenant_id, job_id, raw, reason) VALUES ('demo', %s, %s, 'parse_error')"
    " RETURNING id"
)


def test_the_raw_cut_migration_describes_cut_rows_and_keeps_every_row_both_ways(
    scratch_db: str, migrations: list[Migration]
) -> None:
    runner = MigrationRunner(scratch_db, migrations)
    runner.up(RAW_CUT - 1)
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        conn.execute(INSERT_QUARANTINED, (uuid4(), Jsonb("x" * 100)))

    runner.up(RAW_CUT)
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        # A row written before is whole; a cut row says how large the whole was and what its hash is, both or neither.
        assert conn.execute("SELECT raw_bytes, raw_sha256 FROM quarantined_readings").fetchall() == [(None, None)]
        row_id = conn.execute(INSERT_QUARANTINED, (uuid4(), Jsonb("x" * 10))).fetchone()
        conn.execute(
            "UPDATE quarantined_readings SET raw_bytes = %s, raw_sha256 = %s WHERE id = %s",
            (1 << 32, "0" * 64, row_id[0] if row_id else None),
        )
        for cut in [(1 << 32, None), (None, "0" * 64), (0, "0" * 64), (10, "A" * 64), (10, "0" * 63)]:
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(
                    "INSERT INTO quarantined_readings (tenant_id, job_id, reason, raw_bytes, raw_sha256)"
                    " VALUES ('demo', %s, 'parse_error', %s, %s)",
                    (uuid4(), *cut),
                )

    assert [m.version for m in runner.down(RAW_CUT - 1)] == [RAW_CUT]
    with psycopg.connect(scratch_db) as conn:
        assert conn.execute("SELECT count(*) FROM quarantined_readings").fetchone() == (2,)
