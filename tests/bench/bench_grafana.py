"""What the Grafana dashboard's panels cost (infra/grafana/dashboards/sluice-system.json), measured in one run.

    .venv/bin/python -m tests.bench.bench_grafana [--days N]

In a scratch database on the local TimescaleDB, one system gets N days (default 7) of 20 sensors reading every 5 s
(about 2.4M readings for 7 days) with their rollups, 1% as many quarantined readings (pending), and a ledger of one
2-chunk job every 10 s. Then every panel's SQL, expanded as Grafana expands it (tests/grafana.py), runs as the owner for
time ranges ending at the last reading that pick each resolution; the sensor panel once per sensor, as Grafana's
repeat runs it. Prints milliseconds (median of 5) per panel and range, and the plan's relation for the sensor panel.
"""

import argparse
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from uuid import uuid4

import psycopg
import yaml
from psycopg import sql

from ..grafana import Variable, expand_sql
from ..paths import REPO_ROOT
from ..rollups import rebuild_rollups
from .bench_indexes import migrated_database
from .bench_quarantine_filters import median_ms

DASHBOARD = REPO_ROOT / "infra" / "grafana" / "dashboards" / "sluice-system.json"
SENSORS = 20
END = datetime(2026, 11, 30, tzinfo=UTC)
RANGES = {"6 hours (1m)": 0.25, "24 hours (1m)": 1, "3 days (5m)": 3, "7 days (1h)": 7, "30 days (1h)": 30}


def fill(conn: psycopg.Connection[Any], system: str, days: int) -> None:
    start = END - timedelta(days=days)
    sensors = [str(uuid4()) for _ in range(SENSORS)]
    conn.execute("INSERT INTO systems (id, tenant_id, name) VALUES (%s, 'bench', 'press')", (system,))
    conn.execute(
        "INSERT INTO readings (time, system_id, sensor_id, value, unit, quality, job_id)"
        " SELECT t, %s, s::uuid, 100 + random() * 50, 'bar', 97, %s"
        " FROM generate_series(%s, %s - interval '5 seconds', interval '5 seconds') AS t, unnest(%s::text[]) AS s",
        (system, uuid4(), start, END, sensors),
    )
    conn.execute(
        "INSERT INTO quarantined_readings (tenant_id, job_id, system_id, sensor_id, time, value, unit, quality, reason)"
        " SELECT 'bench', %s, %s, (%s::uuid[])[1 + (extract(epoch FROM t)::bigint / 25) %% %s], t, 950, 'bar', 97,"
        " 'out_of_range' FROM generate_series(%s, %s, interval '25 seconds') AS t",
        (uuid4(), system, sensors, SENSORS, start, END),
    )
    conn.execute(
        "INSERT INTO ingest_ledger (job_id, chunk_no, tenant_id, total_readings, inserted_readings, committed_at)"
        " SELECT md5(n::text)::uuid, c, 'bench', 200, 200, %s + n * interval '10 seconds'"
        " FROM generate_series(0, %s) AS n, generate_series(0, 1) AS c",
        (start, days * 24 * 360 - 1),
    )
    rebuild_rollups(conn)
    conn.execute("VACUUM ANALYZE")


def run_all(conn: psycopg.Connection[Any], queries: list[sql.SQL]) -> None:
    for query in queries:
        conn.execute(query).fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=7)
    days = parser.parse_args().days
    dashboard = yaml.safe_load(DASHBOARD.read_text())
    system = str(uuid4())
    with migrated_database() as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        fill(conn, system, days)
        readings = conn.execute("SELECT count(*) FROM readings").fetchone()
        print(f"{readings[0] if readings else 0:,} readings, filled in {time.perf_counter() - started:.0f} s")
        sensors = [str(row[0]) for row in conn.execute("SELECT sensor_id FROM sensor_latest").fetchall()]
        variables = {
            "tenant": Variable("bench"),
            "system": Variable(system),
            "sensor": Variable(sensors, multi=True),
        }
        print(f"{'panel':<52} " + " ".join(f"{name:>14}" for name in RANGES))
        for panel in dashboard["panels"]:
            cells = []
            for span_days in RANGES.values():
                start = END - timedelta(days=span_days)
                if panel.get("repeat"):
                    texts = [
                        expand_sql(
                            panel["targets"][0]["rawSql"],
                            variables | {"sensor": Variable([sensor], multi=True)},
                            start,
                            END,
                        )
                        for sensor in sensors
                    ]
                else:
                    texts = [expand_sql(panel["targets"][0]["rawSql"], variables, start, END)]
                cells.append(median_ms(partial(run_all, conn, [sql.SQL(text) for text in texts])))
            title = panel["title"] + (f" x {len(sensors)}" if panel.get("repeat") else "")
            print(f"{title:<52} " + " ".join(f"{ms:>11.1f} ms" for ms in cells))


if __name__ == "__main__":
    main()
