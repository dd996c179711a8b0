"""A huge single-line drop on the real local stack (twin + moto server + TimescaleDB): one NDJSON line of 256 MiB
(256 KiB gzipped) between valid readings. The worker reads past it in bounded pieces: its execution environment's
peak memory grows by a few MiB, not by the line; the line is quarantined as ``parse_error`` with its start, size and
SHA-256; the readings around it land; and the oracle finds every reading exactly once.

The worker's memory is read from its execution environment, a process of its own under the twin (``VmHWM``, the
peak resident set, in /proc): first after a small drop warms the environment, then after the huge one. Figures
land in .local/reliability/drop_bounds.json, and ``make reliability`` prints them.
"""

import gzip
import hashlib
import io
import json
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ..stack_harness import SYSTEM, RunningStack, running_stack
from .figures import record_figures
from .oracle import Accepted, check
from .workload import TENANT, Workload, make_readings

pytestmark = pytest.mark.db

LINE_BYTES = 256 << 20
# What the worker may grow by while it loads the drop: far below the line, and far below its 1024 MB.
GROWTH_BOUND_BYTES = 64 << 20
READINGS_AROUND = 1_000


@pytest.fixture
def stack(server_dsn: str) -> Iterator[RunningStack]:
    with running_stack(server_dsn, "sluice-drop-bounds", prefix="sluice_bounds") as running:
        yield running


def worker_peaks(stack: RunningStack) -> dict[int, int]:
    """The peak resident set (bytes) of each of this stack's LoadWorkerFunction environments, by process id."""
    wanted = f"AWS_LAMBDA_FUNCTION_NAME={stack.stack_name}-LoadWorkerFunction".encode()
    peaks: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if wanted not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            status = (proc / "status").read_text()
        except OSError:  # gone meanwhile, or not ours
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[int(proc.name)] = int(line.split()[1]) * 1024
    return peaks


def huge_line_drop(
    before: list[dict[str, object]], after: list[dict[str, object]], line_bytes: int = LINE_BYTES
) -> tuple[bytes, bytes]:
    """An NDJSON .gz of ``before``, one line of ``line_bytes``, then ``after``, compressed as it is made (the test
    never holds the line either); the gzip bytes and the line's SHA-256."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    digest = hashlib.sha256()
    out = io.BytesIO()

    def write(data: bytes) -> None:
        out.write(compressor.compress(data))

    for reading in before:
        write(json.dumps({"system_id": SYSTEM} | reading).encode() + b"\n")
    head = b'{"system_id": "' + SYSTEM.encode() + b'", "pad": "'
    tail = b'"}'
    piece = b"p" * (1 << 20)
    digest.update(head)
    write(head)
    for _ in range((line_bytes - len(head) - len(tail)) // len(piece)):
        digest.update(piece)
        write(piece)
    rest = b"p" * ((line_bytes - len(head) - len(tail)) % len(piece)) + tail
    digest.update(rest)
    write(rest + b"\n")
    for reading in after:
        write(json.dumps({"system_id": SYSTEM} | reading).encode() + b"\n")
    out.write(compressor.flush())
    return out.getvalue(), digest.digest()


def test_a_huge_single_line_drop_is_quarantined_in_bounded_memory_and_the_rest_lands_once(stack: RunningStack) -> None:
    workload = Workload(stack)
    bucket = stack.names().ref("BatchBucket")

    # Given a warm worker environment (a small drop loaded) and its peak memory then
    workload.drop(200)
    warm = check(stack, workload.log, timeout_s=120)
    assert warm.ok, warm.as_dict()
    before = worker_peaks(stack)

    # When a drop of 256 MiB on one line (between valid readings) is loaded
    start = datetime.now(UTC) - timedelta(days=3)
    readings = make_readings(2 * READINGS_AROUND, start=start)
    body, line_sha256 = huge_line_drop(readings[:READINGS_AROUND], readings[READINGS_AROUND:])
    key = f"drops/{TENANT}/huge-line-{uuid.uuid4().hex}.ndjson.gz"
    stack.s3().put_object(Bucket=bucket, Key=key, Body=body)
    # The oracle's keys are the readings it can find again; the line has none, so it counts in the job's total only.
    workload.log.drop(key, readings, system_id=SYSTEM)
    workload.log.entries[-1] = Accepted(len(readings) + 1, object_key=key)
    report = check(stack, workload.log, timeout_s=300)

    # Then the worker grew by far less than the line (an environment made meanwhile is measured from the lowest)
    after = worker_peaks(stack)
    growth = max(peak - before.get(pid, min(before.values())) for pid, peak in after.items())
    with psycopg.connect(stack.dsn) as conn:
        cut = conn.execute(
            "SELECT position, raw_bytes, raw_sha256, octet_length(raw::text), reason_details->>'got', sensor_id"
            " FROM quarantined_readings WHERE reason = 'parse_error'"
        ).fetchall()
    # The oracle cannot key the line's row (nothing of it was read): it is its one "unexpected" row.
    ok = (report.lost, report.duplicated, report.unexpected, report.dead_letter_depth) == (0, 0, 1, 0)
    figures = {
        "line_mib": LINE_BYTES >> 20,
        "gzip_kib": len(body) >> 10,
        "worker_peak_rss_mib": round(max(after.values()) / (1 << 20), 1),
        "worker_peak_rss_growth_mib": round(growth / (1 << 20), 1),
        "growth_bound_mib": GROWTH_BOUND_BYTES >> 20,
        "accepted_readings": report.accepted_readings,
        "lost": report.lost,
        "duplicated": report.duplicated,
        "cut_rows": len(cut),
        "ok": str(
            ok and not report.job_mismatches and not report.rollup_mismatches and growth < GROWTH_BOUND_BYTES
        ).lower(),
    }
    record_figures("drop_bounds", figures)
    assert growth < GROWTH_BOUND_BYTES, figures
    # ... the line is one parse_error row holding its start, with its size and hash; nothing else was refused
    assert cut == [
        (
            READINGS_AROUND + 1,
            LINE_BYTES,
            line_sha256.hex(),
            pytest.approx(16 << 10, abs=64),
            f"a line of {LINE_BYTES + 1} characters",
            None,
        )
    ]
    # ... and the oracle: every reading around it once (the line's row is the one it cannot key), the job's
    # counts agree, the rollups hold what was stored, nothing parked
    assert ok, report.as_dict()
    assert (report.job_mismatches, report.unfinished_jobs, report.rollup_mismatches) == ([], [], []), report.as_dict()


def test_the_scenarios_drop_is_what_it_says() -> None:
    # The drop builder itself, with a smaller line: what the scenario asserts depends on it.
    body, digest = huge_line_drop([{"n": 1}], [{"n": 2}], line_bytes=3 << 20)

    first, line, last, end = gzip.decompress(body).split(b"\n")

    assert (json.loads(first)["n"], json.loads(last)["n"], end) == (1, 2, b"")
    assert (len(line), hashlib.sha256(line).digest()) == (3 << 20, digest)
