"""SystemsFunction's listing: one page of 100 systems with their figures, over about a million readings.

    .venv/bin/python -m tests.bench.bench_systems [--systems 100] [--readings 1000000]

A scratch database gets ``--systems`` systems of one tenant and ``--readings`` readings shared among them, with the
rollups the worker keeps for them (``readings_1m``, ``sensor_latest``), in two layouts: *spread*, each system's
readings evenly over the last 30 days (about a thirtieth of them in the last 24 hours), and *recent*, all of them in
the last 24 hours. ``readings_24h`` sums the system's minutes of ``readings_1m``, so it costs a row per sensor and
minute whatever the readings' rate. A tenth as many quarantined rows name the systems (half of them pending). Each
layout times the page as the function builds it (``sluice.domain.systems.list_systems`` over
``TimescaleSystemStore``, one connection, as the registrar's login would hold it) and each of its statements alone:
the median of five runs after a warm-up, first as loaded (``ANALYZE`` only), then after ``VACUUM`` of the rollups
(autovacuum does so in time on a live database; the newest pages lag behind).
"""

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg

from sluice.adapters.migrations import MigrationRunner, load_migrations
from sluice.adapters.systems import TimescaleSystemStore
from sluice.domain.systems import list_systems, recent_since
from sluice.models.api import SystemQuery
from sluice_tools.settings import get_database_settings

from ..paths import MIGRATIONS_DIR
from ..rollups import rebuild_rollups
from ..scratch import scratch_database

TENANT = "bench"
RUNS = 5


def load(dsn: str, systems: int, readings: int, span: timedelta) -> list[UUID]:
    """The systems, their readings (evenly over ``span`` before now) and quarantined rows; the systems' ids."""
    per_system = readings // systems
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE readings, readings_1m, readings_1h, sensor_latest, quarantined_readings, systems")
        conn.execute(
            "INSERT INTO systems (tenant_id, name) SELECT %s, 'press-' || lpad(n::text, 4, '0')"
            " FROM generate_series(1, %s) AS n",
            (TENANT, systems),
        )
        conn.execute(
            "INSERT INTO readings (time, system_id, sensor_id, value, unit, quality, job_id)"
            " SELECT now() - %s * (n::float8 / %s), s.id, s.id, 1.0, 'bar', 95, s.id"
            " FROM systems AS s, generate_series(1, %s) AS n",
            (span, per_system, per_system),
        )
        conn.execute(
            "INSERT INTO quarantined_readings (tenant_id, job_id, system_id, reason, review_status, reviewed_by,"
            " reviewed_at) SELECT %s, s.id, s.id, 'out_of_range',"
            " CASE WHEN n %% 2 = 0 THEN 'pending' ELSE 'rejected' END,"
            " CASE WHEN n %% 2 = 0 THEN NULL ELSE 'bench' END, CASE WHEN n %% 2 = 0 THEN NULL ELSE now() END"
            " FROM systems AS s, generate_series(1, %s) AS n",
            (TENANT, per_system // 10),
        )
        rebuild_rollups(conn)
        conn.execute("ANALYZE")
        return [row[0] for row in conn.execute("SELECT id FROM systems ORDER BY name")]


def median_ms(work: Callable[[], object]) -> float:
    work()  # warm: plans cached, pages in the buffer cache
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        work()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def measure(dsn: str, ids: list[UUID], vacuumed: bool) -> dict[str, float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if vacuumed:
            conn.execute("VACUUM readings_1m, sensor_latest")
        store = TimescaleSystemStore(lambda: conn)
        now = datetime.now(UTC)
        since = recent_since(now)
        page = SystemQuery(limit=len(ids))
        return {
            "page (all statements)": median_ms(lambda: list_systems(store, TENANT, page, now)),
            "systems page": median_ms(lambda: store.list_rows(TENANT, len(ids) + 1, None)),
            "readings_24h": median_ms(lambda: store.readings_since(ids, since)),
            "figures (3 statements)": median_ms(lambda: store.figures(TENANT, ids, since)),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--systems", type=int, default=100)
    parser.add_argument("--readings", type=int, default=1_000_000)
    args = parser.parse_args()
    with scratch_database(get_database_settings().db_dsn, prefix="sluice_bench") as dsn:
        MigrationRunner(dsn, load_migrations(MIGRATIONS_DIR)).up()
        print(f"{args.systems} systems, {args.readings:,} readings; median of {RUNS} runs, ms")
        for layout, span in (
            ("spread over 30 days", timedelta(days=30)),
            ("all in the last 24 h", timedelta(hours=23)),
        ):
            started = time.perf_counter()
            ids = load(dsn, args.systems, args.readings, span)
            loaded_s = time.perf_counter() - started
            with psycopg.connect(dsn) as conn:
                recent = conn.execute(
                    "SELECT count(*) FROM readings WHERE time >= now() - interval '24 hours'"
                ).fetchone()
            print(f"\n{layout} (loaded in {loaded_s:.0f} s; {recent[0] if recent else 0:,} readings in the last 24 h)")
            fresh, vacuumed = measure(dsn, ids, vacuumed=False), measure(dsn, ids, vacuumed=True)
            print(f"  {'':<24} {'fresh':>8} {'vacuumed':>9}")
            for name, figure in fresh.items():
                print(f"  {name:<24} {figure:8.1f} {vacuumed[name]:9.1f}")


if __name__ == "__main__":
    main()
