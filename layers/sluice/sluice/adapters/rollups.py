"""The rollups' one write: add a set of minute cells to ``readings_1m``, ``readings_1h`` and ``sensor_latest``.

Called by each loader in the transaction that inserted the readings the cells were folded from (the worker's chunk,
the review's replay), so a rollup row holds exactly the readings stored. One statement, one round trip: the cells go
in as arrays, are added to their minutes, folded by hour into the hours, and the newest reading of each sensor
replaces the one kept when it is newer. Adding (never overwriting with a recount) keeps two loaders of one minute
correct: the second waits on the first's row lock and then adds to what it committed.
"""

from typing import Any, Final, LiteralString

import psycopg

from sluice.domain.rollups import MinuteCells

Connection = psycopg.Connection[Any]

# A delta adds its count, sum, min and max to a rollup row, and its newest value wins when it is newer (two readings
# of one sensor never share an instant, so there are no ties).
_ADD_CELLS: Final[LiteralString] = (
    "WITH delta (system_id, sensor_id, unit, bucket, count, sum, min, max, last_time, last_value) AS ("
    " SELECT * FROM unnest(%b::uuid[], %b::uuid[], %b::text[], %b::timestamptz[], %b::int4[], %b::float8[],"
    " %b::float8[], %b::float8[], %b::timestamptz[], %b::float8[])"
    "), minutes AS ("
    " INSERT INTO readings_1m AS r SELECT * FROM delta"
    " ON CONFLICT (system_id, sensor_id, bucket, unit) DO UPDATE SET"
    " count = r.count + excluded.count, sum = r.sum + excluded.sum,"
    " min = least(r.min, excluded.min), max = greatest(r.max, excluded.max),"
    " last_value = CASE WHEN excluded.last_time > r.last_time THEN excluded.last_value ELSE r.last_value END,"
    " last_time = greatest(r.last_time, excluded.last_time)"
    "), hours AS ("
    " INSERT INTO readings_1h AS r"
    " SELECT system_id, sensor_id, unit, time_bucket(INTERVAL '1 hour', bucket) AS hour, sum(count)::int4, sum(sum),"
    " min(min), max(max), max(last_time), last(last_value, last_time)"
    " FROM delta GROUP BY system_id, sensor_id, hour, unit ORDER BY system_id, sensor_id, hour, unit"
    " ON CONFLICT (system_id, sensor_id, bucket, unit) DO UPDATE SET"
    " count = r.count + excluded.count, sum = r.sum + excluded.sum,"
    " min = least(r.min, excluded.min), max = greatest(r.max, excluded.max),"
    " last_value = CASE WHEN excluded.last_time > r.last_time THEN excluded.last_value ELSE r.last_value END,"
    " last_time = greatest(r.last_time, excluded.last_time)"
    ")"
    " INSERT INTO sensor_latest AS s"
    " SELECT DISTINCT ON (system_id, sensor_id) system_id, sensor_id, unit, last_time, last_value"
    " FROM delta ORDER BY system_id, sensor_id, last_time DESC"
    " ON CONFLICT (system_id, sensor_id) DO UPDATE"
    " SET unit = excluded.unit, last_time = excluded.last_time, last_value = excluded.last_value"
    " WHERE excluded.last_time > s.last_time"
)


def add_to_rollups(conn: Connection, cells: MinuteCells) -> None:
    """Add ``cells`` to the rollups, in the caller's transaction."""
    if not cells:
        return
    conn.execute(
        _ADD_CELLS,
        (
            cells.system_ids,
            cells.sensor_ids,
            cells.units,
            cells.buckets,
            cells.counts,
            cells.sums,
            cells.mins,
            cells.maxes,
            cells.last_times,
            cells.last_values,
        ),
    )
