"""The hostile-input corpus (tests/e2e/hostile_cases.py) through `make run`'s stack: every request over HTTP with
a token of its own, every drop put into the bucket, then each case's outcome checked against the contracts.

Given the running stack, the corpus fixture sends every case at once (when) and waits for the jobs they make, so
the whole corpus costs one round of the worker; each test then checks one case's outcome (then): a 4xx naming
field, index and reason with nothing stored, or a job whose readings all landed or sit in quarantine with their
reasons. Never a 5xx. The last test records the figures (.local/reliability/hostile.json).
"""

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from sluice.domain.objects import ObjectRef, drop_job_id, target_of

from ..reliability.figures import record_figures
from ..stack_harness import Reply, RunningStack, TokenMinter, http, raw_http, running_stack
from .hostile_cases import (
    API_CASES,
    DROP_CASES,
    FORGED_JOB,
    ApiCase,
    DropCase,
    FailedJob,
    GatewayRefused,
    Ignored,
    Landed,
    Quarantined,
    Refused,
    with_alg,
)

pytestmark = pytest.mark.db

STACK = "sluice-hostile"
JOBS_TIMEOUT_S = 120
# The queue's visibility timeout: long enough that a message is not received again while an invocation of its batch
# still runs (the corpus needs no retry). At the harness's 2 s, a busy machine handles messages two and three times,
# each time restarting their failed jobs, until the fifth receive parks them.
VISIBILITY_S = 30
# An error body names what was wrong; it never echoes a hostile body back.
MAX_ERROR_BODY_BYTES = 8192
# A drop case's key put as it is (else under drops/demo/hostile/).
WHOLE_KEYS = ("drops/", "incoming/")


@dataclass
class Observed:
    """What one case came to: the HTTP answer (API cases), the job, and the rows stored under it."""

    channel: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    job_id: str | None = None
    job: dict[str, Any] | None = None
    inserted: int = 0
    quarantined: list[Quarantined] = field(default_factory=list)
    # Job records of the case's principal (API cases): one for an accepted request, none for a refused one.
    principal_jobs: int = 0
    # The last answer about a job that did not finish, for the failure message.
    last_seen: str | None = None

    def outcome(self) -> str:
        """One line for the figures: the status, then the job's end and its quarantine reasons."""
        parts = [] if self.status is None else [str(self.status)]
        if self.status is not None and self.status >= 400:
            parts.append(str(self.body.get("error", {}).get("code") if isinstance(self.body, dict) else self.body))
        elif self.job is None:
            parts.append("no job")
        elif self.job["status"] == "failed":
            parts.append(f"failed: {str(self.job['error_message'])[:120]}")
        else:
            parts.append(str(self.job["status"]))
            reasons = Counter(row.reason for row in self.quarantined)
            parts.append(f"inserted {self.inserted}")
            parts.extend(f"{reason} {count}" for reason, count in sorted(reasons.items()))
        return ", ".join(parts)


@pytest.fixture(scope="module")
def stack(server_dsn: str) -> Iterator[RunningStack]:
    with running_stack(server_dsn, STACK, visibility_s=VISIBILITY_S) as running:
        yield running


@pytest.fixture(scope="module")
def corpus(stack: RunningStack) -> dict[str, Observed]:
    """Every case sent, every job finished, every row read back."""
    minter = TokenMinter.for_stack(stack)
    reader = minter.mint(sub="hostile-reader")
    observed: dict[str, Observed] = {}
    for api_case in API_CASES:
        observed[api_case.id] = send(stack, minter, api_case)
    bucket = stack.names().ref("BatchBucket")
    s3 = stack.s3()
    for drop_case in DROP_CASES:
        key = drop_case.key if drop_case.key.startswith(WHOLE_KEYS) else f"drops/demo/hostile/{drop_case.key}"
        if drop_case.content_encoding:
            put = s3.put_object(
                Bucket=bucket, Key=key, Body=drop_case.body(), ContentEncoding=drop_case.content_encoding
            )
        else:
            put = s3.put_object(Bucket=bucket, Key=key, Body=drop_case.body())
        ref = ObjectRef(bucket, key, etag=put["ETag"])
        job_id = str(target_of(ref).job_id if key.startswith("incoming/") else drop_job_id(ref))
        observed[drop_case.id] = Observed("drop", job_id=job_id)

    awaited = {case_id: seen.job_id for case_id, seen in observed.items() if seen.job_id and expects_job(case_id)}
    for case_id, reply in last_answers(stack, reader, awaited).items():
        if finished(reply):
            observed[case_id].job = reply.body
        else:
            observed[case_id].last_seen = f"{reply.status} {json.dumps(reply.body)[:300]}"
    for case_id, seen in observed.items():
        if seen.job_id and not expects_job(case_id):
            reply = http("GET", f"{stack.api}/api/v1/jobs/{seen.job_id}", reader)
            seen.job = reply.body if reply.status == 200 else None

    read_rows(stack, observed)
    count_principal_jobs(stack, observed)
    return observed


def send(stack: RunningStack, minter: TokenMinter, case: ApiCase) -> Observed:
    bearer = minter.mint(tenant=case.tenant, sub=f"hostile-{case.id}")
    if case.alg is not None:
        bearer = with_alg(bearer, case.alg)
    headers = {"Authorization": f"Bearer {bearer}", **case.headers}
    reply = raw_http("POST", f"{stack.api}/api/v1/data/ingest", case.body(), headers)
    job_id = reply.body.get("job_id") if reply.status == 202 and isinstance(reply.body, dict) else None
    return Observed("api", status=reply.status, headers=reply.headers, body=reply.body, job_id=job_id)


EXPECTED: dict[str, Refused | Landed | GatewayRefused | FailedJob | Ignored] = {
    **{case.id: case.expect for case in API_CASES},
    **{case.id: case.expect for case in DROP_CASES},
}


def expects_job(case_id: str) -> bool:
    return not isinstance(EXPECTED[case_id], Ignored | Refused | GatewayRefused)


def finished(reply: Reply) -> bool:
    return reply.status == 200 and reply.body["status"] in {"completed", "failed"}


def last_answers(stack: RunningStack, bearer: str, awaited: dict[str, str]) -> dict[str, Reply]:
    """The job status API's last answer about each awaited job: once it is completed or failed, or when the wait
    ends (a drop's job exists once the worker has started it)."""
    answers: dict[str, Reply] = {}
    deadline = time.monotonic() + JOBS_TIMEOUT_S
    while time.monotonic() < deadline:
        for case_id, job_id in awaited.items():
            if case_id not in answers or not finished(answers[case_id]):
                answers[case_id] = http("GET", f"{stack.api}/api/v1/jobs/{job_id}", bearer)
        if all(finished(reply) for reply in answers.values()):
            break
        time.sleep(0.5)
    return answers


def read_rows(stack: RunningStack, observed: dict[str, Observed]) -> None:
    by_job = {seen.job_id: seen for seen in observed.values() if seen.job_id}
    with psycopg.connect(stack.dsn) as conn:
        for job_id, count in conn.execute(
            "SELECT job_id::text, count(*) FROM readings WHERE job_id = ANY(%s::uuid[]) GROUP BY job_id",
            (list(by_job),),
        ):
            by_job[job_id].inserted = count
        for job_id, position, reason, named, got in conn.execute(
            "SELECT job_id::text, position, reason, reason_details->>'field', reason_details->>'got'"
            " FROM quarantined_readings WHERE job_id = ANY(%s::uuid[]) ORDER BY position",
            (list(by_job),),
        ):
            by_job[job_id].quarantined.append(Quarantined(position, reason, named, got or ""))


def count_principal_jobs(stack: RunningStack, observed: dict[str, Observed]) -> None:
    table = stack.names().ref("JobsTable")
    creators: Counter[str] = Counter()
    for page in stack.dynamodb().get_paginator("scan").paginate(TableName=table):
        creators.update(item["created_by"]["S"] for item in page["Items"] if "S" in item.get("created_by", {}))
    for case_id, seen in observed.items():
        if seen.channel == "api":
            seen.principal_jobs = creators[f"hostile-{case_id}"]


# --- then ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", API_CASES, ids=lambda case: case.id)
def test_a_hostile_request_is_refused_cleanly_or_lands_reading_by_reading(
    case: ApiCase, corpus: dict[str, Observed]
) -> None:
    seen = corpus[case.id]

    assert seen.status is not None
    assert seen.status < 500, seen.body
    if isinstance(case.expect, Refused):
        assert_refused(seen, case.expect)
    elif isinstance(case.expect, GatewayRefused):
        assert_gateway_refused(seen, case.expect)
    else:
        assert (seen.status, seen.body["status"]) == (202, "queued"), seen.body
        assert_landed(seen, case.expect)


@pytest.mark.parametrize("case", DROP_CASES, ids=lambda case: case.id)
def test_a_hostile_drop_lands_reading_by_reading_or_fails_storing_nothing(
    case: DropCase, corpus: dict[str, Observed]
) -> None:
    seen = corpus[case.id]

    if isinstance(case.expect, Ignored):
        assert seen.job is None, seen.job
    elif isinstance(case.expect, FailedJob):
        assert seen.job is not None, f"the drop's job {seen.job_id} did not finish: last seen {seen.last_seen}"
        assert seen.job["status"] == "failed", seen.job
        assert case.expect.message in (seen.job["error_message"] or ""), seen.job
        assert (seen.inserted, seen.quarantined) == (0, [])
        assert (seen.job["total_readings"], seen.job["inserted_readings"], seen.job["quarantined_readings"]) == (
            0,
            0,
            0,
        )
    else:
        assert_landed(seen, case.expect)


def test_refused_requests_left_nothing_behind(stack: RunningStack, corpus: dict[str, Observed]) -> None:
    accepted = {seen.job_id for seen in corpus.values() if seen.channel == "api" and seen.job_id}
    drops = {seen.job_id for seen in corpus.values() if seen.channel == "drop" and seen.job is not None}
    bucket = stack.names().ref("BatchBucket")

    objects = stack.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="incoming/")
    stored = {
        item["Key"].rsplit("/", 1)[-1].removesuffix(".json") for page in objects for item in page.get("Contents", [])
    }
    with psycopg.connect(stack.dsn) as conn:
        rows = conn.execute(
            "SELECT job_id::text FROM readings UNION SELECT job_id::text FROM quarantined_readings"
            " UNION SELECT job_id::text FROM ingest_ledger"
        ).fetchall()

    # Besides the accepted batches, only the one put there around the API, which nothing loaded.
    assert stored == accepted | {str(FORGED_JOB)}
    assert {job_id for (job_id,) in rows} <= accepted | drops
    # Every accepted request made one job record, so the scan sees them; a refused one made none.
    assert all(seen.principal_jobs == (1 if seen.job_id else 0) for seen in corpus.values() if seen.channel == "api")


def test_the_corpus_never_answers_5xx_and_its_figures_are_recorded(corpus: dict[str, Observed]) -> None:
    five_xx = sorted(case_id for case_id, seen in corpus.items() if seen.status is not None and seen.status >= 500)
    channels = Counter(seen.channel for seen in corpus.values())
    statuses = Counter(str(seen.status) for seen in corpus.values() if seen.status is not None)
    job_ends = Counter(str(seen.job["status"]) if seen.job else "no job" for seen in corpus.values() if seen.job_id)
    reasons = Counter(row.reason for seen in corpus.values() for row in seen.quarantined)
    error_codes = Counter(
        seen.body["error"]["code"]
        for seen in corpus.values()
        if seen.status is not None and seen.status >= 400 and isinstance(seen.body, dict) and "error" in seen.body
    )

    record_figures(
        "hostile",
        {
            "cases": len(corpus),
            "per_channel": dict(channels),
            "api_statuses": dict(statuses),
            "api_error_codes": dict(error_codes),
            "job_ends": dict(job_ends),
            "quarantine_reasons": dict(reasons),
            "readings_inserted": sum(seen.inserted for seen in corpus.values()),
            "five_xx": len(five_xx),
            "observed": {case_id: f"{seen.channel}: {seen.outcome()}" for case_id, seen in corpus.items()},
        },
    )

    assert len(corpus) >= 40
    assert five_xx == []


# --- helpers ---------------------------------------------------------------------------------------------------------


def assert_refused(seen: Observed, expect: Refused) -> None:
    assert seen.status == expect.status, seen.body
    assert len(json.dumps(seen.body)) <= MAX_ERROR_BODY_BYTES
    error = seen.body["error"]
    assert error["code"] == expect.code, error
    assert error["message"]
    assert any(
        detail["field"] == expect.field and expect.reason in detail["reason"] and detail["index"] == expect.index
        for detail in error["details"]
    ), error
    assert seen.principal_jobs == 0


def assert_gateway_refused(seen: Observed, expect: GatewayRefused) -> None:
    assert (seen.status, seen.body) == (expect.status, {"message": expect.message})
    # The answer arrived whole (no dropped connection), and no header is one the request wrote.
    assert "x-injected" not in seen.headers, seen.headers
    for name, value in seen.headers.items():
        assert "\r" not in value, (name, value)
        assert "\n" not in value, (name, value)
        value.encode("latin-1")
    assert seen.principal_jobs == 0


def assert_landed(seen: Observed, expect: Landed) -> None:
    job = seen.job
    assert job is not None, f"job {seen.job_id} did not finish: last seen {seen.last_seen}"
    assert job["status"] == "completed", job
    assert job["total_readings"] == job["inserted_readings"] + job["quarantined_readings"], job
    assert (job["inserted_readings"], job["quarantined_readings"]) == (seen.inserted, len(seen.quarantined)), job
    assert seen.inserted == expect.inserted
    found = [(row.position, row.reason, row.field) for row in seen.quarantined]
    assert found == [(row.position, row.reason, row.field) for row in expect.quarantined]
    for row, wanted in zip(seen.quarantined, expect.quarantined, strict=True):
        assert wanted.got in row.got, (row, wanted)
