"""The load run: many devices posting batches for minutes while drops arrive and operators read, against `make
run`'s stack (infra/run.sh on free ports, its own database); then the oracle says whether every accepted reading
landed exactly once.

    SLUICE_LOAD_SECONDS=30 .venv/bin/pytest tests/reliability/test_load.py --no-cov -s

The duration comes from SLUICE_LOAD_SECONDS (default 180); the shape (tests/reliability/load.py) is fixed. The
figures go to .local/reliability/load.json. The machine's 2 cores carry the client, the twin, moto, the functions
and PostgreSQL at once, so latencies move with whatever else runs: compare runs made on a quiet machine.
"""

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from sluice_tools.local.stack import local_token

from ..paths import REPO_ROOT
from ..stack_harness import SYSTEM, RunningStack, running_stack
from .figures import record_figures
from .load import (
    LoadShape,
    LoadTarget,
    describe,
    headline,
    job_turnaround,
    percentiles,
    queue_waits,
    run_load,
    summarise,
)
from .oracle import AcceptanceLog, all_jobs, check

DURATION_S = float(os.environ.get("SLUICE_LOAD_SECONDS", "180"))
TENANT = "demo"
# Long enough that a batch still being loaded on a busy machine is not handed to a second worker.
VISIBILITY_S = 60
WORKER_BATCH = re.compile(r"^LoadWorkerFunction <- (\d+) message\(s\) from the queue: (.+) \((\d+) ms\)$")
TWIN_REQUEST = re.compile(r"^(GET|POST) (\S+) -> \w+ (\d{3}) \(([\d.]+) ms\)$")
INVOCATION_FAILED = re.compile(r"^  \w+ failed: ")

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def stack(server_dsn: str) -> Iterator[RunningStack]:
    with running_stack(server_dsn, "sluice-load", visibility_s=VISIBILITY_S, prefix="sluice_load") as running:
        yield running


def test_the_stack_keeps_every_promise_under_sustained_load(stack: RunningStack) -> None:
    shape = LoadShape(duration_s=DURATION_S)
    names = stack.names()
    local_dir = REPO_ROOT / ".local"

    def mint(sub: str, scope: str) -> str:
        return local_token(names, local_dir, tenant=TENANT, subject=sub, scope=scope)[0]

    target = LoadTarget(
        api=stack.api,
        tenant=TENANT,
        system_id=SYSTEM,
        device_tokens=[mint(f"load-device-{n:02d}", "ingest:write") for n in range(shape.devices)],
        operator_tokens=[mint(f"load-operator-{n}", "jobs:read quarantine:read") for n in range(shape.operators)],
        bucket=names.ref("BatchBucket"),
        queue_url=names.ref("IngestQueue"),
        dsn=stack.dsn,
        s3=stack.s3(),
        sqs=stack.sqs(),
    )
    log = AcceptanceLog()
    already = len(stack.lines)
    load_before = os.getloadavg()

    result = run_load(shape, target, log)
    report = check(stack, log, timeout_s=max(300.0, DURATION_S))

    jobs = all_jobs(stack)
    figures = summarise(result)
    figures["queue_wait"] = {
        # moto's GetQueueAttributes has no ApproximateAgeOfOldestMessage (in AWS it is a CloudWatch metric).
        "source": "job records: started_at - created_at (API jobs), started_at - PutObject's return (drops)",
        **queue_waits(jobs, result),
    }
    figures["job_turnaround_s"] = job_turnaround(jobs)
    figures["stack_log"] = stack_log_figures(stack.lines[already:])
    # Others may share the 2 cores: the 1-minute load average before and after says how noisy the figures are.
    figures["load_average_1m"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    figures["oracle"] = report.as_dict()
    figures |= headline(figures)
    record_figures("load", figures)
    print("\n" + describe(figures))

    assert result.accepted_batches > 0
    assert result.server_errors == 0, figures["requests"]
    assert result.transport_errors == 0, result.errors[:10]
    assert figures["requests"]["unexpected"] == {}, figures["requests"]
    assert report.ok, report.as_dict()
    # The planted readings, and only they, went to quarantine: every pair is unique, so nothing is a duplicate.
    assert (report.in_readings, report.in_quarantine) == (log.readings - result.planted_invalid, result.planted_invalid)


def stack_log_figures(lines: list[str]) -> dict[str, Any]:
    """What the stack's own lines say: the worker's batches (size, duration, messages returned for a retry) and
    the twin's time per request (no client queueing in it)."""
    sizes, durations, returned = [], [], 0
    twin_ms: list[float] = []
    failures = [line.strip() for line in lines if INVOCATION_FAILED.match(line)]
    for line in lines:
        if batch := WORKER_BATCH.match(line):
            sizes.append(float(batch.group(1)))
            durations.append(float(batch.group(3)))
            if batch.group(2) != "all deleted":
                returned += int(batch.group(2).split()[0]) if batch.group(2)[0].isdigit() else 1
        elif request := TWIN_REQUEST.match(line):
            twin_ms.append(float(request.group(4)))
    return {
        "worker_invocations": len(sizes),
        "worker_messages": int(sum(sizes)),
        "worker_messages_returned": returned,
        "invocations_failed": len(failures),
        "invocation_failures_sample": failures[:5],
        "worker_batch_size": percentiles(sizes),
        "worker_invocation_ms": percentiles(durations),
        "twin_request_ms": percentiles(twin_ms),
    }
