"""The price of each index on ``readings``, paid by the worker's COPY path, measured in one run.

    make bench            (or: .venv/bin/python -m tests.bench.bench_indexes [--rows N])

In a scratch database on the local TimescaleDB, binary-COPY the same rows into ``readings`` as migrated (both
indexes), without ``(system_id, time DESC)``, without any index, and with ``create_hypertable``'s default
``time DESC`` index added. Prints rows/s for each and the ratio to the migrated schema. Writes
``.local/bench-indexes.json``.
"""

import argparse
import json
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import psycopg
from psycopg.conninfo import make_conninfo

from sluice.adapters.migrations import MigrationRunner, load_migrations
from sluice_tools.settings import get_database_settings

from ..paths import MIGRATIONS_DIR, REPO_ROOT
from ..scratch import scratch_database

Row = tuple[datetime, UUID, UUID, float, str, int, UUID]
Conn = psycopg.Connection[tuple[object, ...]]


def make_rows(count: int, seed: int = 4413) -> list[Row]:
    """Rows of 100 systems x 20 sensors, one reading a second each, as the worker would COPY them."""
    rng = random.Random(seed)
    systems = [UUID(int=rng.getrandbits(128), version=4) for _ in range(100)]
    sensors = [(systems[i // 20], UUID(int=rng.getrandbits(128), version=4)) for i in range(2000)]
    job = uuid4()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        (start + timedelta(seconds=i // 2000), *sensors[i % 2000], rng.uniform(0, 700), "bar", 95, job)
        for i in range(count)
    ]


def copy_rows(conn: Conn, rows: list[Row]) -> float:
    """Seconds to binary-COPY ``rows`` into ``readings`` and commit."""
    started = time.perf_counter()
    with (
        conn.transaction(),
        conn.cursor() as cur,
        cur.copy(
            "COPY readings (time, system_id, sensor_id, value, unit, quality, job_id) FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["timestamptz", "uuid", "uuid", "float8", "text", "int2", "uuid"])
        for row in rows:
            copy.write_row(row)
    return time.perf_counter() - started


@contextmanager
def migrated_database() -> Iterator[str]:
    """A scratch database on the local server with every migration applied."""
    server = make_conninfo(get_database_settings().db_dsn, dbname="postgres")
    with scratch_database(server, prefix="sluice_bench") as dsn:
        MigrationRunner(dsn, load_migrations(MIGRATIONS_DIR)).up()
        yield dsn


VARIANTS: dict[str, str] = {
    "migrated (system,sensor,time unique + system,time)": "",
    "without (system_id, time DESC)": "DROP INDEX readings_system_time_idx",
    "without any index": "DROP INDEX readings_system_time_idx; DROP INDEX readings_system_sensor_time_key",
    "plus default (time DESC)": "CREATE INDEX readings_time_idx ON readings (time DESC)",
}


def measure(rows: list[Row], change: str, repeat: int) -> float:
    """Best rows/s of ``repeat`` COPYs into an emptied ``readings`` of a fresh schema changed by ``change``."""
    best = float("inf")
    with migrated_database() as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        if change:
            conn.execute(change)
        for _ in range(repeat):
            conn.execute("TRUNCATE readings")
            best = min(best, copy_rows(conn, rows))
    return len(rows) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rows = make_rows(args.rows)
    figures: dict[str, float] = {}
    for label, change in VARIANTS.items():
        figures[label] = measure(rows, change, args.repeat)

    reference = figures[next(iter(VARIANTS))]
    print(f"binary COPY of {len(rows):,} rows into readings (best of {args.repeat})")
    for label, rate in figures.items():
        print(f"  {label:<45} {rate:>10,.0f} rows/s   x{rate / reference:.2f}")
    out = REPO_ROOT / ".local" / "bench-indexes.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": len(rows), "rows_per_s": {k: round(v) for k, v in figures.items()}}, indent=2))
    print(f"  written to {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
