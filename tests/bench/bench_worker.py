"""LoadWorkerFunction end to end: readings/s through the real worker path, against ``psql \\copy`` in the same run.

    make bench            (or: .venv/bin/python -m tests.bench.bench_worker [--readings N])

One corpus of 1,000,000 realistic readings (100 systems x 20 sensors, about 1% invalid, spread over every
quarantine reason; tests/bench/corpus.py) goes through the worker four ways: as API batches of 1,000 and of 10,000
readings, as the same 10,000-reading batches sent again (every valid reading already stored: the duplicate path),
and as one CSV.gz drop of all of them. The rollups are kept in every case. Objects sit in the moto server's S3 and
reach the handler as the SQS events S3 put on IngestQueue, ten messages per invocation like the template's event
source; the database is the local TimescaleDB. Only the handler's time is counted. The reference is ``psql
\\copy`` of the same valid rows (CSV) into an empty ``readings``; every case starts from empty tables too. The drop
runs in a fresh process, whose peak RSS is the worker's peak memory (interpreter and libraries included, as Lambda
reports it).

Each case also says where its time went: CPU seconds of the worker, of the database cluster and of the moto server
(all on this machine), and the wall time with an AWS call in flight, with the calls counted by operation.

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
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg

from sluice.adapters.aws import dynamodb_client, forget_clients, s3_client, sqs_client
from sluice.adapters.migrations import MigrationRunner, load_migrations
from sluice.settings import get_load_worker_settings
from sluice_tools.local.resources import provision_stack
from sluice_tools.local.template import StackContext, function_environment
from sluice_tools.settings import get_database_settings

from ..lambdas import FakeLambdaContext, handler_module, template
from ..paths import MIGRATIONS_DIR, REPO_ROOT
from ..scratch import scratch_database
from ..worker_harness import WorkerHarness
from .api_ingest import measure_ingest
from .calls import CallMeter
from .corpus import COPY_COLUMNS, Corpus, api_batches, copy_reference_csv, drop_csv, make_corpus
from .costs import Usage, cost_per_million, database_cost_per_million, item_size_bytes, prices_json, report_lines
from .cpu import ServerCpu

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
    figures, cost_lines = measure_all(args.readings)
    report(figures, cost_lines)


@dataclasses.dataclass
class CaseFigures:
    """What one case took: the handler's wall time, and where it went."""

    readings: int
    invocations: int = 0
    wall_s: float = 0.0
    # CPU seconds of the worker's process (its threads included), of the database cluster and of the moto server.
    worker_cpu_s: float = 0.0
    database_cpu_s: float = 0.0
    moto_cpu_s: float = 0.0
    # Wall time with at least one AWS call in flight (read-ahead runs beside the loading, so this overlaps it).
    aws_busy_s: float = 0.0
    calls: Counter[str] = dataclasses.field(default_factory=Counter)
    peak_mb: float = 0.0
    baseline_mb: float = 0.0
    # What the case used in AWS (the ingest side's too, for API batches), for its price; what the tables grew by.
    usage: Usage | None = None
    stored_bytes: int = 0

    @property
    def rows_per_s(self) -> float:
        return self.readings / self.wall_s

    def as_json(self, name: str) -> dict[str, object]:
        return {
            f"{name}_rows_per_s": self.rows_per_s,
            f"{name}_wall_s": self.wall_s,
            f"{name}_worker_cpu_s": self.worker_cpu_s,
            f"{name}_database_cpu_s": self.database_cpu_s,
            f"{name}_moto_cpu_s": self.moto_cpu_s,
            f"{name}_aws_busy_s": self.aws_busy_s,
            f"{name}_invocations": self.invocations,
            f"{name}_aws_calls": dict(sorted(self.calls.items())),
        }


@contextlib.contextmanager
def measured(case: CaseFigures, servers: ServerCpu) -> Iterator[None]:
    """Add the servers' CPU and the worker's (this process) while the block runs to ``case``."""
    database, moto, worker = servers.database_s(), servers.moto_s(), time.process_time()
    try:
        yield
    finally:
        case.database_cpu_s += servers.database_s() - database
        case.moto_cpu_s += servers.moto_s() - moto
        case.worker_cpu_s += time.process_time() - worker


def measure_all(readings: int) -> tuple[dict[str, object], list[str]]:
    """Every case of the benchmark, in one database and one moto stack; its figures, and its cost table."""
    corpus = make_corpus(readings, now=datetime.now(UTC))
    server_dsn = psycopg.conninfo.make_conninfo(get_database_settings().db_dsn, dbname="postgres")
    with scratch_database(server_dsn, prefix="sluice_bench") as dsn, worker_stack(dsn) as worker:
        MigrationRunner(dsn, load_migrations(MIGRATIONS_DIR)).up()
        with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO systems (id, tenant_id, name) VALUES (%s, %s, %s)",
                [(system, corpus.tenant, f"system-{n}") for n, system in enumerate(corpus.systems)],
            )
        servers = ServerCpu(dsn, MOTO_ENDPOINT.rsplit(":", 1)[1])
        copy_rate = copy_reference(dsn, corpus)
        cases = {
            "batch_1k": run_batches(worker, corpus, 1_000, servers),
            "batch_10k": run_batches(worker, corpus, 10_000, servers),
            "batch_10k_all_duplicates": run_batches(worker, corpus, 10_000, servers, again=True),
            "drop_1m": run_drop(worker, corpus, servers),
        }
    figures: dict[str, object] = {"readings": readings, "copy_rows_per_s": copy_rate} | prices_json()
    for name, case in cases.items():
        assert case.usage is not None
        figures |= case.as_json(name)
        figures |= cost_per_million(case.usage).as_json(name)
        figures |= database_cost_per_million(case.database_cpu_s, case.stored_bytes, case.readings).as_json(name)
    labels = {key: label for label, key in CASES}
    cost_lines = report_lines(
        {key: cost_per_million(case.usage) for key, case in cases.items() if case.usage is not None},
        {
            key: database_cost_per_million(case.database_cpu_s, case.stored_bytes, case.readings)
            for key, case in cases.items()
        },
        labels,
    )
    drop = cases["drop_1m"]
    return figures | {
        "ratio_1k": cases["batch_1k"].rows_per_s / copy_rate,
        "ratio_10k": cases["batch_10k"].rows_per_s / copy_rate,
        "ratio_10k_all_duplicates": cases["batch_10k_all_duplicates"].rows_per_s / copy_rate,
        "ratio_drop": drop.rows_per_s / copy_rate,
        "drop_peak_mb": drop.peak_mb,
        "drop_baseline_mb": drop.baseline_mb,
    }, cost_lines


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


def run_batches(
    worker: WorkerHarness, corpus: Corpus, size: int, servers: ServerCpu, *, again: bool = False
) -> CaseFigures:
    """The handler over the corpus as API batches of ``size``, ten messages per invocation; ``again`` keeps the
    stored readings, so every valid reading is a duplicate."""
    if not again:
        empty_tables(worker.dsn)
    stored_before = stored_bytes(worker.dsn)
    # Through the real IngestApiFunction handler: its durations and calls are part of what the readings cost.
    ingest = measure_ingest(worker.stack, [(corpus.tenant, system, body) for system, body in api_batches(corpus, size)])
    messages = worker.receive()
    case = CaseFigures(readings=len(corpus.rows))
    usage = Usage(readings=case.readings, ingest=ingest.tally, api_request_bytes=ingest.request_bytes)
    with CallMeter().attach(s3_client(), dynamodb_client(), sqs_client()) as meter:
        for start in range(0, len(messages), MESSAGES_PER_INVOCATION):
            event = worker.event(messages[start : start + MESSAGES_PER_INVOCATION])
            with measured(case, servers):
                started = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):  # the metrics' EMF lines
                    response = worker.invoke(event)
                seconds = time.perf_counter() - started
            case.wall_s += seconds
            usage.worker.add(seconds)
            case.invocations += 1
            assert response == {"batchItemFailures": []}, response
    case.aws_busy_s, case.calls = meter.busy_s, meter.calls
    usage.calls = ingest.calls + meter.calls
    usage.queue_message_bytes = sum(len(message["Body"]) for message in messages) // len(messages)
    usage.dynamodb_item_bytes = job_item_bytes(worker)
    case.usage = usage
    case.stored_bytes = stored_bytes(worker.dsn) - stored_before
    total = sum(job.total_readings or 0 for job in worker.jobs() if job.status == "completed")
    clear_jobs(worker)
    check_accounted(worker, corpus, stored_before=corpus.expected["valid"] if again else 0)
    assert total == len(corpus.rows), f"{total} of {len(corpus.rows)} readings done"
    return case


def run_drop(worker: WorkerHarness, corpus: Corpus, servers: ServerCpu) -> CaseFigures:
    """One fresh worker process loading the corpus as one CSV.gz drop: its time, CPU and peak memory."""
    empty_tables(worker.dsn)
    stored_before = stored_bytes(worker.dsn)
    worker.put("drops/bench/2026/11/corpus.csv.gz", gzip.compress(drop_csv(corpus), compresslevel=6))
    messages = worker.receive()
    event = worker.event(messages)
    case = CaseFigures(readings=len(corpus.rows), invocations=1)
    with measured(case, servers):
        child = subprocess.run(
            [sys.executable, "-m", "tests.bench.bench_worker", "--child"],
            input=json.dumps({"env": dict(os.environ), "event": event}),
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO_ROOT,
        )
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["response"] == {"batchItemFailures": []}, result
    (job,) = worker.jobs()
    assert job.total_readings == len(corpus.rows), job
    usage = Usage(readings=case.readings, uploaded_objects=1, calls=Counter(result["calls"]))
    usage.worker.add(result["seconds"])
    usage.queue_message_bytes = len(messages[0]["Body"])
    usage.dynamodb_item_bytes = job_item_bytes(worker)
    case.usage = usage
    clear_jobs(worker)
    check_accounted(worker, corpus, stored_before=0)
    case.stored_bytes = stored_bytes(worker.dsn) - stored_before
    # This process only waited on the child: the worker's CPU is the child's own.
    case.worker_cpu_s = result["cpu_s"]
    case.wall_s, case.peak_mb, case.baseline_mb = result["seconds"], result["peak_mb"], result["baseline_mb"]
    case.aws_busy_s, case.calls = result["aws_busy_s"], Counter(result["calls"])
    return case


def run_child() -> None:
    """The drop's worker process: one invocation, then its time, CPU, AWS calls and peak RSS as the last line."""
    config = json.loads(sys.stdin.read())
    os.environ.clear()
    os.environ.update(config["env"])
    module = handler_module("LoadWorkerFunction")
    service = module.get_service()
    baseline_mb = peak_rss_mb()
    with CallMeter().attach(s3_client(), dynamodb_client(), sqs_client()) as meter:
        cpu = time.process_time()
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            response = module.lambda_handler(config["event"], FakeLambdaContext(remaining_ms=900_000), service=service)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
    service.connector.close()
    figures = {
        "seconds": seconds,
        "cpu_s": cpu,
        "aws_busy_s": meter.busy_s,
        "calls": dict(meter.calls),
        "peak_mb": peak_rss_mb(),
        "baseline_mb": baseline_mb,
        "response": response,
    }
    print(json.dumps(figures))


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss, which Linux carries across exec from
    the forked parent, so it would report the benchmark's own corpus."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def job_item_bytes(worker: WorkerHarness) -> int:
    """The largest job item stored now (a completed one, as the worker writes it), in DynamoDB's size rules."""
    items = dynamodb_client().scan(TableName=worker.stack.ref("JobsTable"))["Items"]
    return max(item_size_bytes(item) for item in items)


def stored_bytes(dsn: str) -> int:
    """What the tables a load writes take on disk, indexes included."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT hypertable_size('readings') + hypertable_size('readings_1m') + hypertable_size('readings_1h')"
            " + pg_total_relation_size('sensor_latest') + pg_total_relation_size('quarantined_readings')"
            " + pg_total_relation_size('ingest_ledger')"
        ).fetchone()
    assert row is not None
    return int(row[0])


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


CASES = (
    ("API batches of 1,000", "batch_1k"),
    ("API batches of 10,000", "batch_10k"),
    ("the same 10,000s again (duplicates)", "batch_10k_all_duplicates"),
    ("one CSV.gz drop", "drop_1m"),
)


def report(figures: dict[str, Any], cost_lines: list[str]) -> None:
    copy_rate = figures["copy_rows_per_s"]
    print(
        f"\nLoadWorkerFunction, {figures['readings']:,.0f} readings per case (1% invalid, every reason), rollups kept"
    )
    print(
        f"{'case':<38}{'readings/s':>11}{'x \\copy':>9}{'wall s':>8}{'worker':>8}{'database':>9}{'moto':>7}"
        f"{'AWS busy':>10}"
    )
    print(f"{'psql \\copy of the valid rows':<38}{copy_rate:>11,.0f}{1:>8.2f}x")
    for label, key in CASES:
        rate = figures[f"{key}_rows_per_s"]
        print(
            f"{label:<38}{rate:>11,.0f}{rate / copy_rate:>8.2f}x{figures[f'{key}_wall_s']:>8.2f}"
            f"{figures[f'{key}_worker_cpu_s']:>8.2f}{figures[f'{key}_database_cpu_s']:>9.2f}"
            f"{figures[f'{key}_moto_cpu_s']:>7.2f}{figures[f'{key}_aws_busy_s']:>10.2f}"
        )
    print(
        "worker, database, moto: CPU seconds of each process over the case; AWS busy: wall seconds with an S3,"
        " DynamoDB or SQS call in flight (read-ahead overlaps the loading)"
    )
    for label, key in CASES:
        calls = ", ".join(f"{name} {count:,}" for name, count in figures[f"{key}_aws_calls"].items())
        print(f"  {label}: {figures[f'{key}_invocations']:,} invocations; {calls}")
    print(
        f"worker peak memory for the drop: {figures['drop_peak_mb']:.0f} MB (RSS of the whole process; "
        f"{figures['drop_baseline_mb']:.0f} MB before the invocation)"
    )
    for line in cost_lines:
        print(line)
    out = REPO_ROOT / ".local" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    # Other benchmarks add their figures to the same file.
    kept = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    out.write_text(json.dumps(kept | figures, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
