"""IngestApiFunction's time per batch, in one process against moto, and how much of it is S3/DynamoDB calls.

    make bench            (or: .venv/bin/python -m tests.bench.bench_ingest [--runs N])

For batches of 1,000 and 10,000 readings (and 1,000 with an Idempotency-Key) it prints the handler's p50/p95 time,
the share of that time spent inside boto3 calls (moto answers in-process, so this is the calls' client-side cost,
not network latency), and the ratio to a reference measured in the same run: ``json.loads`` of the same body plus
one moto ``put_object`` of it, the least any handler that stores a checked batch must do. Writes the figures to
``.local/bench-ingest.json``. Machine noise is +-15-30% between runs: compare ratios, not absolute figures.
"""

import argparse
import contextlib
import io
import json
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

from moto import mock_aws

from sluice.adapters.aws import dynamodb_client, forget_clients, s3_client, sqs_client
from sluice_tools.local.resources import provision_stack
from sluice_tools.local.template import StackContext, function_environment

from ..lambdas import FakeLambdaContext, handler_module, load_event, template
from ..paths import REPO_ROOT
from .bench_validation import make_readings

SYSTEM_ID = "3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01"


class CallTimer:
    """Adds up the wall time of every boto3 call, from parameter checks to the parsed answer."""

    def __init__(self) -> None:
        self.total_s = 0.0
        self._started: list[float] = []

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.*.*", self._start)
        client.meta.events.register("after-call.*.*", self._stop)

    def detach(self, client: Any) -> None:
        client.meta.events.unregister("before-parameter-build.*.*", self._start)
        client.meta.events.unregister("after-call.*.*", self._stop)

    def _start(self, **_: Any) -> None:
        self._started.append(time.perf_counter())

    def _stop(self, **_: Any) -> None:
        self.total_s += time.perf_counter() - self._started.pop()


@contextlib.contextmanager
def ingest_stack() -> Iterator[tuple[Any, StackContext]]:
    """template.yaml's resources in an in-process moto, and the handler with the template's environment."""
    os.environ.update(AWS_DEFAULT_REGION="eu-central-1", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with mock_aws():
        forget_clients()
        context = provision_stack(
            StackContext(template(), stack_name="sluice-bench", region="eu-central-1"),
            s3_client(),
            sqs_client(),
            dynamodb_client(),
        )
        os.environ.update(function_environment(context, "IngestApiFunction"))
        # The bench sends far more than a device may; the limiter still reads and writes its log on every call.
        os.environ.update(SLUICE_RATE_LIMIT_REQUESTS="1000000", POWERTOOLS_LOG_LEVEL="WARNING")
        yield handler_module("IngestApiFunction"), context
    forget_clients()


def measure(module: Any, bucket: str, readings: int, runs: int, *, idempotent: bool) -> dict[str, float]:
    body = json.dumps({"system_id": SYSTEM_ID, "readings": make_readings(readings)}, separators=(",", ":"))
    timer = CallTimer()
    for client in (s3_client(), dynamodb_client()):
        timer.attach(client)
    handler_ms: list[float] = []
    aws_ms: list[float] = []
    reference_ms: list[float] = []
    for run in range(runs + 3):
        event = load_event("ingest-api-post.json")
        event["body"] = body
        if idempotent:
            event["headers"]["idempotency-key"] = str(uuid4())
        before_calls = timer.total_s
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the metrics' EMF lines
            answer = module.lambda_handler(event, FakeLambdaContext())
        elapsed = time.perf_counter() - started
        in_calls = timer.total_s - before_calls
        assert answer["statusCode"] == 202, answer
        reference_started = time.perf_counter()
        json.loads(body)
        s3_client().put_object(Bucket=bucket, Key=f"bench/{run}.json", Body=body.encode())
        reference = time.perf_counter() - reference_started
        if run >= 3:  # the first calls warm imports, clients and moto
            handler_ms.append(elapsed * 1000)
            aws_ms.append(in_calls * 1000)
            reference_ms.append(reference * 1000)
    quantiles = statistics.quantiles(handler_ms, n=20)
    return {
        "readings": readings,
        "body_bytes": len(body),
        "p50_ms": statistics.median(handler_ms),
        "p95_ms": quantiles[18],
        "aws_share": sum(aws_ms) / sum(handler_ms),
        "reference_p50_ms": statistics.median(reference_ms),
        "ratio_p50_to_reference": statistics.median(handler_ms) / statistics.median(reference_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="timed requests per case (10k batches: half)")
    args = parser.parse_args()
    with ingest_stack() as (module, context):
        bucket = context.refs["BatchBucket"]
        cases = {
            "batch_1k": measure(module, bucket, 1_000, args.runs, idempotent=False),
            "batch_1k_idempotency_key": measure(module, bucket, 1_000, args.runs, idempotent=True),
            "batch_10k": measure(module, bucket, 10_000, max(args.runs // 2, 5), idempotent=False),
        }
    print(f"{'case':<26}{'bytes':>10}{'p50 ms':>9}{'p95 ms':>9}{'in AWS calls':>14}{'x reference':>13}")
    for name, figures in cases.items():
        print(
            f"{name:<26}{figures['body_bytes']:>10,.0f}{figures['p50_ms']:>9.1f}{figures['p95_ms']:>9.1f}"
            f"{figures['aws_share']:>13.0%}{figures['ratio_p50_to_reference']:>12.2f}x"
        )
    print("reference: json.loads of the same body + one moto put_object of it, measured in the same run")
    out = REPO_ROOT / ".local" / "bench-ingest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(cases, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
