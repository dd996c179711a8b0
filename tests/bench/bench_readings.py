"""ReadingsFunction: p50/p95 of a page through the real handler, against the bare SQL of the same query.

    make bench            (or: .venv/bin/python -m tests.bench.bench_readings [--runs 50] [--days 7])

A scratch database gets one system with 20 sensors sending a reading every 5 s for ``--days`` days (7: about 2.4M
readings, written with ``generate_series``), and the rollups ``tests.rollups.rebuild_rollups`` computes from them,
as the loaders keep them. Two queries, each ``--runs`` times after a warm-up:

- (a) the last 24 hours at ``1m`` over all sensors: the first page at the largest limit (10,000 points), and how
  many pages the whole window takes;
- (b) the last 30 days at ``1h`` over all sensors (the first page, 10,000 points at most).

Each is timed three ways on one connection: through ``lambda_handler`` with an API Gateway event (the read limit
kept in the in-process moto, as DynamoDB in AWS; the database as the function's connector holds it), as the bare
SQL of the same query selecting the points' columns with psycopg (``fetchall``), and as that SQL's rows turned into
the API's models and serialized by pydantic: what the handler would cost without the database writing the JSON.
Prints p95 in ms and the ratio handler / bare SQL, and merges the figures into ``.local/bench.json`` under
``readings_*`` keys. Machine noise is +-15-30% between runs: compare ratios taken in the same run.
"""

import argparse
import contextlib
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from uuid import UUID, uuid4

import psycopg

from sluice.adapters.migrations import MigrationRunner, load_migrations
from sluice.adapters.readings import page_query
from sluice.domain.ratelimit import READ_BUDGET, PrincipalBudget, RateLimit, Spend, SpendDecision, decide_spend
from sluice.domain.readings import plan_page
from sluice.models.readings_api import READINGS_PAGE_MAX, ReadingsQuery, RollupPoint
from sluice.settings import get_readings_settings
from sluice_tools.settings import get_database_settings

from ..api_client import TENANT, claims
from ..lambdas import FakeLambdaContext, handler_module, load_event
from ..paths import MIGRATIONS_DIR, REPO_ROOT
from ..rollups import rebuild_rollups
from ..scratch import scratch_database
from .moto_stack import function_stack

SENSORS = 20
EVERY_S = 5
TARGET_P95_MS = 50.0
TARGET_RATIO = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--days", type=int, default=7, help="days of readings (20 sensors, one every 5 s)")
    args = parser.parse_args()
    server_dsn = psycopg.conninfo.make_conninfo(get_database_settings().db_dsn, dbname="postgres")
    with scratch_database(server_dsn, prefix="sluice_bench") as dsn:
        MigrationRunner(dsn, load_migrations(MIGRATIONS_DIR)).up()
        started = time.perf_counter()
        system_id, end, rows = seed(dsn, args.days)
        print(
            f"{rows:,} readings of {SENSORS} sensors over {args.days} days, rollups rebuilt, in "
            f"{time.perf_counter() - started:.0f} s; p50/p95 of {args.runs} runs, ms"
        )
        with readings_function(dsn) as module, open(os.devnull, "w") as devnull:
            cases = {
                "1m_24h": {"resolution": "1m", "from": end - timedelta(hours=24), "to": end},
                "1h_30d": {"resolution": "1h", "from": end - timedelta(days=30), "to": end},
            }
            figures: dict[str, float] = {"readings_rows": rows}
            with psycopg.connect(dsn, autocommit=True, options="-c TimeZone=UTC") as conn:
                for name, case in cases.items():
                    # The handler's metrics go to stdout as EMF documents, as in Lambda: keep them out of the table.
                    with contextlib.redirect_stdout(devnull):
                        measured = measure(module, conn, system_id, case, args.runs)
                    figures |= {f"readings_{name}_{key}": value for key, value in measured.items()}
    report(figures)


def seed(dsn: str, days: int) -> tuple[UUID, datetime, int]:
    """The system, its sensors' readings up to the current minute, and the rollups; (system, end, readings)."""
    system_id, job_id = uuid4(), uuid4()
    sensors = [uuid4() for _ in range(SENSORS)]
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    per_sensor = days * 86_400 // EVERY_S
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO systems (id, tenant_id, name) VALUES (%s, %s, 'press-bench')", (system_id, TENANT))
        conn.execute(
            "INSERT INTO readings (time, system_id, sensor_id, value, unit, quality, job_id)"
            " SELECT %(end)s - (n + 1) * %(every)s * interval '1 second', %(system)s, s.id,"
            "  round((100 + 50 * sin(n / 300.0 + s.k))::numeric, 3)::float8, 'bar', 95, %(job)s"
            " FROM unnest(%(sensors)s::uuid[]) WITH ORDINALITY AS s(id, k), generate_series(0, %(last)s) AS n",
            {
                "end": end,
                "every": EVERY_S,
                "system": system_id,
                "sensors": sensors,
                "job": job_id,
                "last": per_sensor - 1,
            },
        )
        rebuild_rollups(conn)
        conn.execute("VACUUM ANALYZE")
    return system_id, end, per_sensor * SENSORS


@contextmanager
def readings_function(dsn: str) -> Iterator[ModuleType]:
    """ReadingsFunction with the template's environment, against template.yaml's resources in moto."""
    with function_stack("ReadingsFunction", dsn):
        # Far more reads than a principal may make a minute: the limit is kept all the same, each request's log
        # read and written, but never refuses.
        os.environ.update(SLUICE_READ_RATE_LIMIT_REQUESTS="1000000")
        warnings.filterwarnings("ignore", "No application metrics to publish")
        get_readings_settings.cache_clear()
        module = handler_module("ReadingsFunction")
        try:
            yield module
        finally:
            module.get_service().connector.close()
            get_readings_settings.cache_clear()


def event_for(system_id: UUID, query: dict[str, str]) -> dict[str, Any]:
    """An API Gateway (payload 2.0) event for the readings route, with verified claims."""
    event = load_event("readings-list.json")
    path = f"/api/v1/systems/{system_id}/readings"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["pathParameters"] = {"system_id": str(system_id)}
    event["queryStringParameters"] = query
    event["rawQueryString"] = "&".join(f"{name}={value}" for name, value in query.items())
    event["requestContext"]["authorizer"]["jwt"]["claims"] = claims("readings:read", sub="bench")
    return event


def measure(
    module: ModuleType, conn: psycopg.Connection[Any], system_id: UUID, case: dict[str, Any], runs: int
) -> dict[str, float]:
    query = {
        "resolution": case["resolution"],
        "from": case["from"].isoformat(),
        "to": case["to"].isoformat(),
        "limit": str(READINGS_PAGE_MAX),
    }
    event = event_for(system_id, query)
    plan = plan_page(system_id, ReadingsQuery.model_validate(query), datetime.now(UTC))
    json_sql, params = page_query(plan)
    bare_sql = bare_query(plan.resolution.value, plan.sensor_id is not None)

    def through_handler() -> None:
        answer = module.lambda_handler(event, FakeLambdaContext())
        assert answer["statusCode"] == 200, answer["body"][:300]

    # The same service, its read limit kept in memory instead of moto's in-process DynamoDB (two calls a request,
    # several ms of moto's own Python): what the function's own code costs.
    memory = replace(module.get_service(), reads=PrincipalBudget(READ_BUDGET, MemoryLimiter()))

    def through_handler_memory_limit() -> None:
        answer = module.lambda_handler(event, FakeLambdaContext(), service=memory)
        assert answer["statusCode"] == 200, answer["body"][:300]

    def bare() -> list[tuple[Any, ...]]:
        return conn.execute(bare_sql, params).fetchall()

    def json_from_sql() -> None:
        conn.execute(json_sql, params).fetchall()

    def python_serialized() -> None:
        points = [
            RollupPoint(sensor_id=s, time=t, unit=u, count=c, min=lo, max=hi, avg=total / c, last=last)
            for s, t, u, c, total, lo, hi, last in bare()
        ]
        json.dumps([point.model_dump(mode="json") for point in points])

    first = json.loads(module.lambda_handler(event, FakeLambdaContext())["body"])
    assert len(first["items"]) == len(bare()) - (len(bare()) > READINGS_PAGE_MAX)
    pages = 1
    cursor = first["next_cursor"]
    while cursor is not None:
        page = json.loads(
            module.lambda_handler(
                event_for(system_id, {"limit": query["limit"], "cursor": cursor}), FakeLambdaContext()
            )["body"]
        )
        pages += 1
        cursor = page["next_cursor"]
    handler = timings(through_handler, runs)
    handler_memory = timings(through_handler_memory_limit, runs)
    sql_only = timings(bare, runs)
    return {
        "points": len(first["items"]),
        "pages": pages,
        "handler_p50_ms": percentile(handler, 50),
        "handler_p95_ms": percentile(handler, 95),
        "handler_memory_limit_p50_ms": percentile(handler_memory, 50),
        "handler_memory_limit_p95_ms": percentile(handler_memory, 95),
        "sql_p50_ms": percentile(sql_only, 50),
        "sql_p95_ms": percentile(sql_only, 95),
        "json_sql_p95_ms": percentile(timings(json_from_sql, runs), 95),
        "python_serialized_p95_ms": percentile(timings(python_serialized, runs), 95),
        "handler_over_sql_p95": percentile(handler, 95) / percentile(sql_only, 95),
        "handler_memory_limit_over_sql_p95": percentile(handler_memory, 95) / percentile(sql_only, 95),
    }


class MemoryLimiter:
    """The read limit's log per principal in memory (the domain's own sliding log), far above what the bench sends."""

    def __init__(self) -> None:
        self.limit = RateLimit(requests=1_000_000, window_s=60)
        self.logs: dict[str, tuple[Spend, ...]] = {}

    def admit(self, principal_key: str, now: datetime, amount: int = 1) -> SpendDecision:
        decision = decide_spend(self.logs.get(principal_key, ()), now.timestamp(), self.limit, amount)
        if decision.allowed:
            self.logs[principal_key] = decision.history
        return decision


# Resolution -> the bare SELECT of a first page: the columns a client of the database would read, no JSON.
_BARE: dict[str, str] = {
    "1m": "SELECT sensor_id, bucket, unit, count, sum, min, max, last_value FROM readings_1m"
    " WHERE system_id = %(system_id)s AND bucket >= %(start)s AND bucket < %(end)s"
    " ORDER BY sensor_id, bucket, unit LIMIT %(fetch)s",
    "1h": "SELECT sensor_id, bucket, unit, count, sum, min, max, last_value FROM readings_1h"
    " WHERE system_id = %(system_id)s AND bucket >= %(start)s AND bucket < %(end)s"
    " ORDER BY sensor_id, bucket, unit LIMIT %(fetch)s",
}


def bare_query(resolution: str, one_sensor: bool) -> str:
    assert not one_sensor
    return _BARE[resolution]


def timings(work: Callable[[], object], runs: int) -> list[float]:
    work()  # warm: plans cached, pages in the buffer cache
    found = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        found.append((time.perf_counter() - started) * 1000)
    return found


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def report(figures: dict[str, float]) -> None:
    print(
        f"{'query':<28}{'points':>7}{'pages':>6}{'handler':>15}{'memory limit':>15}{'bare SQL':>13}"
        f"{'JSON SQL':>9}{'pydantic':>9}"
    )
    verdicts = []
    for name, label in (("1m_24h", "(a) 24 h at 1m, first page"), ("1h_30d", "(b) 30 days at 1h")):
        key = f"readings_{name}_"
        print(
            f"{label:<28}{figures[key + 'points']:>7,.0f}{figures[key + 'pages']:>6.0f}"
            f"{figures[key + 'handler_p50_ms']:>7.1f}/{figures[key + 'handler_p95_ms']:<7.1f}"
            f"{figures[key + 'handler_memory_limit_p50_ms']:>7.1f}/{figures[key + 'handler_memory_limit_p95_ms']:<7.1f}"
            f"{figures[key + 'sql_p50_ms']:>6.1f}/{figures[key + 'sql_p95_ms']:<6.1f}"
            f"{figures[key + 'json_sql_p95_ms']:>9.1f}{figures[key + 'python_serialized_p95_ms']:>9.1f}"
        )
        for how, suffix in (("limit in moto", ""), ("limit in memory", "memory_limit_")):
            handler95 = figures[f"{key}handler_{suffix}p95_ms"]
            ratio = figures[f"{key}handler_{suffix}over_sql_p95"]
            verdicts.append(
                f"{label}, {how}: p95 {handler95:.1f} ms"
                f" ({'within' if handler95 <= TARGET_P95_MS else 'OVER'} {TARGET_P95_MS:g}),"
                f" {ratio:.2f}x the bare SQL's p95 ({'within' if ratio <= TARGET_RATIO else 'OVER'} {TARGET_RATIO:g}x)"
            )
    print("p50/p95 in ms. handler: lambda_handler with the read limit in moto's DynamoDB; memory limit: the same with")
    print("the limit's log in memory. JSON SQL: the handler's statement (the database writes the points' JSON), p95;")
    print("pydantic: the bare SQL's rows made into RollupPoint models and serialized instead, p95.")
    print("\n".join(verdicts))
    out = REPO_ROOT / ".local" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    kept = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    out.write_text(json.dumps(kept | figures, indent=2) + "\n", encoding="utf-8")
    print(f"merged into {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
