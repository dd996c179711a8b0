"""The reliability oracle's rollup check on the real TimescaleDB: rollups that are a GROUP BY over ``readings``
pass, and a rollup row tampered with in any column the check compares is reported by its table and key."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from ..reliability.oracle import MAX_ROLLUP_KEYS, OracleReport, compare_rollups
from ..rollups import rebuild_rollups

pytestmark = pytest.mark.db

Connection = psycopg.Connection[tuple[Any, ...]]
SYSTEM = UUID("3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01")
PRESSURE = UUID("6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8")
FLOW = UUID("7c2e3d4f-5061-4b72-9c83-a4b5c6d7e8f9")
HOUR = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
MINUTE = HOUR + timedelta(minutes=1)
KEY = f"system_id={SYSTEM} sensor_id={PRESSURE}"


@pytest.fixture
def stored(conn: Connection) -> Connection:
    """Readings of two sensors over three minutes of one hour (values whose float sum depends on the order of
    addition), one sensor in two units, with their rollups."""
    rows = [
        (HOUR + timedelta(seconds=seconds), PRESSURE, value, "bar")
        for seconds, value in [(0, 0.1), (20, 0.2), (40, 0.3), (60, 212.5), (70, 1e-17), (80, 213.0), (125, 7.0)]
    ] + [(MINUTE, FLOW, 40.0, "lpm"), (MINUTE + timedelta(seconds=5), FLOW, 41.0, "bar")]
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO readings (time, system_id, sensor_id, value, unit, quality, job_id)"
            " VALUES (%s, %s, %s, %s, %s, 95, gen_random_uuid())",
            [(time, SYSTEM, sensor, value, unit) for time, sensor, value, unit in rows],
        )
    rebuild_rollups(conn)
    return conn


def test_rollups_kept_as_the_readings_say_pass(stored: Connection) -> None:
    assert compare_rollups(stored) == []
    assert stored.execute("SELECT count(*) FROM readings_1m").fetchone() == (5,)  # the check had rows to compare


def test_a_sum_off_only_in_its_last_bits_passes(stored: Connection) -> None:
    stored.execute(
        "UPDATE readings_1m SET sum = sum * (1 + 1e-12) WHERE sensor_id = %s AND bucket = %s", (PRESSURE, HOUR)
    )

    assert compare_rollups(stored) == []


Tamper = tuple[str, tuple[Any, ...], str]
TAMPERED: dict[str, Tamper] = {
    "a count": (
        "UPDATE readings_1m SET count = count + 1 WHERE sensor_id = %s AND bucket = %s",
        (PRESSURE, MINUTE),
        f"readings_1m {KEY} unit=bar bucket={MINUTE}: count 4, expected 3",
    ),
    "a sum": (
        "UPDATE readings_1h SET sum = sum + 0.001 WHERE sensor_id = %s AND unit = 'bar'",
        (PRESSURE,),
        f"readings_1h {KEY} unit=bar bucket={HOUR}: sum 433.101, expected 433.1",
    ),
    "a minimum": (
        "UPDATE readings_1m SET min = 0.0 WHERE sensor_id = %s AND bucket = %s",
        (PRESSURE, HOUR),
        f"readings_1m {KEY} unit=bar bucket={HOUR}: min 0.0, expected 0.1",
    ),
    "a maximum": (
        "UPDATE readings_1h SET max = 999.0 WHERE sensor_id = %s",
        (PRESSURE,),
        f"readings_1h {KEY} unit=bar bucket={HOUR}: max 999.0, expected 213.0",
    ),
    "the last value": (
        "UPDATE readings_1m SET last_value = 212.5 WHERE sensor_id = %s AND bucket = %s",
        (PRESSURE, MINUTE),
        f"readings_1m {KEY} unit=bar bucket={MINUTE}: last_value 212.5, expected 213.0",
    ),
    "the last time": (
        "UPDATE readings_1m SET last_time = last_time - interval '10 seconds' WHERE sensor_id = %s AND bucket = %s",
        (PRESSURE, MINUTE),
        f"readings_1m {KEY} unit=bar bucket={MINUTE}: last_time 2026-11-20T08:01:10+00:00, expected"
        " 2026-11-20T08:01:20+00:00",
    ),
    "a lost row": (
        "DELETE FROM readings_1m WHERE sensor_id = %s AND unit = 'lpm'",
        (FLOW,),
        f"readings_1m system_id={SYSTEM} sensor_id={FLOW} unit=lpm bucket={MINUTE}: missing (readings have it)",
    ),
    "a row nobody sent": (
        "INSERT INTO readings_1m (system_id, sensor_id, unit, bucket, count, sum, min, max, last_time, last_value)"
        " VALUES (%s, %s, 'bar', %s, 1, 1, 1, 1, %s, 1)",
        (SYSTEM, PRESSURE, HOUR - timedelta(minutes=1), HOUR - timedelta(seconds=1)),
        f"readings_1m {KEY} unit=bar bucket={HOUR - timedelta(minutes=1)}: no readings behind it",
    ),
    "the latest unit": (
        "UPDATE sensor_latest SET unit = 'lpm' WHERE sensor_id = %s",
        (FLOW,),
        f"sensor_latest system_id={SYSTEM} sensor_id={FLOW}: unit 'lpm', expected 'bar'",
    ),
    "a lost latest": (
        "DELETE FROM sensor_latest WHERE sensor_id = %s",
        (PRESSURE,),
        f"sensor_latest {KEY}: missing (readings have it)",
    ),
}


@pytest.mark.parametrize("tamper", TAMPERED.values(), ids=TAMPERED)
def test_a_wrong_rollup_row_is_reported_by_its_table_and_key(stored: Connection, tamper: Tamper) -> None:
    statement, params, reported = tamper
    assert stored.execute(statement, params).rowcount == 1

    assert compare_rollups(stored) == [reported]


def test_the_verdict_fails_on_a_rollup_mismatch_and_lists_a_bounded_number_of_keys(stored: Connection) -> None:
    stored.execute(
        "INSERT INTO readings_1m (system_id, sensor_id, unit, bucket, count, sum, min, max, last_time, last_value)"
        " SELECT %s, %s, 'rpm', b, 1, 1, 1, 1, b, 1"
        " FROM generate_series(%s::timestamptz, %s::timestamptz, interval '1 minute') AS b",
        (SYSTEM, PRESSURE, HOUR - timedelta(days=1), HOUR - timedelta(days=1) + timedelta(minutes=MAX_ROLLUP_KEYS + 4)),
    )

    found = compare_rollups(stored)

    assert len(found) == MAX_ROLLUP_KEYS + 1
    assert found[-1] == "readings_1m: and 5 more rows"
    # By key: the earliest minutes first.
    assert found[0] == f"readings_1m {KEY} unit=rpm bucket={HOUR - timedelta(days=1)}: no readings behind it"
    assert found[1].startswith(f"readings_1m {KEY} unit=rpm bucket={HOUR - timedelta(days=1) + timedelta(minutes=1)}:")
    assert not report_with(found).ok
    assert report_with([]).ok


def report_with(rollup_mismatches: list[str]) -> OracleReport:
    """A verdict with nothing wrong but ``rollup_mismatches``."""
    return OracleReport(
        accepted_batches=1,
        accepted_uploads=0,
        accepted_readings=9,
        in_readings=9,
        in_quarantine=0,
        lost=0,
        duplicated=0,
        unexpected=0,
        job_mismatches=[],
        unfinished_jobs=[],
        rollup_mismatches=rollup_mismatches,
        queue_depth=0,
        dead_letter_depth=0,
        waited_s=0.0,
    )
