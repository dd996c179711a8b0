"""``sluice demo``: a realistic mixed batch through the HTTP API and a CSV.gz drop through S3, end to end.

Both go through the running local stack the way a device and an integrator would: a token from the local
authorizer, ``POST /api/v1/data/ingest``, an S3 upload under ``drops/<tenant>/``; then the demo follows both jobs
to their end and summarises what was stored and what was quarantined, and why.
"""

import csv
import gzip
import io
import json
import random
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any
from uuid import UUID, uuid5

from sluice.domain.objects import ObjectRef, drop_job_id

# The demo tenant's press: the system id every sample in events/ and tests/data/drops/ names.
DEMO_TENANT = "demo"
DEMO_SYSTEM_NAME = "press-17"
DEMO_SYSTEM_ID = UUID("3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01")
_SENSOR_NAMESPACE = UUID("8a4e2b10-3c5d-4e6f-8a01-5b6c7d8e9f00")
# A hydraulic press's four channels: unit, typical value, spread.
CHANNELS = (("bar", 210.0, 15.0), ("celsius", 55.0, 4.0), ("lpm", 120.0, 10.0), ("rpm", 1480.0, 30.0))
CSV_HEADER = ("system_id", "sensor_id", "timestamp", "value", "unit", "quality")


def sensor_id(system_id: UUID, channel: int) -> str:
    """A stable sensor id per (system, channel)."""
    return str(uuid5(_SENSOR_NAMESPACE, f"{system_id}/{channel}"))


def clean_readings(system_id: UUID, minutes: int, end: datetime, rng: random.Random) -> Iterator[dict[str, Any]]:
    """One reading per channel and minute, ending at ``end``: all valid."""
    for minute in range(minutes):
        moment = (end - timedelta(minutes=minutes - minute)).replace(second=0, microsecond=0)
        for channel, (unit, typical, spread) in enumerate(CHANNELS):
            yield {
                "sensor_id": sensor_id(system_id, channel),
                "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "value": round(rng.gauss(typical, spread), 2),
                "unit": unit,
                "quality": rng.randint(85, 100),
            }


def spoil(readings: list[dict[str, Any]], now: datetime, rng: random.Random) -> dict[str, int]:
    """Make a few readings bad the way field data goes bad; return how many of each quarantine reason."""
    spoiled = Counter[str]()
    picks = iter(rng.sample(range(len(readings)), 12))
    for reason, count in (("out_of_range", 3), ("invalid_unit", 2), ("low_quality", 2), ("invalid_timestamp", 2)):
        for _ in range(count):
            reading = readings[next(picks)]
            if reason == "out_of_range":
                reading["value"] = {"bar": 812.0, "celsius": 180.0, "lpm": -4.0, "rpm": 9100.0}[reading["unit"]]
            elif reason == "invalid_unit":
                reading["unit"] = "psi"
            elif reason == "low_quality":
                reading["quality"] = 31
            else:
                reading["timestamp"] = (now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
            spoiled[reason] += 1
    del readings[next(picks)]["value"]  # a gateway that dropped a field
    spoiled["parse_error"] += 1
    readings.append(dict(readings[next(picks)]))  # sent twice in one batch
    spoiled["duplicate"] += 1
    return dict(spoiled)


def demo_batch(system_id: UUID, now: datetime, seed: int = 17) -> tuple[dict[str, Any], dict[str, int]]:
    """An API batch of 201 readings (50 minutes of four channels, one sent twice) with 11 bad ones, and why."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not security  # nosec B311
    readings = list(clean_readings(system_id, 50, now, rng))
    reasons = spoil(readings, now, rng)
    return {"system_id": str(system_id), "readings": readings}, reasons


def demo_drop(system_id: UUID, now: datetime, seed: int = 18) -> tuple[bytes, dict[str, int]]:
    """A CSV.gz export of 2,001 readings (the 500 minutes before the batch's) with 11 bad ones."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not security  # nosec B311
    readings = list(clean_readings(system_id, 500, now - timedelta(minutes=50), rng))
    reasons = spoil(readings, now, rng)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for reading in readings:
        writer.writerow([str(system_id), *(reading.get(name, "") for name in CSV_HEADER[1:])])
    return gzip.compress(text.getvalue().encode(), mtime=0), reasons


@dataclass(frozen=True, slots=True)
class ApiClient:
    """Just enough of an HTTP client for the demo: JSON in and out, with the bearer token."""

    base_url: str
    token: str

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send a request; return the status and the decoded JSON body."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)  # noqa: S310 - http(s) only
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - the local API  # nosec B310
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def wait_for_job(self, job_ids: Sequence[str], timeout_s: float) -> dict[str, Any]:
        """Poll until one of the jobs completes or fails (a drop's job id depends on what its S3 event says)."""
        deadline = time.monotonic() + timeout_s
        while True:
            answers = [self.call("GET", f"/api/v1/jobs/{job_id}") for job_id in job_ids]
            for status, job in answers:
                if status == 200 and job["status"] in {"completed", "failed"}:
                    return dict(job)
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_ids[0]} did not finish within {timeout_s:.0f} s (answers: {answers})")
            time.sleep(0.5)

    def quarantine_reasons(self, job_id: str) -> Counter[str]:
        """How many of the job's readings sit in quarantine, per reason (all pages)."""
        reasons = Counter[str]()
        cursor = ""
        while True:
            status, page = self.call("GET", f"/api/v1/quarantine?job_id={job_id}&limit=500{cursor}")
            if status != 200:
                raise RuntimeError(f"listing quarantine failed: {status} {page}")
            reasons.update(item["reason"] for item in page["items"])
            if not page.get("next_cursor"):
                return reasons
            cursor = f"&cursor={page['next_cursor']}"


def drop_jobs(bucket: str, key: str, version_id: str | None, etag: str | None) -> list[str]:
    """The job id the worker gives a dropped object: from its version id, as S3 names it in the event; or from its
    ETag, which the worker uses when an event has no version id (moto's events have none)."""
    return [
        str(drop_job_id(ObjectRef(bucket=bucket, key=key, version_id=version, etag=etag)))
        for version in dict.fromkeys((version_id, None))
    ]


def print_job(title: str, job: dict[str, Any], reasons: Counter[str], out: IO[str]) -> None:
    """One job's end, and its quarantine by reason."""
    print(f"\n{title}: job {job['job_id']} {job['status']}", file=out)
    for name in ("total_readings", "inserted_readings", "quarantined_readings", "duplicate_readings"):
        print(f"  {name:<22}{job.get(name)}", file=out)
    print(f"  {'processing_time_ms':<22}{job.get('processing_time_ms')}", file=out)
    if job.get("error_message"):
        print(f"  error: {job['error_message']}", file=out)
    if reasons:
        summary = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
        print(f"  quarantined by reason: {summary}", file=out)
