"""QuarantineFunction: reviews/s through the real handler, against the bare cost of one transaction per row.

    make bench            (or: .venv/bin/python -m tests.bench.bench_review [--rows N])

N out-of-range readings (default 5,000) are quarantined in a scratch database. They are then fixed back into
``readings`` three ways through the handler: one ``POST /api/v1/quarantine/{id}/review`` per row, and bulk
``POST /api/v1/quarantine/review`` by ``ids`` (500 a request) and by ``filter`` (500 a request, following the
cursor). The reference, measured in the same run on the same rows, is the least a review can cost: one
autocommitted ``UPDATE .. WHERE id = %s`` per row over one connection. Listing is measured too: every page of
500 through ``GET /api/v1/quarantine``, against the same keyset ``SELECT`` run directly.

DynamoDB is the in-process moto (each review copies its job's counts there, as in AWS); the database is the
local TimescaleDB. Compare the ratios, not the absolute figures: the machine's noise is +-15-30% between runs.
"""

import argparse
import contextlib
import itertools
import json
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from uuid import uuid4

import psycopg

from sluice.adapters.dynamodb import DynamoJobStore
from sluice.adapters.migrations import MigrationRunner, load_migrations
from sluice.models.jobs import Job, JobSource, JobStatus
from sluice.settings import get_quarantine_settings
from sluice_tools.settings import get_database_settings

from ..api_client import TENANT, call, claims
from ..lambdas import handler_module
from ..paths import MIGRATIONS_DIR, REPO_ROOT
from ..scratch import scratch_database
from .moto_stack import function_stack

# Each request comes from a principal of its own, as from a team of reviewers: one principal may send 120 reads,
# 30 reviews and 5,000 rows a minute, far less than the bench sends. Each request still reads and writes its
# rate-limit logs in moto, as in AWS.
PRINCIPALS = itertools.count()


def reviewer() -> dict[str, str]:
    """The claims of the next reviewer."""
    return claims("quarantine:read quarantine:review", sub=f"bench-{next(PRINCIPALS)}")


PAGE = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000, help="quarantined readings to review")
    args = parser.parse_args()
    server_dsn = psycopg.conninfo.make_conninfo(get_database_settings().db_dsn, dbname="postgres")
    with scratch_database(server_dsn, prefix="sluice_bench") as dsn, quarantine_function(dsn) as (module, jobs):
        MigrationRunner(dsn, load_migrations(MIGRATIONS_DIR)).up()
        # The handler's metrics go to stdout as EMF documents, as in Lambda: keep them out of the figures.
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            figures = measure(module, jobs, dsn, args.rows)
    report(figures)


@contextmanager
def quarantine_function(dsn: str) -> Iterator[tuple[ModuleType, DynamoJobStore]]:
    """QuarantineFunction with the template's environment, against template.yaml's resources in moto."""
    with function_stack("QuarantineFunction", dsn) as stack:
        # Metrics stay on, as in AWS and the other benches (POWERTOOLS_METRICS_DISABLED would not silence them:
        # Powertools still prints a metric's EMF document at its 100th value). Listing adds none, and says so.
        warnings.filterwarnings("ignore", "No application metrics to publish")
        get_quarantine_settings.cache_clear()
        module = handler_module("QuarantineFunction")
        try:
            yield module, DynamoJobStore(str(stack.ref("JobsTable")))
        finally:
            module.get_service().connector.close()


def measure(module: ModuleType, jobs: DynamoJobStore, dsn: str, rows: int) -> dict[str, float]:
    """Every case, each on the same freshly pending rows."""
    job_id = seed(jobs, dsn, rows)
    figures: dict[str, float] = {"rows": rows}
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM quarantined_readings ORDER BY id DESC")]
        started = time.perf_counter()
        for row_id in ids:
            conn.execute("UPDATE quarantined_readings SET review_notes = %s WHERE id = %s", ("bench", row_id))
        figures["reference_rows_per_s"] = rows / (time.perf_counter() - started)

        reset(conn)
        started = time.perf_counter()
        for row_id in ids:
            answer = call(module, "POST", f"/api/v1/quarantine/{row_id}/review", verified=reviewer(), body=FIX)
            assert answer.status == 200, answer.body  # a benchmark that counts failures lies
        figures["single_rows_per_s"] = rows / (time.perf_counter() - started)
        check_replayed(conn, jobs, job_id, rows)

        reset(conn)
        started = time.perf_counter()
        for first in range(0, rows, PAGE):
            bulk(module, FIX | {"ids": ids[first : first + PAGE]})
        figures["bulk_ids_rows_per_s"] = rows / (time.perf_counter() - started)
        check_replayed(conn, jobs, job_id, rows)

        reset(conn)
        started = time.perf_counter()
        request: dict[str, Any] = FIX | {"filter": {"job_id": str(job_id)}, "limit": PAGE}
        cursor = bulk(module, request)
        while cursor is not None:
            cursor = bulk(module, request | {"cursor": cursor})
        figures["bulk_filter_rows_per_s"] = rows / (time.perf_counter() - started)
        check_replayed(conn, jobs, job_id, rows)

        figures |= listing(module, conn, rows)
    return figures


FIX: dict[str, Any] = {"action": "fix", "value": 95.0, "notes": "bench"}


def seed(jobs: DynamoJobStore, dsn: str, rows: int) -> Any:
    """A system, a completed job record and ``rows`` quarantined out-of-range readings of distinct instants."""
    system_id, job_id = uuid4(), uuid4()
    now = datetime.now(UTC)
    jobs.create_job(
        Job(
            job_id=job_id,
            tenant_id=TENANT,
            status=JobStatus.COMPLETED,
            source=JobSource.API,
            bucket="bench",
            object_key=f"incoming/{TENANT}/bench.json",
            created_at=now,
            expires_at=int(now.timestamp()) + 86_400,
        )
    )
    sensor = uuid4()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO systems (id, tenant_id, name) VALUES (%s, %s, 'bench')", (system_id, TENANT))
        with (
            conn.cursor() as cursor,
            cursor.copy(
                "COPY quarantined_readings (tenant_id, job_id, position, system_id, sensor_id, time, value, unit,"
                " quality, raw, reason) FROM STDIN"
            ) as copy,
        ):
            for n in range(rows):
                at = now - timedelta(hours=1, seconds=n)
                copy.write_row(
                    (TENANT, job_id, n, system_id, sensor, at, 950.0, "bar", 97, json.dumps({}), "out_of_range")
                )
    return job_id


def reset(conn: psycopg.Connection[Any]) -> None:
    """Every row pending again, nothing replayed."""
    conn.execute("DELETE FROM readings")
    conn.execute("DELETE FROM job_reviews")
    conn.execute(
        "UPDATE quarantined_readings SET review_status = 'pending', reviewed_by = NULL, reviewed_at = NULL,"
        " review_notes = NULL, review_correction = NULL"
    )
    conn.execute("VACUUM ANALYZE quarantined_readings")


def bulk(module: ModuleType, request: dict[str, Any]) -> str | None:
    answer = call(module, "POST", "/api/v1/quarantine/review", verified=reviewer(), body=request)
    assert answer.status == 200, answer.body
    assert answer.body["failed"] == 0, answer.body["results"][:3]
    cursor: str | None = answer.body["next_cursor"]
    return cursor


def check_replayed(conn: psycopg.Connection[Any], jobs: DynamoJobStore, job_id: Any, rows: int) -> None:
    """The promise after each case: every row fixed, replayed once, and counted on the job."""
    stored = conn.execute("SELECT count(*) FROM readings").fetchone()
    job = jobs.get_job(job_id)
    assert stored is not None
    assert stored[0] == rows, stored
    assert job is not None
    assert job.replayed_readings == rows, job


def listing(module: ModuleType, conn: psycopg.Connection[Any], rows: int) -> dict[str, float]:
    """Every page of 500 through the handler, and the same keyset SELECTs run directly."""
    started = time.perf_counter()
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": str(PAGE)} | ({"cursor": cursor} if cursor else {})
        answer = call(module, "GET", "/api/v1/quarantine", verified=reviewer(), query=query)
        assert answer.status == 200, answer.body
        pages += 1
        cursor = answer.body["next_cursor"]
        if cursor is None:
            break
    handler_s = time.perf_counter() - started
    started = time.perf_counter()
    before = 2**62
    while True:
        page = conn.execute(
            "SELECT * FROM quarantined_readings WHERE tenant_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
            (TENANT, before, PAGE + 1),
        ).fetchall()
        if len(page) <= PAGE:
            break
        before = page[PAGE - 1][0]
    direct_s = time.perf_counter() - started
    return {"list_page_ms": handler_s / pages * 1000, "list_direct_page_ms": direct_s / pages * 1000}


def report(figures: dict[str, float]) -> None:
    reference = figures["reference_rows_per_s"]
    print(f"\nQuarantineFunction, {figures['rows']:,.0f} out-of-range readings fixed back into readings per case")
    print(f"{'case':<46}{'rows/s':>10}{'x reference':>13}")
    print(f"{'one UPDATE per row, autocommit (reference)':<46}{reference:>10,.0f}{1:>12.2f}x")
    for label, key in (
        ("one review request per row", "single_rows_per_s"),
        ("bulk review by ids, 500 a request", "bulk_ids_rows_per_s"),
        ("bulk review by filter, 500 a request", "bulk_filter_rows_per_s"),
    ):
        print(f"{label:<46}{figures[key]:>10,.0f}{figures[key] / reference:>12.2f}x")
    print(
        f"listing, 500 rows a page: {figures['list_page_ms']:.1f} ms through the handler, "
        f"{figures['list_direct_page_ms']:.1f} ms for the bare SELECT "
        f"({figures['list_page_ms'] / figures['list_direct_page_ms']:.1f}x)"
    )
    out = REPO_ROOT / ".local" / "bench-review.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
