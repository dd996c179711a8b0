"""TimescaleDB's side of ReadingsFunction: a system's readings and rollups as pages of JSON, and its sensors.

Each resolution reads the table whose key serves it, so that the window and the cursor are index conditions and
``ORDER BY .. LIMIT`` stops the scan after one page:

- ``raw``: ``readings`` through its unique index ``(system_id, sensor_id, time)``;
- ``1m`` and ``1h``: ``readings_1m`` and ``readings_1h`` through their keys ``(system_id, sensor_id, bucket, unit)``;
- ``5m`` and ``1d``: ``GROUP BY time_bucket`` over ``readings_1m`` and ``readings_1h`` read the same way (not the
  views ``readings_5m`` and ``readings_1d``, which are there for SQL users: a range on a view's bucket is a filter
  on ``time_bucket(bucket)``, not an index condition on the stored ``bucket``).

The database writes each point's JSON text, and the page is those texts joined: converting 10,000 rows to Python
objects and serializing them with pydantic costs several times the query itself, while fetching the texts costs
about what fetching the bare columns does (``tests/bench/bench_readings.py`` measures all three). PostgreSQL writes
timestamps in the session's time zone, which the connector sets to UTC, as ``2026-11-20T08:00:00+00:00``, and
doubles in their shortest exact form.
"""

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, LiteralString
from uuid import UUID

import psycopg
from psycopg import sql

from sluice.adapters.quarantine import database_faults
from sluice.domain.readings import PageText, Position, ReadingsPlan, ReadingsStore, SensorRow
from sluice.models.readings_api import Resolution

_SILENT_AFTER: LiteralString = "SELECT silent_after_seconds FROM systems WHERE tenant_id = %s AND id = %s"

# Each point's JSON is written with || on the columns' text: twice as fast as json_build_object, which looks up each
# argument's output function per row. Sensor and job ids are UUIDs, the unit one of four CHECKed words, so none needs
# escaping; timestamps go through to_json for RFC 3339 (their text would have a space for the "T"); and values are
# finite by the reading rules (out_of_range refuses NaN and infinities), so float8's text is a JSON number.
_RAW_POINT: Final = sql.SQL(
    """'{"sensor_id":"' || sensor_id::text || '","time":' || to_json(time)::text || ',"value":' || value::text"""
    """ || ',"unit":"' || unit || '","quality":' || quality::text || ',"job_id":"' || job_id::text || '"}'"""
)
# A stored rollup row is a point as it is.
_STORED_POINT: Final = sql.SQL(
    """'{"sensor_id":"' || sensor_id::text || '","time":' || to_json(bucket)::text || ',"unit":"' || unit"""
    """ || '","count":' || count::text || ',"min":' || min::text || ',"max":' || max::text"""
    """ || ',"avg":' || (sum / count)::text || ',"last":' || last_value::text || '}'"""
)
# Several stored rows (minutes of 5 minutes, hours of a day) make one point ({{ }}: braces of the JSON, not fields).
_GROUPED_POINT: Final = sql.SQL(
    """'{{"sensor_id":"' || sensor_id::text || '","time":' || to_json(time_bucket({width}, bucket))::text"""
    """ || ',"unit":"' || unit || '","count":' || sum(count)::text || ',"min":' || min(min)::text"""
    """ || ',"max":' || max(max)::text || ',"avg":' || (sum(sum) / sum(count))::text"""
    """ || ',"last":' || last(last_value, last_time)::text || '}}'"""
)
# Resolution -> (the table read, the bucket width a GROUP BY rolls its rows into; None: its rows are the points).
_SOURCES: Final[dict[Resolution, tuple[str, str | None]]] = {
    Resolution.MINUTE: ("readings_1m", None),
    Resolution.FIVE_MINUTES: ("readings_1m", "5 minutes"),
    Resolution.HOUR: ("readings_1h", None),
    Resolution.DAY: ("readings_1h", "1 day"),
}

_SENSORS: LiteralString = (
    "SELECT l.sensor_id, l.unit, l.last_value, l.last_time,"
    " (SELECT coalesce(sum(m.count), 0) FROM readings_1m AS m"
    "  WHERE m.system_id = l.system_id AND m.sensor_id = l.sensor_id AND m.bucket >= %(hour_ago)s),"
    " (SELECT coalesce(sum(m.count), 0) FROM readings_1m AS m"
    "  WHERE m.system_id = l.system_id AND m.sensor_id = l.sensor_id AND m.bucket >= %(day_ago)s)"
    " FROM sensor_latest AS l WHERE l.system_id = %(system_id)s ORDER BY l.sensor_id"
)


def page_query(plan: ReadingsPlan) -> tuple[sql.Composed, dict[str, Any]]:
    """The statement and parameters of one planned page: one row per point, its JSON text, ``limit + 1`` rows at
    most (the one past the page tells that more follow)."""
    params: dict[str, Any] = {
        "system_id": plan.system_id,
        "sensor_id": plan.sensor_id,
        "start": plan.bucket_start,
        "end": plan.bucket_end,
        "fetch": plan.limit + 1,
    }
    sensor = sql.SQL("") if plan.sensor_id is None else sql.SQL(" AND sensor_id = %(sensor_id)s")
    if plan.after is not None:
        params |= {"after_sensor": plan.after.sensor_id, "after_time": plan.after.time, "after_unit": plan.after.unit}
    if plan.resolution is Resolution.RAW:
        after = sql.SQL("" if plan.after is None else " AND (sensor_id, time) > (%(after_sensor)s, %(after_time)s)")
        query = sql.SQL(
            "SELECT {point} FROM readings WHERE system_id = %(system_id)s{sensor}"
            " AND time >= %(start)s AND time < %(end)s{after} ORDER BY sensor_id, time LIMIT %(fetch)s"
        ).format(point=_RAW_POINT, sensor=sensor, after=after)
        return query, params
    table, width = _SOURCES[plan.resolution]
    if width is None:
        after = sql.SQL(
            ""
            if plan.after is None
            else " AND (sensor_id, bucket, unit) > (%(after_sensor)s, %(after_time)s, %(after_unit)s)"
        )
        query = sql.SQL(
            "SELECT {point} FROM {table} WHERE system_id = %(system_id)s{sensor}"
            " AND bucket >= %(start)s AND bucket < %(end)s{after} ORDER BY sensor_id, bucket, unit LIMIT %(fetch)s"
        ).format(point=_STORED_POINT, table=sql.Identifier(table), sensor=sensor, after=after)
        return query, params
    # The stored rows of the page's first point start at its bucket: the range on the stored key skips the points
    # before it (an index condition), and HAVING the few rows of that bucket of other units already shown.
    having: sql.Composable
    if plan.after is None:
        after, having = sql.SQL(""), sql.SQL("")
    else:
        after = sql.SQL(" AND (sensor_id, bucket) >= (%(after_sensor)s, %(after_time)s)")
        having = sql.SQL(
            " HAVING (sensor_id, time_bucket({width}, bucket), unit)"
            " > (%(after_sensor)s, %(after_time)s, %(after_unit)s)"
        ).format(width=sql.Literal(width))
    query = sql.SQL(
        "SELECT {point} FROM {table} WHERE system_id = %(system_id)s{sensor}"
        " AND bucket >= %(start)s AND bucket < %(end)s{after}"
        " GROUP BY sensor_id, time_bucket({width}, bucket), unit{having}"
        " ORDER BY sensor_id, time_bucket({width}, bucket), unit LIMIT %(fetch)s"
    ).format(
        point=_GROUPED_POINT.format(width=sql.Literal(width)),
        table=sql.Identifier(table),
        sensor=sensor,
        after=after,
        width=sql.Literal(width),
        having=having,
    )
    return query, params


class TimescaleReadingsStore(ReadingsStore):
    """Systems' readings, rollups and sensors, read as ``sluice_reader``; each method is scoped by its arguments."""

    def __init__(self, connection: Callable[[], psycopg.Connection[Any]]) -> None:
        self._connection = connection

    def silent_after(self, tenant_id: str, system_id: UUID) -> int | None:
        """The tenant's system's silence setting; None when the tenant has no such system."""
        with database_faults("reading a system"):
            row = self._connection().execute(_SILENT_AFTER, (tenant_id, system_id)).fetchone()
        return None if row is None else int(row[0])

    def page(self, plan: ReadingsPlan) -> PageText:
        """One page's points as a JSON array's text, and the position of its last point when more follow."""
        query, params = page_query(plan)
        with database_faults("reading the system's readings"):
            texts: list[str] = [row[0] for row in self._connection().execute(query, params)]
        shown = texts[: plan.limit]
        following = None
        if len(texts) > plan.limit:
            # One small point parsed back, rather than every row's key converted: the page's last.
            last = json.loads(shown[-1])
            following = Position(UUID(last["sensor_id"]), datetime.fromisoformat(last["time"]), last.get("unit", ""))
            if plan.resolution is Resolution.RAW:
                following = Position(following.sensor_id, following.time)
        return PageText(items_json=f"[{','.join(shown)}]", following=following)

    def sensors(self, system_id: UUID, hour_ago: datetime, day_ago: datetime) -> list[SensorRow]:
        """Every sensor of the system, by sensor id, with its readings of the minutes from each moment on."""
        params = {"system_id": system_id, "hour_ago": hour_ago, "day_ago": day_ago}
        with database_faults("reading the system's sensors"):
            rows = self._connection().execute(_SENSORS, params).fetchall()
        return [
            SensorRow(
                sensor_id=sensor_id,
                unit=unit,
                last_value=last_value,
                last_time=last_time,
                readings_last_hour=int(hour),
                readings_last_day=int(day),
            )
            for sensor_id, unit, last_value, last_time, hour, day in rows
        ]
