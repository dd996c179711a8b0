"""The rollups as a GROUP BY over ``readings`` computes them: the property test's and the oracle's expectation, and
a way for tests that insert readings with SQL to give them the rollups the loaders would have kept."""

from typing import Any, Final, LiteralString

import psycopg

Connection = psycopg.Connection[Any]

#: readings_1m as it must be: one row per system, sensor, unit and minute of ``readings``.
EXPECTED_1M: Final[LiteralString] = (
    "SELECT system_id, sensor_id, unit, time_bucket(INTERVAL '1 minute', time) AS bucket, count(*) AS count,"
    " sum(value) AS sum, min(value) AS min, max(value) AS max, max(time) AS last_time, last(value, time) AS last_value"
    " FROM readings GROUP BY 1, 2, 3, 4"
)
#: readings_1h as it must be, straight from ``readings`` (not from readings_1m, which is what is being checked).
EXPECTED_1H: Final[LiteralString] = EXPECTED_1M.replace("'1 minute'", "'1 hour'")
#: sensor_latest as it must be.
EXPECTED_LATEST: Final[LiteralString] = (
    "SELECT DISTINCT ON (system_id, sensor_id) system_id, sensor_id, unit, time AS last_time, value AS last_value"
    " FROM readings ORDER BY system_id, sensor_id, time DESC"
)
_COLUMNS: Final = "system_id, sensor_id, unit, bucket, count, sum, min, max, last_time, last_value"


def rebuild_rollups(conn: Connection) -> None:
    """Replace the rollups with the GROUP BY of ``readings``: for tests that insert readings with plain SQL."""
    with conn.transaction():
        conn.execute("TRUNCATE readings_1m, readings_1h, sensor_latest")
        conn.execute(f"INSERT INTO readings_1m ({_COLUMNS}) {EXPECTED_1M}")
        conn.execute(f"INSERT INTO readings_1h ({_COLUMNS}) {EXPECTED_1H}")
        conn.execute(f"INSERT INTO sensor_latest (system_id, sensor_id, unit, last_time, last_value) {EXPECTED_LATEST}")
