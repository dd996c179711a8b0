"""AlertEvaluatorFunction's cost per minute: 1,000 rules over 2,000 sensors.

    .venv/bin/python -m tests.bench.bench_alerts [--systems 100] [--sensors 20] [--hours 24]

A scratch database gets one tenant with ``--systems`` systems of ``--sensors`` sensors each, ``--hours`` of minute
rollups for every sensor (``readings_1m``, a row per sensor and minute, and ``sensor_latest``), one webhook
subscription to every event, and 1,000 rules: per system nine threshold rules on ``bar`` (holding for 1 to 10
minutes, 60 s to 600 s) and one silence rule, so each rule watches its system's sensors (20,000 rule-sensor pairs).

Cases, each timed as the function runs it (``AlertEvaluatorService.run``: the tenant's reads, the rules folded in
Python, the writes, one transaction), the median of five runs:

- *quiet*: every value inside the band, nothing to decide: the cost of every minute of a healthy plant;
- *raise storm*: every sensor above every threshold for ten minutes: 18,000 alarms and their deliveries in one run;
- *clear storm*: the next minute all fall back: 18,000 clearings.

The reference, in the same run, is one plain query reading the same minutes (the rows the evaluator needs, without
the rules): ``x read`` is the run's time over it. ``of the minute`` is the share of the 60 s between runs.
"""

import argparse
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from sluice.adapters.migrations import MigrationRunner, load_migrations
from sluice.services.alert_evaluator import build_alert_evaluator_service
from sluice.settings import AlertEvaluatorSettings
from sluice_tools.settings import get_database_settings

from ..paths import MIGRATIONS_DIR, REPO_ROOT
from ..scratch import scratch_database

TENANT = "bench"
RUNS = 5
THRESHOLD_RULES_PER_SYSTEM = 9
LOOKBACK = timedelta(minutes=15)


def load(dsn: str, systems: int, sensors: int, hours: int, now: datetime) -> None:
    """Systems, sensors' minutes (value 100 bar: inside every band), rules and a subscription."""
    end = now.replace(second=0, microsecond=0)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO systems (tenant_id, name) SELECT %s, 'press-' || lpad(n::text, 4, '0')"
            " FROM generate_series(1, %s) AS n",
            (TENANT, systems),
        )
        conn.execute(
            "CREATE TEMP TABLE bench_sensors AS SELECT s.id AS system_id, gen_random_uuid() AS sensor_id"
            " FROM systems s, generate_series(1, %s)",
            (sensors,),
        )
        conn.execute(
            "INSERT INTO readings_1m (system_id, sensor_id, unit, bucket, count, sum, min, max, last_time, last_value)"
            " SELECT b.system_id, b.sensor_id, 'bar', m, 6, 600, 99, 101, m + interval '50 seconds', 100"
            " FROM bench_sensors b, generate_series(%s::timestamptz - %s * interval '1 hour',"
            "   %s::timestamptz - interval '1 minute', interval '1 minute') AS m",
            (end, hours, end),
        )
        conn.execute(
            "INSERT INTO sensor_latest (system_id, sensor_id, unit, last_time, last_value)"
            " SELECT system_id, sensor_id, 'bar', %s::timestamptz - interval '10 seconds', 100 FROM bench_sensors",
            (end,),
        )
        for n in range(THRESHOLD_RULES_PER_SYSTEM):
            conn.execute(
                "INSERT INTO alert_rules (tenant_id, name, kind, system_id, severity, unit, condition, threshold,"
                " clear_threshold, for_seconds, created_by)"
                " SELECT %s, s.name || '-high-' || %s, 'threshold', s.id, 'warning', 'bar', 'above', %s, %s, %s, 'b'"
                " FROM systems s",
                (TENANT, n, 150 + n, 140 + n, 60 * (1 + n)),
            )
        conn.execute(
            "INSERT INTO alert_rules (tenant_id, name, kind, system_id, severity, after_seconds, created_by)"
            " SELECT %s, s.name || '-silent', 'silent', s.id, 'critical', 600, 'b' FROM systems s",
            (TENANT,),
        )
        conn.execute(
            "INSERT INTO webhooks (tenant_id, url, events, created_by) VALUES (%s, 'https://example.com/hook',"
            " ARRAY['alarm.raised', 'alarm.cleared', 'alarm.acknowledged'], 'b')",
            (TENANT,),
        )
        conn.execute("ANALYZE")


def set_recent(dsn: str, now: datetime, value: float) -> None:
    """Every sensor's last ten minutes at ``value``."""
    end = now.replace(second=0, microsecond=0)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE readings_1m SET sum = 6 * %s, min = %s, max = %s, last_value = %s WHERE bucket >= %s",
            (value, value, value, value, end - timedelta(minutes=10)),
        )


def reference_read(dsn: str, now: datetime) -> float:
    """Seconds to read the minutes a run needs, plainly (the median of RUNS)."""
    end = now.replace(second=0, microsecond=0)
    start = end - LOOKBACK - timedelta(minutes=THRESHOLD_RULES_PER_SYSTEM - 1)
    times = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(RUNS + 1):
            began = time.perf_counter()
            conn.execute(
                "SELECT system_id, sensor_id, unit, bucket, sum / count FROM readings_1m"
                " WHERE bucket >= %s AND bucket < %s",
                (start, end),
            ).fetchall()
            times.append(time.perf_counter() - began)
    return statistics.median(times[1:])


def timed_runs(dsn: str, now: datetime, runs: int) -> tuple[float, dict[str, int]]:
    """The median seconds of ``runs`` evaluations at ``now``, and the first run's counts."""
    service = build_alert_evaluator_service(AlertEvaluatorSettings(db_dsn=dsn))
    times, first = [], None
    try:
        for _ in range(runs):
            began = time.perf_counter()
            report = service.run(now, lambda: 60_000)
            times.append(time.perf_counter() - began)
            if report.failures:
                raise RuntimeError(f"evaluation failed: {report.failures}")
            first = first or {"raised": report.raised, "cleared": report.cleared, "deliveries": report.deliveries}
    finally:
        service.connector.close()
    assert first is not None
    return statistics.median(times), first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=100)
    parser.add_argument("--sensors", type=int, default=20)
    parser.add_argument("--hours", type=int, default=24)
    args = parser.parse_args()
    now = datetime.now(UTC).replace(second=20, microsecond=0)
    figures: dict[str, Any] = {}
    with scratch_database(get_database_settings().db_dsn, prefix="sluice_bench") as dsn:
        MigrationRunner(dsn, load_migrations(MIGRATIONS_DIR)).up()
        load(dsn, args.systems, args.sensors, args.hours, now)
        pairs = args.systems * args.sensors * (THRESHOLD_RULES_PER_SYSTEM + 1)
        reference = reference_read(dsn, now)
        rules, sensors = args.systems * 10, args.systems * args.sensors
        print(f"alert evaluation: {rules} rules over {sensors} sensors ({pairs} rule-sensor pairs),"
              f" {args.hours} h of minutes; reference read {reference * 1000:.1f} ms")  # fmt: skip
        quiet, _ = timed_runs(dsn, now, RUNS)
        set_recent(dsn, now, 500)
        raise_storm, raised = timed_runs(dsn, now, 1)
        later = now + timedelta(minutes=1)
        with psycopg.connect(dsn, autocommit=True) as conn:
            end = later.replace(second=0, microsecond=0)
            # The minute that has just ended: every sensor back at 100 bar, under every clear threshold.
            conn.execute(
                "INSERT INTO readings_1m (system_id, sensor_id, unit, bucket, count, sum, min, max, last_time,"
                " last_value) SELECT system_id, sensor_id, 'bar', %s, 6, 600, 100, 100, %s, 100 FROM sensor_latest",
                (end - timedelta(minutes=1), end - timedelta(seconds=5)),
            )
            conn.execute("UPDATE sensor_latest SET last_time = %s", (end - timedelta(seconds=5),))
        clear_storm, cleared = timed_runs(dsn, later, 1)
        for name, seconds, counts in (
            ("quiet", quiet, {}),
            ("raise storm", raise_storm, raised),
            ("clear storm", clear_storm, cleared),
        ):
            key = name.replace(" ", "_")
            figures[f"alerts_{key}_s"] = round(seconds, 4)
            figures[f"alerts_{key}_x_read"] = round(seconds / reference, 2)
            print(f"  {name:12} {seconds * 1000:8.1f} ms  {seconds / reference:6.1f}x read  "
                  f"{seconds / 60:7.2%} of the minute  {counts or ''}")  # fmt: skip
        figures["alerts_reference_read_s"] = round(reference, 4)
    out = REPO_ROOT / ".local" / "bench.json"
    existing = json.loads(out.read_text()) if out.is_file() else {}
    Path(out).write_text(json.dumps(existing | figures, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
