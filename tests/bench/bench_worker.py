"""LoadWorkerFunction end to end: readings/s through the real worker path, against ``psql \\copy`` in the same run.

    make bench            (or: .venv/bin/python -m tests.bench.bench_worker [--readings N])

One corpus of 1,000,000 realistic readings (100 systems x 20 sensors, about 1% invalid, spread over every
quarantine reason; tests/bench/corpus.py) goes through the worker four ways: as API batches of 1,000 and of 10,000
readings, as the same 10,000-reading batches sent again (every valid reading already stored: the duplicate path),
and as one CSV.gz drop of all of them. The 10,000s and the drop also run with the rollups off (a sink told not to
keep readings_1m, readings_1h and sensor_latest), which prices keeping them. Objects sit in the moto server's S3
and reach the handler as the SQS events S3 put on IngestQueue, ten messages per invocation like the template's
event source; the database is the local TimescaleDB. Only the handler's time is counted. The reference is
``psql \\copy`` of the same valid rows (CSV) into an empty ``readings``; every case starts from empty tables too.
The drop runs in a fresh process, whose peak RSS is the worker's peak memory (interpreter and libraries included,
as Lambda reports it).

Prints readings/s per case and the ratio to ``\\copy``, and writes the figures to ``.local/bench.json``. Machine
noise is +-15-30% between runs: compare ratios taken in the same run.
"""

import argparse
import contextlib
import dataclasses
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg

from sluice.adapters.aws import dynamodb_client, forget_clients, s3_client, sqs_client
from sluice.adapters.migrations import MigrationRunner, load_migrations
from sluice.adapters.timescale import TimescaleReadingSink
from sluice.services.load_worker import LoadService
from sluice.settings import get_load_worker_settings
from sluice_tools.local.resources import provision_stack
from sluice_tools.local.template import StackContext, function_environment
from sluice_tools.settings import get_database_settings

from ..lambdas import FakeLambdaContext, handler_module, template
from ..paths import MIGRATIONS_DIR, REPO_ROOT
from ..scratch import scratch_database
from ..worker_harness import WorkerHarness
from .bench_ingest import CallTimer
from .corpus import COPY_COLUMNS, Corpus, api_batches, copy_reference_csv, drop_csv, make_corpus

# The moto server `make moto` started (infra/moto.sh: MOTO_PORT, default 4566).
MOTO_ENDPOINT = f"http://127.0.0.1:{os.environ.get('MOTO_PORT', '4566')}"
PSQL = Path("/usr/lib/postgresql/15/bin/psql")
MESSAGES_PER_INVOCATION = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000, help="readings in the corpus")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child()
        return
    figures = measure_all(args.readings)
    report(figures)


def measure_all(readings: int) -> dict[str, float]:
    """Every case of the benchmark, in one database and one moto stack."""
    corpus = make_corpus(readings, now=datetime.now(UTC))
    server_dsn = psycopg.conninfo.make_conninfo(get_database_settings().db_dsn, dbname="postgres")
    with scratch_database(server_dsn, prefix="sluice_bench") as dsn, worker_stack(dsn) as worker:
        MigrationRunner(dsn, load_migrations(MIGRATIONS_DIR)).up()
        with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO systems (id, tenant_id, name) VALUES (%s, %s, %s)",
                [(system, corpus.tenant, f"system-{n}") for n, system in enumerate(corpus.systems)],
            )
        copy_rate = copy_reference(dsn, corpus)
        batch_1k, aws_1k = run_batches(worker, corpus, 1_000)
        with rollups_off(worker):
            bare_10k, _ = run_batches(worker, corpus, 10_000)
        batch_10k, aws_10k = run_batches(worker, corpus, 10_000)
        duplicates_10k, _ = run_batches(worker, corpus, 10_000, again=True)
        bare_drop = run_drop(worker, corpus, keep_rollups=False)
        drop = run_drop(worker, corpus)
    return {
        "readings": readings,
        "copy_rows_per_s": copy_rate,
        "batch_1k_rows_per_s": batch_1k,
        "batch_10k_rows_per_s": batch_10k,
        "batch_10k_all_duplicates_rows_per_s": duplicates_10k,
        "drop_1m_rows_per_s": drop["rows_per_s"],
        "batch_1k_aws_share": aws_1k,
        "batch_10k_aws_share": aws_10k,
        "ratio_1k": batch_1k / copy_rate,
        "ratio_10k": batch_10k / copy_rate,
        "ratio_10k_all_duplicates": duplicates_10k / copy_rate,
        "ratio_drop": drop["rows_per_s"] / copy_rate,
        "drop_peak_mb": drop["peak_mb"],
        "batch_10k_without_rollups_rows_per_s": bare_10k,
        "drop_1m_without_rollups_rows_per_s": bare_drop["rows_per_s"],
        "rollup_ratio_10k": batch_10k / bare_10k,
        "rollup_ratio_drop": drop["rows_per_s"] / bare_drop["rows_per_s"],
        "drop_baseline_mb": drop["baseline_mb"],
    }


@contextlib.contextmanager
def worker_stack(dsn: str) -> Iterator[WorkerHarness]:
    """template.yaml's resources in the moto server, and the worker with the template's environment."""
    os.environ.update(
        AWS_ENDPOINT_URL=MOTO_ENDPOINT,
        AWS_DEFAULT_REGION="eu-central-1",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
    )
    forget_clients()
    stack = StackContext(template(), stack_name=f"sluice-bench-{uuid4().hex[:8]}", region="eu-central-1")
    context = provision_stack(stack, s3_client(), sqs_client(), dynamodb_client())
    os.environ.update(function_environment(context, "LoadWorkerFunction"))
    os.environ.update(SLUICE_DB_SECRET_ARN="", SLUICE_DB_DSN=dsn, POWERTOOLS_LOG_LEVEL="WARNING")
    get_load_worker_settings.cache_clear()
    worker = WorkerHarness(handler_module("LoadWorkerFunction"), context, dsn)
    try:
        worker.receive()  # the s3:TestEvent of the new notification configuration
        yield worker
    finally:
        worker.module.get_service().connector.close()


@contextlib.contextmanager
def rollups_off(worker: WorkerHarness) -> Iterator[None]:
    """The worker with a sink that keeps no rollups, for the cases that price them."""
    worker.service = without_rollups(worker.module.get_service())
    try:
        yield
    finally:
        worker.service = None


def without_rollups(service: LoadService) -> LoadService:
    sink = TimescaleReadingSink(service.connector, keep_rollups=False)
    return dataclasses.replace(service, ports=dataclasses.replace(service.ports, sink=sink))


def copy_reference(dsn: str, corpus: Corpus) -> float:
    """Rows/s of ``psql \\copy`` of the corpus's valid rows (CSV) into an empty readings table."""
    empty_tables(dsn)
    with tempfile.NamedTemporaryFile(suffix=".csv") as file:
        file.write(copy_reference_csv(corpus, uuid4()))
        file.flush()
        command = f"\\copy readings ({', '.join(COPY_COLUMNS)}) FROM '{file.name}' WITH (FORMAT csv)"
        started = time.perf_counter()
        subprocess.run([str(PSQL), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command, dsn], check=True)
        elapsed = time.perf_counter() - started
    return corpus.expected["valid"] / elapsed


def run_batches(worker: WorkerHarness, corpus: Corpus, size: int, *, again: bool = False) -> tuple[float, float]:
    """Readings/s of the handler over the corpus as API batches of ``size``, and the share of its time spent in
    S3/DynamoDB/SQS calls; ``again`` keeps the stored readings, so every valid reading is a duplicate."""
    if not again:
        empty_tables(worker.dsn)
    total = 0
    for system_id, body in api_batches(corpus, size):
        worker.send_api_batch(corpus.tenant, system_id, body, len(json.loads(body)["readings"]))
    messages = worker.receive()
    timer = CallTimer()
    for client in (s3_client(), dynamodb_client(), sqs_client()):
        timer.attach(client)
    elapsed = 0.0
    for start in range(0, len(messages), MESSAGES_PER_INVOCATION):
        event = worker.event(messages[start : start + MESSAGES_PER_INVOCATION])
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the metrics' EMF lines
            response = worker.invoke(event)
        elapsed += time.perf_counter() - started
        assert response == {"batchItemFailures": []}, response
    for client in (s3_client(), dynamodb_client(), sqs_client()):  # what follows is the bench's, not the handler's
        timer.detach(client)
    for job in worker.jobs():
        if job.status == "completed" and job.total_readings:
            total += job.total_readings
    clear_jobs(worker)
    check_accounted(worker, corpus, stored_before=corpus.expected["valid"] if again else 0)
    assert total == len(corpus.rows), f"{total} of {len(corpus.rows)} readings done"
    return len(corpus.rows) / elapsed, timer.total_s / elapsed


def run_drop(worker: WorkerHarness, corpus: Corpus, *, keep_rollups: bool = True) -> dict[str, float]:
    """Readings/s and peak memory of one fresh worker process loading the corpus as one CSV.gz drop."""
    empty_tables(worker.dsn)
    worker.put("drops/bench/2026/11/corpus.csv.gz", gzip.compress(drop_csv(corpus), compresslevel=6))
    event = worker.event(worker.receive())
    child = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_worker", "--child"],
        input=json.dumps({"env": dict(os.environ), "event": event, "keep_rollups": keep_rollups}),
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["response"] == {"batchItemFailures": []}, result
    (job,) = worker.jobs()
    assert job.total_readings == len(corpus.rows), job
    clear_jobs(worker)
    check_accounted(worker, corpus, stored_before=0)
    return {
        "rows_per_s": len(corpus.rows) / result["seconds"],
        "peak_mb": result["peak_mb"],
        "baseline_mb": result["baseline_mb"],
    }


def run_child() -> None:
    """The drop's worker process: one invocation, then its time and peak RSS as the last line of stdout."""
    config = json.loads(sys.stdin.read())
    os.environ.clear()
    os.environ.update(config["env"])
    module = handler_module("LoadWorkerFunction")
    service = module.get_service() if config["keep_rollups"] else without_rollups(module.get_service())
    baseline_mb = peak_rss_mb()
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        response = module.lambda_handler(config["event"], FakeLambdaContext(remaining_ms=900_000), service=service)
    seconds = time.perf_counter() - started
    module.get_service().connector.close()
    peak_mb = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "baseline_mb": baseline_mb, "response": response}))


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss, which Linux carries across exec from
    the forked parent, so it would report the benchmark's own corpus."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def clear_jobs(worker: WorkerHarness) -> None:
    for job in worker.jobs():
        dynamodb_client().delete_item(TableName=worker.stack.ref("JobsTable"), Key={"job_id": {"S": str(job.job_id)}})


def empty_tables(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE readings, readings_1m, readings_1h, sensor_latest, quarantined_readings, ingest_ledger")


def check_accounted(worker: WorkerHarness, corpus: Corpus, *, stored_before: int) -> None:
    """The promise, checked after every case: each reading once in readings or quarantine, as the corpus says."""
    readings, quarantined, ledger = worker.query(
        "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM quarantined_readings),"
        " (SELECT coalesce(sum(total_readings), 0) FROM ingest_ledger)"
    )[0]
    if stored_before:  # the second pass: its readings were all stored already
        assert readings == stored_before, (readings, stored_before)
        assert quarantined == len(corpus.rows) * 2 - readings, quarantined
        return
    assert readings == corpus.expected["valid"], (readings, corpus.expected)
    assert readings + quarantined == len(corpus.rows) == ledger, (readings, quarantined, ledger)


def report(figures: dict[str, float]) -> None:
    copy_rate = figures["copy_rows_per_s"]
    print(f"\nLoadWorkerFunction, {figures['readings']:,.0f} readings per case (1% invalid, every reason)")
    print(f"{'case':<34}{'readings/s':>12}{'x \\copy':>10}")
    print(f"{'psql \\copy of the valid rows':<34}{copy_rate:>12,.0f}{1:>9.2f}x")
    for label, key in (
        ("API batches of 1,000", "batch_1k_rows_per_s"),
        ("API batches of 10,000", "batch_10k_rows_per_s"),
        ("the same 10,000s again (duplicates)", "batch_10k_all_duplicates_rows_per_s"),
        ("one CSV.gz drop", "drop_1m_rows_per_s"),
        ("API batches of 10,000, no rollups", "batch_10k_without_rollups_rows_per_s"),
        ("one CSV.gz drop, no rollups", "drop_1m_without_rollups_rows_per_s"),
    ):
        print(f"{label:<34}{figures[key]:>12,.0f}{figures[key] / copy_rate:>9.2f}x")
    print(
        f"keeping the rollups: {figures['rollup_ratio_10k']:.2f}x the throughput without them for the 10,000s, "
        f"{figures['rollup_ratio_drop']:.2f}x for the drop"
    )
    print(
        f"time in S3/DynamoDB calls (moto server): {figures['batch_1k_aws_share']:.0%} of the 1,000s, "
        f"{figures['batch_10k_aws_share']:.0%} of the 10,000s"
    )
    print(
        f"worker peak memory for the drop: {figures['drop_peak_mb']:.0f} MB (RSS of the whole process; "
        f"{figures['drop_baseline_mb']:.0f} MB before the invocation)"
    )
    out = REPO_ROOT / ".local" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    # Other benchmarks add their figures to the same file.
    kept = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    out.write_text(json.dumps(kept | figures, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
