"""The load run's generator: devices posting batches, an integrator dropping files and operators reading, all at
once against a running local stack, for a bounded time and at a bounded rate.

Every device is a principal of its own (its own ``sub``) posting one batch every ``post_interval_s`` (with jitter)
and never more than ``rate_limit - 1`` requests in any ``rate_window_s + 2`` seconds, so the ingest API's
per-principal limit is never the reason a batch is refused. A cap on in-flight requests keeps the client from
queueing more work than the twin's execution environments can take. Every reading has a ``(sensor_id, timestamp)``
pair of its own across the run: each device and the drop feed own their sensors, and each sensor's timestamps go up
one second per reading from a start a few days back. A small share of readings is invalid on purpose (out of range,
unknown unit), so quarantine fills as well, and their number is known.

What was promised (each 202, each stored drop) goes into the oracle's ``AcceptanceLog``; what was observed (status
codes, latencies, queue depth, freshness) comes back as a ``LoadResult``.
"""

import asyncio
import csv
import gzip
import io
import json
import random
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import httpx
import psycopg

from sluice.models.jobs import Job, JobSource

from .oracle import AcceptanceLog

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

INGEST = "POST /api/v1/data/ingest"
LIST_JOBS = "GET /api/v1/jobs"
GET_JOB = "GET /api/v1/jobs/{job_id}"
LIST_QUARANTINE = "GET /api/v1/quarantine"
DROP = "S3 PutObject drops/"
API_ROUTES = (INGEST, LIST_JOBS, GET_JOB, LIST_QUARANTINE)

# Per unit: a typical value inside its range and one outside it (the ranges of sluice.domain.rules).
CHANNELS = (("bar", 210.0, 812.5), ("celsius", 55.0, 150.0), ("lpm", 120.0, 1_500.0), ("rpm", 1_480.0, 9_000.0))
CSV_HEADER = ("system_id", "sensor_id", "timestamp", "value", "unit", "quality")
FRESHNESS_DEFINITION = (
    "client clock, from the 202's arrival to the first poll (every {poll}s) at which the batch's ingest_ledger rows "
    "(committed in one transaction with its readings and quarantine rows) cover all of its readings; "
    "every {every}th accepted batch"
)


@dataclass(frozen=True, slots=True)
class LoadShape:
    """How hard and how long to push. The defaults fit a 2-core machine that also runs the whole stack."""

    duration_s: float
    devices: int = 30
    sensors_per_device: int = 4
    post_interval_s: float = 5.0
    post_jitter_s: float = 0.75
    batch_readings: tuple[int, int] = (50, 500)
    invalid_share: float = 0.02
    drop_interval_s: float = 20.0
    drop_rows: tuple[int, int] = (2_000, 4_000)
    drop_sensors: int = 8
    operators: int = 3
    operator_interval_s: float = 2.0
    max_in_flight: int = 8
    # The ingest API's per-principal limit (template.yaml's RateLimitRequests per RateLimitWindowSeconds).
    rate_limit: int = 15
    rate_window_s: float = 60.0
    freshness_every: int = 10
    freshness_poll_s: float = 0.25
    queue_sample_s: float = 1.0
    request_timeout_s: float = 60.0
    # Figures are given for the whole run and again without its first seconds, while execution environments start.
    warmup_s: float = 30.0
    seed: int = 20261122

    def first_timestamp(self, now: datetime) -> datetime:
        """Where every sensor's timestamps start: far enough back that a sensor's last reading of the run (one
        second apart) is still in the past, and never near the 5-year limit."""
        per_sensor = self.duration_s / max(self.post_interval_s - self.post_jitter_s, 1.0)
        span_s = per_sensor * max(
            self.batch_readings[1] / self.sensors_per_device, self.drop_rows[1] / self.drop_sensors
        )
        return (now - timedelta(days=3) - timedelta(seconds=span_s)).replace(microsecond=0)


@dataclass(frozen=True)
class LoadTarget:
    """Where the load goes: the stack's API, the tokens (one per device, one per operator), its bucket and queue."""

    api: str
    tenant: str
    system_id: str
    device_tokens: Sequence[str]
    operator_tokens: Sequence[str]
    bucket: str
    queue_url: str
    dsn: str
    s3: "S3Client"
    sqs: "SQSClient"


@dataclass
class LoadResult:
    """What the clients saw."""

    shape: LoadShape
    started_wall: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_mono: float = field(default_factory=time.monotonic)
    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    # (seconds into the run when the answer came, milliseconds), per route.
    latencies_ms: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    accepted_batches: int = 0
    accepted_api_readings: int = 0
    drops: int = 0
    drop_readings: int = 0
    planted_invalid: int = 0
    posting_window_s: float = 0.0
    # (seconds into the run when the 202 came, seconds until visible).
    freshness_s: list[tuple[float, float]] = field(default_factory=list)
    freshness_unseen: int = 0
    queue_visible_max: int = 0
    queue_in_flight_max: int = 0
    # (seconds into the run, visible, in flight), one per sample.
    queue_samples: list[tuple[float, int, int]] = field(default_factory=list)
    # When each drop's PutObject returned (wall clock), by key: the start of its wait in the queue.
    drop_stored_at: dict[str, datetime] = field(default_factory=dict)

    def record(self, route: str, status: str, elapsed_ms: float | None) -> None:
        self.statuses.setdefault(route, Counter())[status] += 1
        if elapsed_ms is not None:
            self.latencies_ms.setdefault(route, []).append((time.monotonic() - self.started_mono, elapsed_ms))

    def count(self, predicate: Callable[[str, str], bool]) -> int:
        """Requests whose (route, status) match."""
        return sum(
            n for route, counts in self.statuses.items() for status, n in counts.items() if predicate(route, status)
        )

    @property
    def server_errors(self) -> int:
        return self.count(lambda route, status: route != DROP and status.startswith("5"))

    @property
    def transport_errors(self) -> int:
        return self.count(lambda _route, status: not status.isdigit())

    @property
    def unexpected_statuses(self) -> dict[str, dict[str, int]]:
        """Answers other than the route's success and (for the ingest route) 429."""
        odd: dict[str, dict[str, int]] = {}
        for route, counts in self.statuses.items():
            wanted = {"202", "429"} if route == INGEST else {"200"}
            found = {status: n for status, n in counts.items() if status not in wanted}
            if found:
                odd[route] = found
        return odd


class SensorFeed:
    """Readings for a fixed set of sensors, each sensor's timestamps one second after its previous one."""

    def __init__(self, sensors: int, start: datetime, rng: random.Random, invalid_share: float) -> None:
        self._sensors = [(str(uuid4()), CHANNELS[n % len(CHANNELS)]) for n in range(sensors)]
        self._next = [start] * sensors
        self._turn = 0
        self._rng = rng
        self._invalid_share = invalid_share
        self.planted_invalid = 0

    def readings(self, count: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(count):
            index = self._turn % len(self._sensors)
            self._turn += 1
            sensor_id, (unit, typical, out_of_range) = self._sensors[index]
            stamp = self._next[index]
            self._next[index] = stamp + timedelta(seconds=1)
            value = round(typical * self._rng.uniform(0.8, 1.2), 2)
            quality = self._rng.randint(70, 100)
            if self._rng.random() < self._invalid_share:
                self.planted_invalid += 1
                if self._rng.random() < 0.5:
                    value = out_of_range
                else:
                    unit = "psi"
            out.append(
                {
                    "sensor_id": sensor_id,
                    "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "value": value,
                    "unit": unit,
                    "quality": quality,
                }
            )
        return out


class RateGuard:
    """At most ``limit`` sends in any ``window_s`` seconds (client clock), waiting when one more would exceed it."""

    def __init__(self, limit: int, window_s: float) -> None:
        self._limit, self._window_s = limit, window_s
        self._sent: deque[float] = deque()

    async def wait(self) -> None:
        while True:
            now = time.monotonic()
            while self._sent and self._sent[0] <= now - self._window_s:
                self._sent.popleft()
            if len(self._sent) < self._limit:
                self._sent.append(now)
                return
            await asyncio.sleep(self._sent[0] + self._window_s - now)


class FreshnessProbe:
    """Polls the ledger for a sample of accepted batches and notes when each became visible whole."""

    QUERY = """SELECT job_id::text, sum(total_readings)::int FROM ingest_ledger
               WHERE job_id = ANY(%s::uuid[]) GROUP BY job_id"""

    def __init__(self, dsn: str, poll_s: float) -> None:
        self._dsn, self._poll_s = dsn, poll_s
        self._pending: dict[str, tuple[float, int]] = {}
        # (when the 202 came, seconds until visible), monotonic.
        self.seen: list[tuple[float, float]] = []

    def watch(self, job_id: str, accepted_at: float, readings: int) -> None:
        self._pending[job_id] = (accepted_at, readings)

    @property
    def unseen(self) -> int:
        return len(self._pending)

    async def run(self, posting_done: asyncio.Event, grace_s: float) -> None:
        """Poll until posting is done and every watched batch was seen, or ``grace_s`` after posting ended."""
        async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as conn:
            deadline: float | None = None
            while True:
                if self._pending:
                    cursor = await conn.execute(self.QUERY, (list(self._pending),))
                    seen_at = time.monotonic()
                    for job_id, total in await cursor.fetchall():
                        accepted_at, readings = self._pending[job_id]
                        if total == readings:
                            del self._pending[job_id]
                            self.seen.append((accepted_at, seen_at - accepted_at))
                if posting_done.is_set():
                    deadline = deadline or time.monotonic() + grace_s
                    if not self._pending or time.monotonic() > deadline:
                        return
                await asyncio.sleep(self._poll_s)


class LoadRun:
    """One run: the devices, the drop feed, the operators and the samplers, sharing one HTTP client."""

    def __init__(self, shape: LoadShape, target: LoadTarget, log: AcceptanceLog) -> None:
        if len(target.device_tokens) < shape.devices or len(target.operator_tokens) < shape.operators:
            raise ValueError("one token per device and per operator")
        self.shape, self.target, self.log = shape, target, log
        self.result = LoadResult(shape)
        self._rng = random.Random(shape.seed)
        start = shape.first_timestamp(datetime.now(UTC))
        self._device_feeds = [
            SensorFeed(shape.sensors_per_device, start, random.Random(self._rng.random()), shape.invalid_share)
            for _ in range(shape.devices)
        ]
        self._drop_feed = SensorFeed(shape.drop_sensors, start, random.Random(self._rng.random()), shape.invalid_share)
        self._in_flight = asyncio.Semaphore(shape.max_in_flight)
        self._freshness = FreshnessProbe(target.dsn, shape.freshness_poll_s)
        self._accepted_jobs: list[str] = []
        self._run_id = uuid4().hex[:8]
        self._ends_at = 0.0
        self._last_answer = 0.0

    async def run(self) -> LoadResult:
        """Push for ``shape.duration_s``, then wait for the freshness sample to be seen (a bounded grace)."""
        shape = self.shape
        limits = httpx.Limits(max_connections=shape.max_in_flight, max_keepalive_connections=shape.max_in_flight)
        posting_done = asyncio.Event()
        started = self.result.started_mono = time.monotonic()
        self.result.started_wall = datetime.now(UTC)
        self._ends_at = started + shape.duration_s
        async with httpx.AsyncClient(
            base_url=self.target.api, limits=limits, timeout=shape.request_timeout_s
        ) as client:
            samplers = [
                asyncio.create_task(self._freshness.run(posting_done, grace_s=120.0)),
                asyncio.create_task(self._sample_queue(posting_done)),
            ]
            workers = [asyncio.create_task(self._device(client, n)) for n in range(shape.devices)]
            workers += [asyncio.create_task(self._operator(client, n)) for n in range(shape.operators)]
            workers.append(asyncio.create_task(self._drops()))
            await asyncio.gather(*workers)
            # To the end of the run, or the last answer if one came later (a request sent just before the end).
            self.result.posting_window_s = max(self._ends_at, self._last_answer) - started
            posting_done.set()
            await asyncio.gather(*samplers)
        self.result.planted_invalid = sum(feed.planted_invalid for feed in self._device_feeds) + (
            self._drop_feed.planted_invalid
        )
        self.result.freshness_s = [(at - started, seconds) for at, seconds in self._freshness.seen]
        self.result.freshness_unseen = self._freshness.unseen
        return self.result

    async def _pause_until(self, moment: float) -> None:
        """Sleep until ``moment`` (monotonic), or until the run's end if that comes first."""
        await asyncio.sleep(max(0.0, min(moment, self._ends_at) - time.monotonic()))

    async def _call(
        self, client: httpx.AsyncClient, route: str, url: str, token: str, body: Any = None
    ) -> tuple[int | None, Any]:
        """One request on ``route`` (its method is the route's first word), counted and timed."""
        method = route.split(maxsplit=1)[0]
        headers = {"Authorization": f"Bearer {token}"}
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        async with self._in_flight:
            started = time.perf_counter()
            try:
                response = await client.request(method, url, content=content, headers=headers)
            except httpx.HTTPError as exc:
                self.result.record(route, type(exc).__name__, None)
                self.result.errors.append(f"{route}: {type(exc).__name__}: {exc}")
                return None, None
            elapsed_ms = (time.perf_counter() - started) * 1000
        self._last_answer = time.monotonic()
        self.result.record(route, str(response.status_code), elapsed_ms)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text

    async def _device(self, client: httpx.AsyncClient, number: int) -> None:
        shape, rng = self.shape, random.Random(self._rng.random())
        feed, token = self._device_feeds[number], self.target.device_tokens[number]
        guard = RateGuard(shape.rate_limit - 1, shape.rate_window_s + 2)
        next_at = time.monotonic() + rng.uniform(0, shape.post_interval_s)  # devices do not start in step
        while True:
            await self._pause_until(next_at)
            await guard.wait()
            if time.monotonic() >= self._ends_at:
                return
            readings = feed.readings(rng.randint(*shape.batch_readings))
            body = {"system_id": self.target.system_id, "readings": readings}
            status, answer = await self._call(client, INGEST, "/api/v1/data/ingest", token, body)
            if status == 202:
                self._accept(str(answer["job_id"]), readings)
            next_at = max(next_at + shape.post_interval_s + rng.uniform(-1, 1) * shape.post_jitter_s, time.monotonic())

    def _accept(self, job_id: str, readings: Sequence[Mapping[str, Any]]) -> None:
        accepted_at = time.monotonic()
        self.log.batch(job_id, readings, system_id=self.target.system_id)
        self._accepted_jobs.append(job_id)
        self.result.accepted_batches += 1
        self.result.accepted_api_readings += len(readings)
        if self.result.accepted_batches % self.shape.freshness_every == 0:
            self._freshness.watch(job_id, accepted_at, len(readings))

    async def _operator(self, client: httpx.AsyncClient, number: int) -> None:
        """A dashboard refreshing: the newest jobs, one job's detail, the newest quarantine rows."""
        shape, rng = self.shape, random.Random(self._rng.random())
        token = self.target.operator_tokens[number]
        await self._pause_until(time.monotonic() + rng.uniform(0, shape.operator_interval_s))
        while time.monotonic() < self._ends_at:
            next_at = time.monotonic() + shape.operator_interval_s * rng.uniform(0.75, 1.25)
            await self._call(client, LIST_JOBS, "/api/v1/jobs?limit=20", token)
            if self._accepted_jobs:
                job_id = rng.choice(self._accepted_jobs[-200:])
                await self._call(client, GET_JOB, f"/api/v1/jobs/{job_id}", token)
            await self._call(client, LIST_QUARANTINE, "/api/v1/quarantine?limit=50", token)
            await self._pause_until(next_at)

    async def _drops(self) -> None:
        """An integrator's exports: a CSV (every other one gzipped) of a few thousand rows every ~20 s."""
        shape, rng = self.shape, random.Random(self._rng.random())
        number = 0
        await self._pause_until(time.monotonic() + min(5.0, shape.drop_interval_s / 2))
        while time.monotonic() < self._ends_at:
            next_at = time.monotonic() + shape.drop_interval_s * rng.uniform(0.85, 1.15)
            readings = self._drop_feed.readings(rng.randint(*shape.drop_rows))
            gzipped = number % 2 == 1
            key = f"drops/{self.target.tenant}/load/{self._run_id}-{number:04d}.csv" + (".gz" if gzipped else "")
            body = drop_file(self.target.system_id, readings, gzipped=gzipped)
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self.target.s3.put_object, Bucket=self.target.bucket, Key=key, Body=body)
            except Exception as exc:
                self.result.record(DROP, type(exc).__name__, None)
                self.result.errors.append(f"{DROP}{key}: {type(exc).__name__}: {exc}")
            else:
                self.result.record(DROP, "200", (time.perf_counter() - started) * 1000)
                self._last_answer = time.monotonic()
                self.result.drop_stored_at[key] = datetime.now(UTC)
                self.log.drop(key, readings, system_id=self.target.system_id)
                self.result.drops += 1
                self.result.drop_readings += len(readings)
            number += 1
            await self._pause_until(next_at)

    async def _sample_queue(self, posting_done: asyncio.Event) -> None:
        """IngestQueue's depth once a second while the load runs: visible (waiting) and in flight."""
        started = time.monotonic()
        while not posting_done.is_set():
            try:
                attributes = await asyncio.to_thread(
                    self.target.sqs.get_queue_attributes,
                    QueueUrl=self.target.queue_url,
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )
            except Exception as exc:
                self.result.errors.append(f"queue sample: {type(exc).__name__}: {exc}")
            else:
                values = attributes["Attributes"]
                visible = int(values["ApproximateNumberOfMessages"])
                in_flight = int(values["ApproximateNumberOfMessagesNotVisible"])
                self.result.queue_visible_max = max(self.result.queue_visible_max, visible)
                self.result.queue_in_flight_max = max(self.result.queue_in_flight_max, in_flight)
                self.result.queue_samples.append((round(time.monotonic() - started, 1), visible, in_flight))
            await asyncio.sleep(self.shape.queue_sample_s)


def drop_file(system_id: str, readings: Sequence[Mapping[str, Any]], *, gzipped: bool) -> bytes:
    """A CSV drop of ``readings``, all of ``system_id``, gzip-compressed when asked."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for reading in readings:
        writer.writerow([system_id, *(reading[name] for name in CSV_HEADER[1:])])
    data = text.getvalue().encode()
    return gzip.compress(data) if gzipped else data


def run_load(shape: LoadShape, target: LoadTarget, log: AcceptanceLog) -> LoadResult:
    """Run the load to its end (blocking) and return what the clients saw."""
    return asyncio.run(LoadRun(shape, target, log).run())


def percentiles(samples: Sequence[float], digits: int = 1) -> dict[str, float | int] | None:
    """p50, p95, p99 and max of ``samples`` (None when there are none)."""
    if not samples:
        return None
    cuts = statistics.quantiles(samples, n=100, method="inclusive") if len(samples) > 1 else [samples[0]] * 99
    return {
        "n": len(samples),
        "p50": round(statistics.median(samples), digits),
        "p95": round(cuts[94], digits),
        "p99": round(cuts[98], digits),
        "max": round(max(samples), digits),
    }


def after(samples: Sequence[tuple[float, float]], start_s: float) -> list[float]:
    """The values of ``(at_s, value)`` samples taken at ``start_s`` or later."""
    return [value for at_s, value in samples if at_s >= start_s]


def queue_waits(jobs: Sequence[Job], result: LoadResult) -> dict[str, Any]:
    """How long accepted work waited before a worker started it, from the job records: ``started_at -
    created_at`` for an API job (created when the API answered 202), ``started_at`` - the PutObject's return for a
    drop (its job is created by the worker as it starts)."""
    api = [
        ((job.created_at - result.started_wall).total_seconds(), (job.started_at - job.created_at).total_seconds())
        for job in jobs
        if job.source is JobSource.API and job.started_at is not None
    ]
    drops_stored_at = result.drop_stored_at
    drops = [
        (job.started_at - drops_stored_at[job.object_key]).total_seconds()
        for job in jobs
        if job.source is JobSource.DROP and job.started_at is not None and job.object_key in drops_stored_at
    ]
    return {
        "api_jobs_s": percentiles(after(api, 0), 2),
        "api_jobs_after_warmup_s": percentiles(after(api, result.shape.warmup_s), 2),
        "drops_s": percentiles(drops, 2),
    }


def job_turnaround(jobs: Sequence[Job]) -> dict[str, float | int] | None:
    """``completed_at - created_at`` of the API jobs: 202 to the job record saying completed (server clock)."""
    return percentiles(
        [
            (job.completed_at - job.created_at).total_seconds()
            for job in jobs
            if job.source is JobSource.API and job.completed_at is not None
        ],
        2,
    )


def summarise(result: LoadResult) -> dict[str, Any]:
    """The figures of a run, JSON-ready (the oracle's verdict and the job-record figures are added by the test)."""
    shape = result.shape
    window = max(result.posting_window_s, 1e-9)
    api_latencies = [sample for route in API_ROUTES for sample in result.latencies_ms.get(route, [])]
    warmup = shape.warmup_s
    by_status: Counter[str] = Counter()
    for route, counts in result.statuses.items():
        if route != DROP:
            by_status.update(counts)
    return {
        "duration_s": shape.duration_s,
        "posting_window_s": round(result.posting_window_s, 1),
        "devices": shape.devices,
        "operators": shape.operators,
        "shape": asdict(shape),
        "requests": {
            "total": sum(by_status.values()),
            "by_status": dict(sorted(by_status.items())),
            "by_route": {route: dict(sorted(counts.items())) for route, counts in sorted(result.statuses.items())},
            "server_errors_5xx": result.server_errors,
            "transport_errors": result.transport_errors,
            "unexpected": result.unexpected_statuses,
        },
        "accepted": {
            "batches": result.accepted_batches,
            "api_readings": result.accepted_api_readings,
            "drops": result.drops,
            "drop_readings": result.drop_readings,
            "readings": result.accepted_api_readings + result.drop_readings,
            "planted_invalid": result.planted_invalid,
            "readings_per_s": round((result.accepted_api_readings + result.drop_readings) / window, 1),
            "api_readings_per_s": round(result.accepted_api_readings / window, 1),
            "batches_per_s": round(result.accepted_batches / window, 2),
        },
        "latency_ms": {
            "overall_api": percentiles(after(api_latencies, 0)),
            **{route: percentiles(after(result.latencies_ms.get(route, []), 0)) for route in (*API_ROUTES, DROP)},
        },
        "queue_depth": {
            "visible_max": result.queue_visible_max,
            "in_flight_max": result.queue_in_flight_max,
            "visible": percentiles([float(visible) for _, visible, _ in result.queue_samples], 0),
            # Every 5th sample: whether the queue grew over the run or stayed level.
            "series_t_visible_in_flight": result.queue_samples[::5],
        },
        "freshness_s": {
            "definition": FRESHNESS_DEFINITION.format(poll=shape.freshness_poll_s, every=shape.freshness_every),
            **(percentiles(after(result.freshness_s, 0), 2) or {}),
            "unseen": result.freshness_unseen,
        },
        "after_warmup": {
            "warmup_s": warmup,
            "latency_ms": {
                "overall_api": percentiles(after(api_latencies, warmup)),
                **{route: percentiles(after(result.latencies_ms.get(route, []), warmup)) for route in API_ROUTES},
            },
            "freshness_s": percentiles(after(result.freshness_s, warmup), 2),
        },
        "errors_sample": result.errors[:10],
    }


def _stats(stats: Mapping[str, Any] | None) -> str:
    if not stats:
        return "-"
    return f"{stats['p50']}/{stats['p95']}/{stats['p99']}/{stats['max']} (n={stats['n']})"


def describe(figures: Mapping[str, Any]) -> str:
    """A few lines for a person reading the test's output."""
    requests, accepted, latency = figures["requests"], figures["accepted"], figures["latency_ms"]
    warm = figures["after_warmup"]
    lines = [
        f"load: {figures['devices']} devices, {figures['operators']} operators, drops every "
        f"~{figures['shape']['drop_interval_s']:.0f}s, for {figures['posting_window_s']}s",
        f"  requests {requests['total']} by status {requests['by_status']}; 5xx {requests['server_errors_5xx']}, "
        f"transport errors {requests['transport_errors']}",
        f"  accepted {accepted['batches']} batches ({accepted['api_readings']} readings) + {accepted['drops']} drops "
        f"({accepted['drop_readings']} rows): {accepted['readings_per_s']} readings/s over the posting window",
        f"  {'p50/p95/p99/max':<36} {'whole run':<36} after the first {warm['warmup_s']:.0f}s",
    ]
    for route, stats in latency.items():
        lines.append(f"  {route + ' ms':<36} {_stats(stats):<36} {_stats(warm['latency_ms'].get(route))}")
    fresh = figures["freshness_s"]
    lines.append(
        f"  {'freshness s (202 -> ledger visible)':<36} {_stats(fresh if 'n' in fresh else None):<36} "
        f"{_stats(warm['freshness_s'])}"
    )
    if "queue_wait" in figures:
        wait = figures["queue_wait"]
        lines.append(
            f"  {'queue wait s (job started - created)':<36} {_stats(wait['api_jobs_s']):<36} "
            f"{_stats(wait['api_jobs_after_warmup_s'])}"
        )
    queue = figures["queue_depth"]
    lines.append(f"  queue depth max: {queue['visible_max']} waiting, {queue['in_flight_max']} in flight")
    if "oracle" in figures:
        oracle = figures["oracle"]
        lines.append(
            f"  oracle: ok={oracle['ok']} lost {oracle['lost']} duplicated {oracle['duplicated']} unexpected "
            f"{oracle['unexpected']} mismatches {len(oracle['job_mismatches'])} rollup mismatches "
            f"{len(oracle.get('rollup_mismatches', []))} unfinished "
            f"{len(oracle['unfinished_jobs'])} drained in {oracle['waited_s']}s"
        )
    return "\n".join(lines)


def headline(figures: Mapping[str, Any]) -> dict[str, Any]:
    """The few scalars `python -m tests.reliability.report` prints on the load suite's line."""
    api, fresh = figures["latency_ms"]["overall_api"] or {}, figures["freshness_s"]
    oracle, wait = figures.get("oracle", {}), figures.get("queue_wait", {}).get("api_jobs_s") or {}
    return {
        "readings_per_s": figures["accepted"]["readings_per_s"],
        "server_errors_5xx": figures["requests"]["server_errors_5xx"],
        "api_p95_ms": api.get("p95"),
        "freshness_p95_s": fresh.get("p95"),
        "queue_wait_max_s": wait.get("max"),
        "lost": oracle.get("lost"),
        "duplicated": oracle.get("duplicated"),
        "rollup_mismatches": len(oracle.get("rollup_mismatches", [])),
        "oracle_ok": oracle.get("ok"),
    }
