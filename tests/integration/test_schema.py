"""The migrated schema on the real TimescaleDB: the hypertable, its indexes, and constraints that refuse bad rows."""

import re
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import psycopg
import pytest
from psycopg.types.json import Jsonb

from sluice.adapters.migrations import Migration, MigrationRunner

Conn = psycopg.Connection[tuple[object, ...]]


def insert_reading(conn: Conn, **overrides: object) -> None:
    row: dict[str, object] = {
        "time": datetime(2026, 11, 22, 10, tzinfo=UTC),
        "system_id": uuid4(),
        "sensor_id": uuid4(),
        "value": 250.0,
        "unit": "bar",
        "quality": 95,
        "job_id": uuid4(),
    }
    row.update(overrides)
    conn.execute(
        "INSERT INTO readings (time, system_id, sensor_id, value, unit, quality, job_id)"
        " VALUES (%(time)s, %(system_id)s, %(sensor_id)s, %(value)s, %(unit)s, %(quality)s, %(job_id)s)",
        row,
    )


def insert_quarantined(conn: Conn, **overrides: object) -> None:
    row: dict[str, object] = {
        "tenant_id": "acme",
        "job_id": uuid4(),
        "raw": Jsonb({"value": "x"}),
        "reason": "parse_error",
        "review_status": "pending",
        "reviewed_by": None,
        "reviewed_at": None,
    }
    row.update(overrides)
    conn.execute(
        "INSERT INTO quarantined_readings (tenant_id, job_id, raw, reason, review_status, reviewed_by, reviewed_at)"
        " VALUES (%(tenant_id)s, %(job_id)s, %(raw)s, %(reason)s, %(review_status)s, %(reviewed_by)s,"
        " %(reviewed_at)s)",
        row,
    )


def test_readings_and_its_rollups_are_hypertables(conn: Conn) -> None:
    # Raw readings in 7-day chunks; the rollups in longer ones (fewer, larger rows), so retention drops whole chunks.
    rows = conn.execute(
        "SELECT h.hypertable_name, d.column_name, d.time_interval"
        " FROM timescaledb_information.hypertables h"
        " JOIN timescaledb_information.dimensions d USING (hypertable_schema, hypertable_name) ORDER BY 1"
    ).fetchall()

    assert rows == [
        ("readings", "time", timedelta(days=7)),
        ("readings_1h", "bucket", timedelta(days=365)),
        ("readings_1m", "bucket", timedelta(days=30)),
    ]


def test_readings_has_only_the_indexes_we_chose(conn: Conn) -> None:
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'readings' ORDER BY 1"
    ).fetchall()

    assert [name for name, _ in indexes] == ["readings_system_sensor_time_key", "readings_system_time_idx"]
    assert "UNIQUE INDEX readings_system_sensor_time_key ON public.readings USING btree" in str(indexes[0][1])
    assert '(system_id, sensor_id, "time")' in str(indexes[0][1])


def test_a_second_reading_for_the_same_system_sensor_and_instant_is_refused(conn: Conn) -> None:
    system, sensor = uuid4(), uuid4()
    insert_reading(conn, system_id=system, sensor_id=sensor)

    with pytest.raises(psycopg.errors.UniqueViolation):
        insert_reading(conn, system_id=system, sensor_id=sensor, value=1.0)
    inserted = conn.execute(
        "INSERT INTO readings (time, system_id, sensor_id, value, unit, quality, job_id)"
        " VALUES ('2026-11-22T10:00:00Z', %s, %s, 1, 'bar', 90, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (system, sensor, uuid4()),
    ).fetchall()
    assert inserted == []


def test_the_same_sensor_and_instant_under_two_systems_are_two_readings(conn: Conn) -> None:
    # Systems belong to one tenant each: one tenant's sensor ids can never block or shadow another's readings.
    sensor = uuid4()
    insert_reading(conn, system_id=uuid4(), sensor_id=sensor)
    insert_reading(conn, system_id=uuid4(), sensor_id=sensor)

    assert conn.execute("SELECT count(*) FROM readings WHERE sensor_id = %s", (sensor,)).fetchone() == (2,)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"unit": "psi"}, psycopg.errors.CheckViolation),
        ({"quality": 101}, psycopg.errors.CheckViolation),
        ({"quality": -1}, psycopg.errors.CheckViolation),
        ({"value": None}, psycopg.errors.NotNullViolation),
        ({"job_id": None}, psycopg.errors.NotNullViolation),
        ({"time": None}, psycopg.errors.NotNullViolation),
    ],
)
def test_readings_refuse_rows_the_rules_would_never_pass(
    conn: Conn, overrides: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        insert_reading(conn, **overrides)


def test_chunks_follow_the_seven_day_interval(conn: Conn) -> None:
    # Chunks are aligned to the Unix epoch, a Thursday, as is 2026-01-01: days 0-6, 7-13 and 14-20.
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for day in range(0, 21, 3):
        insert_reading(conn, time=start + timedelta(days=day))

    chunks = conn.execute(
        "SELECT range_start, range_end FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'readings' ORDER BY range_start"
    ).fetchall()

    week = timedelta(days=7)
    assert chunks == [(start + n * week, start + (n + 1) * week) for n in range(3)]


def test_one_sensors_quarantined_rows_of_a_tenant_are_listed_and_counted_through_an_index(conn: Conn) -> None:
    # Given 20,000 quarantined rows of a tenant over 200 sensors, a fifth of them with no sensor (unreadable)
    sensors = [uuid4() for _ in range(200)]
    conn.execute(
        "INSERT INTO quarantined_readings (tenant_id, job_id, sensor_id, raw, reason)"
        " SELECT 'acme', %s, CASE WHEN n %% 5 = 0 THEN NULL ELSE (%s::uuid[])[1 + n %% 200] END, '{}', 'parse_error'"
        " FROM generate_series(1, 20000) AS n",
        (uuid4(), sensors),
    )
    conn.execute("ANALYZE quarantined_readings")

    # When one sensor's rows are listed (newest first) and counted, as GET /api/v1/quarantine?sensor_id= does
    where = "FROM quarantined_readings WHERE tenant_id = 'acme' AND sensor_id = %s"
    listing = conn.execute(f"EXPLAIN SELECT id {where} ORDER BY id DESC LIMIT 101", (sensors[1],)).fetchall()
    count = conn.execute(f"EXPLAIN SELECT count(*) {where}", (sensors[1],)).fetchall()
    (indexed,) = conn.execute(
        "SELECT reltuples FROM pg_class WHERE relname = 'quarantined_readings_tenant_sensor_idx'"
    ).fetchall()

    # Then both read the tenant's rows of that sensor through its index, which holds only rows with a sensor
    assert "quarantined_readings_tenant_sensor_idx" in str(listing)
    assert "quarantined_readings_tenant_sensor_idx" in str(count)
    assert indexed == (16_000,)


@pytest.mark.parametrize(
    ("overrides", "constraint"),
    [
        ({"reason": "bad_vibes"}, "quarantined_readings_reason_check"),
        (
            {"review_status": "maybe", "reviewed_by": "alice", "reviewed_at": datetime.now(UTC)},
            "quarantined_readings_review_status_check",
        ),
        ({"review_status": "approved"}, "quarantined_readings_review_recorded"),
        ({"reviewed_by": "alice"}, "quarantined_readings_review_recorded"),
        (
            {"review_status": "fixed", "reviewed_by": "alice", "reviewed_at": None},
            "quarantined_readings_review_recorded",
        ),
    ],
)
def test_quarantine_constraints_refuse_bad_rows(conn: Conn, overrides: dict[str, object], constraint: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        insert_quarantined(conn, **overrides)

    assert caught.value.diag.constraint_name == constraint


def test_quarantine_accepts_every_reason_and_a_recorded_review(conn: Conn) -> None:
    reasons = [
        "invalid_unit",
        "out_of_range",
        "low_quality",
        "invalid_timestamp",
        "system_not_found",
        "duplicate",
        "parse_error",
    ]
    for reason in reasons:
        insert_quarantined(conn, reason=reason)
    insert_quarantined(conn, review_status="rejected", reviewed_by="alice", reviewed_at=datetime.now(UTC))

    counts = conn.execute("SELECT review_status, count(*) FROM quarantined_readings GROUP BY 1 ORDER BY 1").fetchall()
    assert counts == [("pending", 7), ("rejected", 1)]


@pytest.mark.parametrize(
    ("counts", "ok"),
    [
        ((10, 8, 2, 1), True),
        ((10, 8, 1, 0), False),
        ((10, 8, 2, 3), False),
        ((0, 0, 0, 0), True),
    ],
)
def test_ledger_counts_must_add_up(conn: Conn, counts: tuple[int, int, int, int], ok: bool) -> None:
    statement = (
        "INSERT INTO ingest_ledger (job_id, chunk_no, tenant_id, total_readings, inserted_readings,"
        " quarantined_readings, duplicate_readings) VALUES (%s, 0, 'acme', %s, %s, %s, %s)"
    )
    if ok:
        conn.execute(statement, (uuid4(), *counts))
    else:
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(statement, (uuid4(), *counts))


def test_a_chunk_is_recorded_once_per_job(conn: Conn) -> None:
    job = uuid4()
    statement = "INSERT INTO ingest_ledger (job_id, chunk_no, tenant_id) VALUES (%s, %s, 'acme')"
    conn.execute(statement, (job, 0))
    conn.execute(statement, (job, 1))

    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(statement, (job, 0))


def test_system_names_are_unique_per_tenant(conn: Conn) -> None:
    conn.execute("INSERT INTO systems (tenant_id, name) VALUES ('acme', 'press-1'), ('globex', 'press-1')")

    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO systems (tenant_id, name) VALUES ('acme', 'press-1')")


def test_the_rollup_migration_adds_the_readings_stored_before_it(scratch_db: str, migrations: list[Migration]) -> None:
    # Migration 0009 starts the rollups from the readings already stored: an upgraded database answers the same as
    # one that had them from the start.
    runner = MigrationRunner(scratch_db, migrations)
    runner.up(8)
    system, sensor = uuid4(), uuid4()
    hour = datetime(2026, 11, 22, 10, tzinfo=UTC)
    with psycopg.connect(scratch_db, autocommit=True) as conn:
        for minute, second, value in [(0, 5, 10.0), (0, 50, 30.0), (20, 0, 20.0), (59, 59, 40.0), (60, 0, 99.0)]:
            insert_reading(
                conn,
                time=hour + timedelta(minutes=minute, seconds=second),
                system_id=system,
                sensor_id=sensor,
                value=value,
            )
    runner.up()

    with psycopg.connect(scratch_db) as conn:
        minutes = conn.execute(
            "SELECT bucket, count, sum, min, max, last_time, last_value FROM readings_1m ORDER BY bucket"
        ).fetchall()
        hours = conn.execute("SELECT bucket, count, sum, min, max, last_value FROM readings_1h ORDER BY bucket")
        latest = conn.execute("SELECT unit, last_time, last_value FROM sensor_latest").fetchall()
        hourly = hours.fetchall()
        license_ = conn.execute("SHOW timescaledb.license").fetchone()
        policies = conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'"
        ).fetchall()
    assert minutes == [
        (hour, 2, 40.0, 10.0, 30.0, hour + timedelta(seconds=50), 30.0),
        (hour + timedelta(minutes=20), 1, 20.0, 20.0, 20.0, hour + timedelta(minutes=20), 20.0),
        (hour + timedelta(minutes=59), 1, 40.0, 40.0, 40.0, hour + timedelta(minutes=59, seconds=59), 40.0),
        (hour + timedelta(hours=1), 1, 99.0, 99.0, 99.0, hour + timedelta(hours=1), 99.0),
    ]
    assert hourly == [(hour, 4, 100.0, 10.0, 40.0, 40.0), (hour + timedelta(hours=1), 1, 99.0, 99.0, 99.0, 99.0)]
    assert latest == [("bar", hour + timedelta(hours=1), 99.0)]
    if license_ == ("apache",):
        assert policies == []  # MaintenanceFunction keeps the retention on this build


def licensed_statements(script: str) -> list[str]:
    """The statements of a migration's ``timescale`` branch, as plain SQL."""
    branch = re.search(r"= 'timescale' THEN(?P<body>.*?)\n\s*ELSE\n", script, re.DOTALL)
    assert branch is not None, "migration has no timescale branch"
    body = re.sub(r"EXECUTE \$sql\$(?P<inner>.*?)\$sql\$;", r"\g<inner>;", branch["body"], flags=re.DOTALL)
    body = re.sub(r"EXECUTE '(?P<inner>[^']*)';", r"\g<inner>;", body)
    body = re.sub(r"\bPERFORM\b", "SELECT", body)
    body = re.sub(r"^\s*--.*$", "", body, flags=re.MULTILINE)
    return [s.strip() for s in body.split(";") if s.strip()]


@pytest.mark.parametrize("name", ["rollup_and_lifecycle", "minute_rollups"])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_the_timescale_branch_fails_here_only_for_want_of_the_license(
    conn: Conn, migrations: list[Migration], direction: str, name: str
) -> None:
    # This machine's TimescaleDB is the Apache build, so the licensed branch never runs in these tests. Each of
    # its statements must still be well formed and name functions and options that exist: with the Apache build
    # that shows as "not supported under the current license", where a typo would be a syntax or lookup error.
    script = next(m for m in migrations if m.name == name)
    statements = licensed_statements(script.up_sql if direction == "up" else script.down_sql)
    insert_reading(conn)
    # The schema here is the newest, which has no readings_hourly: give each branch the relation it expects there
    # (a continuous aggregate looks like a materialized view to DROP; the license is checked before any name).
    if (name, direction) == ("minute_rollups", "up"):
        conn.execute("CREATE MATERIALIZED VIEW readings_hourly AS SELECT 1 AS bucket")
    elif direction == "up" or name == "minute_rollups":
        conn.execute("CREATE VIEW readings_hourly AS SELECT 1 AS bucket")

    assert len(statements) >= 2
    for statement in statements:
        if statement.startswith("DROP"):
            conn.execute(statement)
            continue
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="license"):
            conn.execute(statement)
