"""What a set of newly stored readings adds to the rollups: one cell per system, sensor, unit and minute.

The loaders (the worker's chunk, the review's replay) fold the readings they have just inserted into cells and hand
them to the database in the same transaction as the readings, where each cell is added to ``readings_1m`` (and, by
hour, to ``readings_1h``; its newest reading to ``sensor_latest``). Adding, never recomputing: two chunks loading
the same minute at once each add their own readings, and the row lock of the upsert orders them.

Rows here are rows of ``readings`` in the worker's column order (time, sensor_id, value, unit, quality, system_id,
job_id), with ``time`` in UTC as the validator gives it.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

#: A row of ``readings`` in the worker's column order (sluice.adapters.timescale.READING_COLUMNS).
ReadingRow = tuple[datetime, UUID, float, str, int, UUID, UUID]


class _Cell:
    """One minute of one sensor: its readings folded as they come."""

    __slots__ = ("bucket", "count", "last_time", "last_value", "max", "min", "sensor_id", "sum", "system_id", "unit")

    def __init__(self, row: ReadingRow) -> None:
        time, self.sensor_id, value, self.unit, _quality, self.system_id, _job_id = row
        self.bucket = time.replace(second=0, microsecond=0)
        self.count = 1
        self.sum = self.min = self.max = self.last_value = value
        self.last_time = time

    def order(self) -> tuple[int, int, datetime, str]:
        """The rollups' key order: system, sensor, minute, unit."""
        return (self.system_id.int, self.sensor_id.int, self.bucket, self.unit)


@dataclass(frozen=True, slots=True)
class MinuteCells:
    """Cells as columns, ordered by the rollups' key (system, sensor, minute, unit), so that every loader takes the
    upsert's row locks in one order."""

    system_ids: list[UUID]
    sensor_ids: list[UUID]
    units: list[str]
    buckets: list[datetime]
    counts: list[int]
    sums: list[float]
    mins: list[float]
    maxes: list[float]
    last_times: list[datetime]
    last_values: list[float]

    def __len__(self) -> int:
        return len(self.buckets)


def minute_cells(rows: Iterable[ReadingRow]) -> MinuteCells:
    """Fold readings into their minutes. It runs on the worker's hot path, once per stored reading, so the per-row
    work is kept to a dict lookup and a few comparisons: the key is made of integers and the time's fields, which
    hash several times faster than UUID objects (whose hash is Python code) or a truncated datetime."""
    cells: dict[tuple[int, int, str, int, int, int], _Cell] = {}
    get = cells.get
    for row in rows:
        time, sensor_id, value, unit, _quality, system_id, _job_id = row
        key = (system_id.int, sensor_id.int, unit, time.toordinal(), time.hour, time.minute)
        cell = get(key)
        if cell is None:
            cells[key] = _Cell(row)
            continue
        cell.count += 1
        cell.sum += value
        if value < cell.min:
            cell.min = value
        elif value > cell.max:
            cell.max = value
        if time > cell.last_time:
            cell.last_time = time
            cell.last_value = value
    ordered = sorted(cells.values(), key=_Cell.order)
    return MinuteCells(
        system_ids=[cell.system_id for cell in ordered],
        sensor_ids=[cell.sensor_id for cell in ordered],
        units=[cell.unit for cell in ordered],
        buckets=[cell.bucket for cell in ordered],
        counts=[cell.count for cell in ordered],
        sums=[cell.sum for cell in ordered],
        mins=[cell.min for cell in ordered],
        maxes=[cell.max for cell in ordered],
        last_times=[cell.last_time for cell in ordered],
        last_values=[cell.last_value for cell in ordered],
    )
