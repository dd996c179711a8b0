"""What the fault scenarios send: API batches and dropped files whose every reading has a (sensor_id, timestamp) of
its own (the oracle's key), logged in an AcceptanceLog the moment Sluice accepts them."""

import csv
import gzip
import io
import itertools
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import requests

from sluice_tools.local.stack import local_token

from ..paths import REPO_ROOT
from ..stack_harness import SYSTEM, Reply, RunningStack, http
from .oracle import AcceptanceLog

TENANT = "demo"
# Each principal may post 15 batches a minute; rotating over this many keeps a scenario's client under the limit.
PRINCIPALS = 40
CSV_HEADER = ["system_id", "sensor_id", "timestamp", "value", "unit", "quality"]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_readings(count: int, *, start: datetime, invalid_every: int = 10) -> list[dict[str, Any]]:
    """``count`` readings of a new sensor, a second apart from ``start``; every ``invalid_every``-th is out of range
    (so quarantine is exercised too)."""
    sensor = str(uuid.uuid4())
    readings = []
    for n in range(count):
        value = 9999.0 if invalid_every and n % invalid_every == invalid_every - 1 else 100.0 + n % 500
        moment = iso(start + timedelta(seconds=n))
        readings.append({"sensor_id": sensor, "timestamp": moment, "value": value, "unit": "bar", "quality": 95})
    return readings


@dataclass
class Workload:
    """A client of one running stack: posts batches, drops files and uploads them, and logs what was accepted."""

    stack: RunningStack
    log: AcceptanceLog = field(default_factory=AcceptanceLog)
    statuses: Counter[int] = field(default_factory=Counter)
    _tokens: dict[int, str] = field(default_factory=dict)
    _turn: "itertools.count[int]" = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def token(self, principal: int | None = None) -> str:
        """A bearer token of tenant demo with every scope, for one of the rotating principals."""
        with self._lock:
            number = next(self._turn) % PRINCIPALS if principal is None else principal
            if number not in self._tokens:
                scope = "ingest:write jobs:read quarantine:read quarantine:review"
                self._tokens[number] = local_token(
                    self.stack.names(), REPO_ROOT / ".local", tenant=TENANT, subject=f"device-{number}", scope=scope
                )[0]
            return self._tokens[number]

    def post(self, readings: list[dict[str, Any]], *, retries: int = 0) -> Reply:
        """POST one batch; on a 5xx, send it again up to ``retries`` times, as a device would. A 202 is logged."""
        body = {"system_id": SYSTEM, "readings": readings}
        for _attempt in range(retries + 1):
            reply = http("POST", f"{self.stack.api}/api/v1/data/ingest", self.token(), body)
            with self._lock:
                self.statuses[reply.status] += 1
            if reply.status == 202:
                self.log.batch(reply.body["job_id"], readings, system_id=SYSTEM)
                return reply
            if reply.status < 500:
                return reply
        return reply

    def post_batches(self, batches: int, size: int, *, start: datetime | None = None, retries: int = 0) -> list[Reply]:
        """``batches`` batches of ``size`` readings, sequentially; timestamps stay within the last days."""
        base = start or datetime.now(UTC) - timedelta(days=2)
        return [self.post(make_readings(size, start=base), retries=retries) for _ in range(batches)]

    def drop(self, rows: int, *, name: str | None = None, start: datetime | None = None, gz: bool = True) -> str:
        """Store a CSV file (gzipped) of ``rows`` readings under drops/demo/ and log it; returns its key."""
        readings = make_readings(rows, start=start or datetime.now(UTC) - timedelta(days=30))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for reading in readings:
            writer.writerow([SYSTEM, *(reading[column] for column in CSV_HEADER[1:])])
        body = buffer.getvalue().encode()
        key = f"drops/{TENANT}/{name or uuid.uuid4().hex}.csv" + (".gz" if gz else "")
        self.stack.s3().put_object(
            Bucket=self.stack.names().ref("BatchBucket"),
            Key=key,
            Body=gzip.compress(body, compresslevel=1) if gz else body,
        )
        self.log.drop(key, readings, system_id=SYSTEM)
        return key

    def upload(self, rows: int, *, posts: int = 1, start: datetime | None = None) -> tuple[str, str]:
        """Create an upload for a CSV.gz of ``rows`` readings and POST it with the form ``posts`` times (the same
        file: a client retrying), as multipart/form-data; log it once S3 stored it. Returns its job id and key."""
        readings = make_readings(rows, start=start or datetime.now(UTC) - timedelta(days=20))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for reading in readings:
            writer.writerow([SYSTEM, *(reading[column] for column in CSV_HEADER[1:])])
        body = gzip.compress(buffer.getvalue().encode(), compresslevel=1)
        request = {"filename": f"{uuid.uuid4().hex}.csv.gz", "size": len(body)}
        created = http("POST", f"{self.stack.api}/api/v1/uploads", self.token(), request)
        with self._lock:
            self.statuses[created.status] += 1
        assert created.status == 201, created.body
        form = created.body["upload"]
        for _ in range(posts):
            stored = requests.post(form["url"], data=form["fields"], files={"file": ("f.csv.gz", body)}, timeout=60)
            assert stored.status_code == 204, stored.text
        self.log.upload(created.body["job_id"], readings, system_id=SYSTEM)
        return created.body["job_id"], form["fields"]["key"]

    def s3_event_body(self, key: str) -> str:
        """The IngestQueue message S3 sends for the object at ``key`` (its current version), as a redelivery."""
        bucket = self.stack.names().ref("BatchBucket")
        head = self.stack.s3().head_object(Bucket=bucket, Key=key)
        # No versionId: the local S3 (moto) leaves it out of its events, so a drop's job id comes from the ETag, and a
        # redelivery must be the same event. (AWS sends it in both deliveries alike.)
        found = {"key": quote_plus(key), "size": head["ContentLength"], "eTag": head["ETag"].strip('"')}
        record = {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "eventTime": iso(datetime.now(UTC)),
            "s3": {"bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": found},
        }
        return json.dumps({"Records": [record]})

    def send_raw(self, body: str, copies: int = 1) -> None:
        """Put ``body`` on IngestQueue ``copies`` times, as a duplicated (or hostile) delivery."""
        queue = self.stack.names().ref("IngestQueue")
        sqs = self.stack.sqs()
        for _ in range(copies):
            sqs.send_message(QueueUrl=queue, MessageBody=body)


def wait_until(probe: Any, timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    """Poll ``probe`` until it returns something truthy; fail loudly after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
