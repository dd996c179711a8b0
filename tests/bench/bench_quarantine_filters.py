"""What GET /api/v1/quarantine's sensor filter and its count cost, on one large tenant, measured in one run.

    make bench            (or: .venv/bin/python -m tests.bench.bench_quarantine_filters [--rows N])

In a scratch database on the local TimescaleDB, one tenant gets N quarantined rows (default 1,000,000) over 1,000
sensors, a fifth of them without a sensor (unreadable), most of them pending, and a rare sensor has 10 rows older
than all of them. Then, with the store's own code (``TimescaleQuarantineStore``): the first page of 100 rows,
unfiltered, for a common sensor and for the rare one; and the count ``include_total=true`` adds, for the whole
tenant, its pending rows, one reason and one sensor. The sensor pages and count are measured with migration 0008's
index and without it, as is the time that migration takes to build it over the table. Last, the price of that
index on the worker's quarantine inserts: binary COPY of 200,000 rows into an emptied table, with and without it.
Prints milliseconds (median of 5) and rows/s. Compare within the run: the machine's noise is +-15-30% between runs.
"""

import argparse
import statistics
import time
from collections.abc import Callable
from uuid import UUID, uuid4

import psycopg

from sluice.adapters.quarantine import TimescaleQuarantineStore
from sluice.adapters.timescale import DatabaseConnector
from sluice.models.api import QuarantineQuery
from sluice.models.quarantine import ReviewStatus
from sluice.models.readings import QuarantineReason

from .bench_indexes import migrated_database

TENANT = "bench"
SENSORS = 1000
SENSOR_INDEX = "quarantined_readings_tenant_sensor_idx"
CREATE_SENSOR_INDEX = (
    f"CREATE INDEX {SENSOR_INDEX} ON quarantined_readings (tenant_id, sensor_id, id DESC) WHERE sensor_id IS NOT NULL"
)


def fill(dsn: str, rows: int, sensors: list[UUID], rare: UUID) -> None:
    """10 rows of ``rare``, then ``rows`` quarantined rows of TENANT, sensors in turn, every fifth without one, every
    tenth reviewed."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO quarantined_readings (tenant_id, job_id, sensor_id, raw, reason)"
            " SELECT %s, %s, %s, '{}', 'out_of_range' FROM generate_series(1, 10)",
            (TENANT, uuid4(), rare),
        )
        conn.execute(
            "INSERT INTO quarantined_readings (tenant_id, job_id, sensor_id, raw, reason, review_status, reviewed_by,"
            " reviewed_at)"
            " SELECT %s, %s, CASE WHEN n %% 5 = 0 THEN NULL ELSE (%s::uuid[])[1 + n %% %s] END, '{}',"
            " (ARRAY['out_of_range', 'invalid_unit', 'low_quality', 'duplicate'])[1 + n %% 4],"
            " CASE WHEN n %% 10 = 0 THEN 'rejected' ELSE 'pending' END,"
            " CASE WHEN n %% 10 = 0 THEN 'bench' END, CASE WHEN n %% 10 = 0 THEN now() END"
            " FROM generate_series(1, %s) AS n",
            (TENANT, uuid4(), sensors, len(sensors), rows),
        )
        conn.execute("VACUUM ANALYZE quarantined_readings")


def median_ms(work: Callable[[], object], repeat: int = 5) -> float:
    """Median milliseconds of ``repeat`` runs of ``work``, after one run to warm the cache."""
    work()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def copy_rate(dsn: str, rows: int) -> float:
    """Rows/s of a binary COPY of ``rows`` quarantined rows (as the worker writes them) into an emptied table."""
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE quarantined_readings")
        conn.commit()
        job, sensors = uuid4(), [uuid4() for _ in range(SENSORS)]
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy(
                "COPY quarantined_readings (tenant_id, job_id, sensor_id, reason) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["text", "uuid", "uuid", "text"])
            for n in range(rows):
                copy.write_row((TENANT, job, None if n % 5 == 0 else sensors[n % SENSORS], "duplicate"))
        return rows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    sensors, rare = [uuid4() for _ in range(SENSORS)], uuid4()
    with migrated_database() as dsn:
        fill(dsn, args.rows, sensors, rare)
        connector = DatabaseConnector(lambda: dsn, statement_timeout_ms=60_000, application_name="sluice-bench")
        store = TimescaleQuarantineStore(connector)
        everything = QuarantineQuery()
        one_sensor = QuarantineQuery(sensor_id=sensors[7])
        rare_sensor = QuarantineQuery(sensor_id=rare)
        figures = {
            "page of 100, whole tenant": median_ms(lambda: store.list_rows(TENANT, everything, 101, None)),
            "count, whole tenant": median_ms(lambda: store.count_rows(TENANT, everything)),
            "count, pending": median_ms(
                lambda: store.count_rows(TENANT, QuarantineQuery(review_status=ReviewStatus.PENDING))
            ),
            "count, one reason": median_ms(
                lambda: store.count_rows(TENANT, QuarantineQuery(reason=QuarantineReason.DUPLICATE))
            ),
            "page of 100, one sensor (index)": median_ms(lambda: store.list_rows(TENANT, one_sensor, 101, None)),
            "page, a rare sensor (index)": median_ms(lambda: store.list_rows(TENANT, rare_sensor, 101, None)),
            "count, one sensor (index)": median_ms(lambda: store.count_rows(TENANT, one_sensor)),
        }
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP INDEX {SENSOR_INDEX}")
        figures |= {
            "page of 100, one sensor (no index)": median_ms(lambda: store.list_rows(TENANT, one_sensor, 101, None)),
            "page, a rare sensor (no index)": median_ms(lambda: store.list_rows(TENANT, rare_sensor, 101, None)),
            "count, one sensor (no index)": median_ms(lambda: store.count_rows(TENANT, one_sensor)),
        }
        connector.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            started = time.perf_counter()
            conn.execute(CREATE_SENSOR_INDEX)  # what migration 0008 does to a deployed table
            build_s = time.perf_counter() - started
            conn.execute(f"DROP INDEX {SENSOR_INDEX}")
        without = copy_rate(dsn, 200_000)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(CREATE_SENSOR_INDEX)
        with_index = copy_rate(dsn, 200_000)
    print(f"quarantine filters: {args.rows:,} rows of one tenant, {SENSORS:,} sensors")
    for name, ms in figures.items():
        print(f"  {name:<38} {ms:9.1f} ms")
    print(f"  building the sensor index over {args.rows:,} rows  {build_s:6.1f} s")
    print(f"  COPY 200,000 rows, without the sensor index {without:10,.0f} rows/s")
    print(f"  COPY 200,000 rows, with the sensor index    {with_index:10,.0f} rows/s ({with_index / without:.2f}x)")


if __name__ == "__main__":
    main()
