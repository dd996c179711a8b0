"""Folding readings into minute cells: what the worker and the review add to the rollups."""

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from sluice.domain.rollups import ReadingRow, minute_cells

SYSTEM = UUID("3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01")
SENSOR = UUID("6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8")
JOB = uuid4()
T0 = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)


def row(seconds: float, value: float, *, sensor: UUID = SENSOR, unit: str = "bar", system: UUID = SYSTEM) -> ReadingRow:
    return (T0 + timedelta(seconds=seconds), sensor, value, unit, 95, system, JOB)


def test_readings_of_one_minute_fold_into_one_cell_with_the_newest_value_last() -> None:
    cells = minute_cells([row(30, 5.0), row(0, 9.0), row(59.999, 1.0), row(10, 4.0)])

    assert (cells.buckets, cells.counts, cells.sums, cells.mins, cells.maxes) == ([T0], [4], [19.0], [1.0], [9.0])
    assert (cells.last_times, cells.last_values) == ([T0 + timedelta(seconds=59.999)], [1.0])


def test_a_minute_a_day_a_unit_or_a_sensor_apart_is_another_cell_in_key_order() -> None:
    other = UUID(int=SENSOR.int - 1)
    cells = minute_cells(
        [row(60, 2.0), row(0, 1.0, unit="celsius"), row(0, 3.0), row(86_400, 4.0), row(0, 5.0, sensor=other)]
    )

    # Ordered by system, sensor, minute, unit: the order every loader takes the rows' locks in.
    assert list(zip(cells.sensor_ids, cells.buckets, cells.units, cells.counts, strict=True)) == [
        (other, T0, "bar", 1),
        (SENSOR, T0, "bar", 1),
        (SENSOR, T0, "celsius", 1),
        (SENSOR, T0 + timedelta(minutes=1), "bar", 1),
        (SENSOR, T0 + timedelta(days=1), "bar", 1),
    ]
    assert len(cells) == 5


def test_the_minute_starts_at_its_first_second_and_no_readings_make_no_cells() -> None:
    cells = minute_cells([row(59, 1.0), row(60, 2.0)])

    assert cells.buckets == [T0, T0 + timedelta(minutes=1)]
    assert len(minute_cells([])) == 0
