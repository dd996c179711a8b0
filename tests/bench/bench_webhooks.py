"""Webhook delivery latency: from the commit of an outbox insert to the receiver having the request.

    .venv/bin/python -m tests.bench.bench_webhooks [--deliveries 200] [--gap-ms 20] [--subscriptions 4]

A scratch database, a real receiver on loopback (verifying every signature) and the dispatcher as
WebhookDispatcherFunction runs it (``WebhookDispatcher.run``, its settings' defaults, a sluice_notifier login), in a
thread, asleep on the outbox's notifications. Then two workloads:

* *paced*: ``--deliveries`` changes announced one at a time, each in its own transaction, ``--gap-ms`` apart (a
  trickle of alarms), spread over ``--subscriptions`` subscriptions of as many tenants; the latency of each, from
  just after its commit returned to the receiver reading its body;
* *burst*: as many announced in one transaction (an evaluator raising many alarms in one minute); the latency of the
  first and the last to arrive.

Both clocks are this process's ``time.time()``: the latency includes the notification, the claim, signing, the HTTP
request and the receiver's parsing, everything but the network of a deployment.

The reference, in the same run: the same receiver's answer to a bare POST of such a body from this process (one
connection each, as the dispatcher opens one per attempt), so ``x POST`` is the latency over the HTTP round trip.
Figures go to ``.local/bench.json`` too (``webhook_*``).
"""

import argparse
import http.client
import json
import statistics
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from sluice.adapters.migrations import MigrationRunner, load_migrations
from sluice.adapters.outbox import enqueue
from sluice.domain.webhooks import Announcement, new_secret
from sluice.services.webhook_dispatcher import build_webhook_dispatcher
from sluice.settings import WebhookDispatcherSettings
from sluice_tools.settings import get_database_settings

from ..logins import group_login
from ..paths import MIGRATIONS_DIR, REPO_ROOT
from ..scratch import scratch_database
from ..webhook_receiver import WebhookReceiver

# The dispatcher's run lasts longer than any workload here; it is stopped by running its clock down.
RUN_MS = 3_600_000


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def subscribe(conn: psycopg.Connection[Any], receiver: WebhookReceiver, count: int) -> list[str]:
    """``count`` tenants, each with one subscription to its own path of the receiver."""
    tenants = []
    for n in range(count):
        tenant, secret = f"bench-{n}", new_secret()
        row = conn.execute(
            "INSERT INTO webhooks (tenant_id, url, events, created_by) VALUES (%s, %s, %s, 'bench') RETURNING id",
            (tenant, receiver.url_for(f"/{tenant}", secret), ["alarm.raised"]),
        ).fetchone()
        assert row is not None
        conn.execute("INSERT INTO webhook_secrets (webhook_id, secret) VALUES (%s, %s)", (row[0], secret))
        tenants.append(tenant)
    return tenants


def announcement(tenant: str, key: str) -> Announcement:
    data = {"id": key, "rule_name": "pressure high", "value": 212.5, "severity": "warning"}
    return Announcement(tenant, "alarm.raised", f"alarm.raised:{key}", datetime.now(UTC), data)


def bare_post_ms(receiver: WebhookReceiver, count: int) -> float:
    """The median round trip of a plain POST of a delivery-sized body to the receiver, a connection each."""
    body = json.dumps({"type": "alarm.raised", "data": announcement("ref", "ref").data}).encode()
    times = []
    for _ in range(count):
        began = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=10)
        conn.request("POST", "/reference", body, {"content-type": "application/json"})
        conn.getresponse().read()
        conn.close()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def measure(dsn: str, deliveries: int, gap_ms: float, subscriptions: int) -> None:
    receiver = WebhookReceiver().start()
    with psycopg.connect(dsn, autocommit=True) as conn:
        tenants = subscribe(conn, receiver, subscriptions)
    with group_login(dsn, "NotifierDatabaseSecretArn", "sluice_notifier", "notifier") as notifier_dsn:
        settings = WebhookDispatcherSettings(db_dsn=notifier_dsn, webhook_allow_local=True)
        dispatcher = build_webhook_dispatcher(settings)
        deadline = time.monotonic() + RUN_MS / 1000
        run = threading.Thread(
            target=dispatcher.run, args=(lambda: int((deadline - time.monotonic()) * 1000),), daemon=True
        )
        run.start()
        time.sleep(0.5)  # the dispatcher is asleep on its channel
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                committed: dict[str, float] = {}
                for n in range(deliveries):
                    enqueue(conn, announcement(tenants[n % len(tenants)], f"p{n}"))
                    committed[f"p{n}"] = time.time()
                    time.sleep(gap_ms / 1000)
                paced = receiver.wait_for(deliveries, timeout_s=60)
                latencies = [(d.received_at - committed[d.payload["data"]["id"]]) * 1000 for d in paced]

                receiver.clear()
                with conn.transaction():
                    for n in range(deliveries):
                        enqueue(conn, announcement(tenants[n % len(tenants)], f"b{n}"))
                burst_committed = time.time()
                burst = receiver.wait_for(deliveries, timeout_s=60)
                arrivals = sorted((d.received_at - burst_committed) * 1000 for d in burst)
            reference = bare_post_ms(receiver, deliveries)
        finally:
            deadline = time.monotonic()  # the run's clock runs out: it stops claiming and returns
            run.join(30)
            dispatcher.close()
            receiver.stop()

    assert all(d.verified for d in paced + burst)
    print(f"webhook delivery latency, commit -> receiver ({deliveries} deliveries, {subscriptions} subscriptions)")
    print(
        f"  paced, one every {gap_ms:g} ms: median {statistics.median(latencies):.1f} ms,"
        f" p95 {percentile(latencies, 0.95):.1f} ms, max {max(latencies):.1f} ms"
    )
    print(f"  burst, {deliveries} in one commit: first {arrivals[0]:.1f} ms, last {arrivals[-1]:.1f} ms")
    median = statistics.median(latencies)
    print(f"  reference: a bare POST's round trip {reference:.2f} ms; paced median {median / reference:.1f}x POST")
    figures = {
        "webhook_latency_median_ms": round(median, 2),
        "webhook_latency_p95_ms": round(percentile(latencies, 0.95), 2),
        "webhook_burst_last_ms": round(arrivals[-1], 1),
        "webhook_bare_post_ms": round(reference, 3),
        "webhook_latency_x_post": round(median / reference, 2),
    }
    out = REPO_ROOT / ".local" / "bench.json"
    existing = json.loads(out.read_text()) if out.is_file() else {}
    out.write_text(json.dumps(existing | figures, indent=2, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    parser.add_argument("--subscriptions", type=int, default=4)
    args = parser.parse_args()
    server = get_database_settings().db_dsn
    with scratch_database(server, prefix="sluice_bench") as dsn:
        MigrationRunner(dsn, load_migrations(MIGRATIONS_DIR)).up()
        measure(dsn, args.deliveries, args.gap_ms, args.subscriptions)


if __name__ == "__main__":
    main()
