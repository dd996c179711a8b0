"""The local stack's HTTP API: latency of POST /api/v1/data/ingest with 1,000 readings through the twin.

    make bench            (or: .venv/bin/python -m tests.bench.bench_twin [--requests N])

Starts `make run`'s stack in this process (``LocalStack``: the moto server ``make moto`` started on ``MOTO_PORT``,
a scratch database, the functions in their own processes) and sends N requests (default 300, after 20 to warm up)
over one keep-alive connection, each a fresh 1,000-reading batch.
The queue poller is off: in AWS the worker does not share the API's CPU; on this 2-core machine it would.
The reference, measured in the same run, is the same function invoked directly with the same event: the twin's
own cost is the difference (HTTP, JWT verification, route selection, the 2.0 event). The goal is a p95 of at
most 50 ms, the API's target. Compare the ratios; absolute figures move +-20% between runs on this machine.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from sluice_tools.local.api import HttpRequest, proxy_event
from sluice_tools.local.demo import DEMO_SYSTEM_ID
from sluice_tools.local.stack import LocalStack, LocalStackOptions, local_token
from sluice_tools.settings import get_database_settings

from ..paths import MIGRATIONS_DIR, REPO_ROOT
from ..scratch import scratch_database

READINGS = 1_000
WARM_UP = 20
UNITS = (("bar", 210.0), ("celsius", 55.0), ("lpm", 120.0), ("rpm", 1480.0))


def batch(number: int) -> bytes:
    """A fresh batch: 250 minutes of four channels, shifted per request so no two batches repeat a reading."""
    start = datetime.now(UTC) - timedelta(days=30) + timedelta(hours=5 * number)
    readings = [
        {
            "sensor_id": f"8a4e2b10-3c5d-4e6f-8a01-5b6c7d8e9f0{channel}",
            "timestamp": (start + timedelta(minutes=n // 4)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": UNITS[channel][1],
            "unit": UNITS[channel][0],
            "quality": 97,
        }
        for n in range(READINGS)
        for channel in [n % 4]
    ]
    return json.dumps({"system_id": str(DEMO_SYSTEM_ID), "readings": readings}).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": statistics.median(samples), "p95": cuts[94], "max": max(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    server_dsn = psycopg.conninfo.make_conninfo(get_database_settings().db_dsn, dbname="postgres")
    with scratch_database(server_dsn, prefix="sluice_bench") as dsn:
        from sluice.adapters.migrations import MigrationRunner, load_migrations  # noqa: PLC0415

        MigrationRunner(dsn, load_migrations(MIGRATIONS_DIR)).up()
        figures = measure(dsn, args.requests)
    report(figures)


def measure(dsn: str, requests: int) -> dict[str, Any]:
    port = free_port()
    options = LocalStackOptions(
        root=REPO_ROOT,
        database_dsn=dsn,
        moto_endpoint=f"http://127.0.0.1:{os.environ.get('MOTO_PORT', '4566')}",  # infra/moto.sh's
        stack_name="sluice-bench",
        port=port,
        # Every request comes from one principal: lift its rate limit (the check itself still runs).
        env_overrides={"IngestApiFunction": {"SLUICE_RATE_LIMIT_REQUESTS": "1000000"}},
        # Batches stay queued: in AWS the worker runs elsewhere, on this 2-core machine it would take the API's CPU.
        poll_queues=False,
    )
    stack = LocalStack(options, open(os.devnull, "w"))  # noqa: SIM115 - closed with the process
    stack.start()
    try:
        assert stack.context is not None
        token, claims = local_token(
            stack.context, REPO_ROOT / ".local", tenant="demo", subject="bench", scope="ingest:write"
        )
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        twin: list[float] = []
        for number in range(WARM_UP + requests):
            body = batch(number)
            started = time.perf_counter()
            connection.request("POST", "/api/v1/data/ingest", body=body, headers=headers)
            answer = connection.getresponse()
            answer.read()
            elapsed = (time.perf_counter() - started) * 1000
            if answer.status != 202:
                raise RuntimeError(f"request {number} answered {answer.status}")
            if number >= WARM_UP:
                twin.append(elapsed)
        # The reference: the same function, invoked directly with the event the twin would build.
        route = next(route for route in stack_routes(stack) if route.function == "IngestApiFunction")
        direct: list[float] = []
        for number in range(requests):
            request = HttpRequest(
                "POST", "/api/v1/data/ingest", "", list(headers.items()), batch(10_000 + number), "127.0.0.1"
            )
            event = proxy_event(
                request,
                route,
                {},
                api_id="local",
                authorizer_context={
                    "jwt": {"claims": {k: str(v) for k, v in claims.items()}, "scopes": ["ingest:write"]}
                },
            )
            started = time.perf_counter()
            invocation = stack.invoke("IngestApiFunction", event)
            direct.append((time.perf_counter() - started) * 1000)
            if invocation.failed or invocation.result["statusCode"] != 202:
                raise RuntimeError(f"direct invocation {number} failed: {invocation.error or invocation.result}")
        connection.close()
    finally:
        stack.stop()
    return {
        "requests": requests,
        "readings_per_request": READINGS,
        "twin_ms": percentiles(twin),
        "direct_ms": percentiles(direct),
    }


def stack_routes(stack: LocalStack) -> list[Any]:
    from sluice_tools.local.api import http_api_routes  # noqa: PLC0415

    assert stack.context is not None
    return http_api_routes(stack.context)[1]


def report(figures: dict[str, Any]) -> None:
    twin, direct = figures["twin_ms"], figures["direct_ms"]
    print(f"\nPOST /api/v1/data/ingest, {figures['readings_per_request']:,} readings, {figures['requests']} requests")
    print(f"  {'':<32}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    print(f"  {'direct invoke (reference)':<32}{direct['p50']:>9.1f}{direct['p95']:>9.1f}{direct['max']:>9.1f}")
    print(f"  {'through the HTTP API twin':<32}{twin['p50']:>9.1f}{twin['p95']:>9.1f}{twin['max']:>9.1f}")
    print(
        f"  twin / direct: p50 {twin['p50'] / direct['p50']:.2f}x, p95 {twin['p95'] / direct['p95']:.2f}x;"
        f" goal p95 <= 50 ms: {'met' if twin['p95'] <= 50 else 'NOT met'}"
    )
    out = Path(".local") / "bench-twin.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
