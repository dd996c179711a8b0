"""End to end through `make run`'s stack: infra/run.sh started by the test session on free ports, with its own
database, driven by real clients: HTTP for the API, the AWS CLI for drops, psycopg for what landed.

The tests run in file order against one stack; the last one stops it the way Ctrl-C does and checks that
everything it started has gone.
"""

import gzip
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import psycopg
import pytest

from sluice.local.resources import plan_stack
from sluice.local.stack import local_parameters
from sluice.local.template import StackContext, load_template

from ..paths import REPO_ROOT
from ..scratch import scratch_database

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

STACK = "sluice-e2e"
REGION = "eu-central-1"
SYSTEM = "3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01"  # the demo system `make run` registers
SENSOR = "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8"
# Short, so a failing message is retried (and parked) within seconds rather than every 30 minutes.
VISIBILITY_S = 2
READY_TIMEOUT_S = 180

pytestmark = pytest.mark.db


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningStack:
    """`make run`'s script as a child process, its output and where it serves."""

    process: subprocess.Popen[str]
    http_port: int
    moto_port: int
    dsn: str
    lines: list[str] = field(default_factory=list)
    started_s: float = 0.0

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def moto(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def output(self) -> str:
        return "\n".join(self.lines)

    def names(self) -> StackContext:
        context = StackContext(
            load_template(REPO_ROOT / "template.yaml"),
            stack_name=STACK,
            region=REGION,
            parameter_overrides=local_parameters(STACK, REGION),
        )
        return plan_stack(context, self.moto)

    def sluice(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REPO_ROOT / ".venv" / "bin" / "sluice"), *arguments],
            cwd=REPO_ROOT,
            env={**os.environ, "SLUICE_DB_DSN": self.dsn},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def aws(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        local = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": REGION}
        return subprocess.run(
            [str(REPO_ROOT / ".venv" / "bin" / "aws"), "--endpoint-url", self.moto, *arguments],
            env={**os.environ, **local},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def s3(self) -> "S3Client":
        return _session().client("s3", endpoint_url=self.moto)

    def sqs(self) -> "SQSClient":
        return _session().client("sqs", endpoint_url=self.moto)


def _session() -> boto3.session.Session:
    return boto3.session.Session(region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local")


@pytest.fixture(scope="module")
def stack(server_dsn: str) -> Iterator[RunningStack]:
    with scratch_database(server_dsn, prefix="sluice_e2e") as dsn:
        http_port, moto_port = free_port(), free_port()
        env = {
            **os.environ,
            "SLUICE_DB_DSN": dsn,
            "SLUICE_HTTP_PORT": str(http_port),
            "MOTO_PORT": str(moto_port),
            "SLUICE_STACK_NAME": STACK,
            "SLUICE_LOCAL_VISIBILITY_TIMEOUT": str(VISIBILITY_S),
        }
        started = time.monotonic()
        process = subprocess.Popen(
            ["bash", str(REPO_ROOT / "infra" / "run.sh")],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so the test can press "Ctrl-C" on it alone
        )
        running = RunningStack(process, http_port, moto_port, dsn)
        ready = threading.Event()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                running.lines.append(line.rstrip("\n"))
                if line.startswith("ready:"):
                    ready.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        if not ready.wait(READY_TIMEOUT_S):
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"make run's stack did not become ready:\n{running.output()}")
        running.started_s = time.monotonic() - started
        try:
            yield running
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                process.wait(60)
            reader.join(10)
            if process.stdout is not None:
                process.stdout.close()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


def http(method: str, url: str, token: str | None = None, body: Any = None) -> Reply:
    """A plain HTTP client call: JSON out, JSON (or text) back."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - a local http URL
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            raw, status, headers = answer.read(), answer.status, dict(answer.headers)
    except urllib.error.HTTPError as error:
        raw, status, headers = error.read(), error.code, dict(error.headers)
    try:
        decoded: Any = json.loads(raw)
    except ValueError:
        decoded = raw.decode()
    return Reply(status, {name.lower(): value for name, value in headers.items()}, decoded)


def token(stack: RunningStack, tenant: str = "demo", scope: str | None = None, sub: str = "e2e-operator") -> str:
    arguments = ["token", "--tenant", tenant, "--sub", sub] + (["--scope", scope] if scope is not None else [])
    minted = stack.sluice(*arguments)
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip()


def eventually[T](probe: Callable[[], T | None], timeout_s: float = 60, what: str = "") -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def finished_job(stack: RunningStack, bearer: str, job_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        reply = http("GET", f"{stack.api}/api/v1/jobs/{job_id}", bearer)
        return reply.body if reply.status == 200 and reply.body["status"] in {"completed", "failed"} else None

    return eventually(probe, what=f"job {job_id} to finish")


def now_text(offset_s: int = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120 + offset_s))


def test_make_run_gets_ready_and_prints_what_a_newcomer_needs(stack: RunningStack) -> None:
    output = stack.output()
    names = stack.names()
    assert f"HTTP API      {stack.api}" in output
    assert names.ref("BatchBucket") in output
    assert f"= {SYSTEM}" in output
    assert ".venv/bin/sluice token --tenant demo" in output
    assert "s3 cp tests/data/drops/sample.csv" in output
    health = http("GET", f"{stack.api}/health")
    assert (health.status, health.body["status"]) == (200, "ok")


def test_the_twin_authorizes_before_any_function_runs(stack: RunningStack) -> None:
    no_token = http("GET", f"{stack.api}/api/v1/jobs")
    wrong_scope = http("GET", f"{stack.api}/api/v1/jobs", token(stack, scope="ingest:write"))
    forged = http("GET", f"{stack.api}/api/v1/jobs", token(stack) + "x")
    unknown = http("GET", f"{stack.api}/api/v1/nothing-here", token(stack))

    assert (no_token.status, no_token.body) == (401, {"message": "Unauthorized"})
    assert "www-authenticate" in no_token.headers
    assert (wrong_scope.status, wrong_scope.body) == (403, {"message": "Forbidden"})
    assert forged.status == 401
    assert (unknown.status, unknown.body) == (404, {"message": "Not Found"})
    served = [line for line in stack.lines if line.startswith("GET /api/v1/jobs ->")]
    assert served
    assert all("-> twin 40" in line for line in served)  # answered by the twin, no function invoked


def test_a_batch_lands_with_exact_counts_and_a_review_replays_its_quarantined_reading(stack: RunningStack) -> None:
    bearer = token(stack)
    readings = [
        {"sensor_id": SENSOR, "timestamp": now_text(-n), "value": 200.0 + n, "unit": "bar", "quality": 95}
        for n in range(1, 9)
    ]
    readings.append({"sensor_id": SENSOR, "timestamp": now_text(-20), "value": 812.5, "unit": "bar", "quality": 95})
    readings.append({"sensor_id": SENSOR, "timestamp": now_text(-21), "value": 10.0, "unit": "psi", "quality": 95})

    accepted = http("POST", f"{stack.api}/api/v1/data/ingest", bearer, {"system_id": SYSTEM, "readings": readings})

    assert accepted.status == 202, accepted.body
    job_id = accepted.body["job_id"]
    assert accepted.body["status_url"] == f"{stack.api}/api/v1/jobs/{job_id}"
    job = finished_job(stack, bearer, job_id)
    assert job["status"] == "completed", job
    assert (job["total_readings"], job["inserted_readings"], job["quarantined_readings"]) == (10, 8, 2)

    listed = http("GET", f"{stack.api}/api/v1/quarantine?job_id={job_id}", bearer)
    assert listed.status == 200
    reasons = {item["reason"]: item for item in listed.body["items"]}
    assert set(reasons) == {"out_of_range", "invalid_unit"}

    row_id = reasons["out_of_range"]["id"]
    fix = {"action": "fix", "value": 212.5, "notes": "gauge misread"}
    reviewed = http("POST", f"{stack.api}/api/v1/quarantine/{row_id}/review", bearer, fix)

    assert reviewed.status == 200, reviewed.body
    with psycopg.connect(stack.dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM readings WHERE job_id = %s", (job_id,)).fetchone()
        replayed = conn.execute("SELECT value FROM readings WHERE job_id = %s AND value = 212.5", (job_id,)).fetchone()
    assert stored == (9,)
    assert replayed == (212.5,)
    after = http("GET", f"{stack.api}/api/v1/jobs/{job_id}", bearer).body
    assert (after["reviewed_readings"], after["replayed_readings"]) == (1, 1)


def test_a_drop_through_the_aws_cli_becomes_a_completed_job(stack: RunningStack, tmp_path: Path) -> None:
    bearer = token(stack)
    rows = [f"{SYSTEM},{SENSOR},{now_text(-100 - n)},{150 + n},bar,96" for n in range(50)]
    rows.append(f"{SYSTEM},{SENSOR},{now_text(-200)},9000,bar,96")  # out of range
    drop = tmp_path / "press-17 export.csv.gz"
    drop.write_bytes(gzip.compress(("system_id,sensor_id,timestamp,value,unit,quality\n" + "\n".join(rows)).encode()))
    bucket = stack.names().ref("BatchBucket")

    copied = stack.aws("s3", "cp", str(drop), f"s3://{bucket}/drops/demo/")

    assert copied.returncode == 0, copied.stderr

    def drop_job() -> dict[str, Any] | None:
        listing = http("GET", f"{stack.api}/api/v1/jobs?source=drop", bearer).body
        done = [job for job in listing["items"] if job["status"] in {"completed", "failed"}]
        return done[0] if done else None

    job = eventually(drop_job, what="the drop's job")
    assert job["status"] == "completed", job
    assert (job["total_readings"], job["inserted_readings"], job["quarantined_readings"]) == (51, 50, 1)


def test_a_file_that_fails_five_times_is_parked_in_the_dlq_and_its_job_failed(stack: RunningStack) -> None:
    # A database that refuses this tenant's loads, as an operator's half-applied change might: every attempt fails.
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO systems (tenant_id, name) VALUES ('e2e-refused', 'press-9')")
        conn.execute(
            """CREATE FUNCTION refuse_load() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'loads of tenant % are refused', NEW.tenant_id; END $$"""
        )
        conn.execute(
            "CREATE TRIGGER refuse_load BEFORE INSERT ON ingest_ledger FOR EACH ROW"
            " WHEN (NEW.tenant_id = 'e2e-refused') EXECUTE FUNCTION refuse_load()"
        )
    names = stack.names()
    sqs = stack.sqs()
    bucket = names.ref("BatchBucket")
    try:
        stack.s3().put_object(
            Bucket=bucket,
            Key="drops/e2e-refused/refused.csv",
            Body=f"system_id,sensor_id,timestamp,value,unit,quality\n"
            f"{SYSTEM},{SENSOR},{now_text()},100,bar,99\n".encode(),
        )

        def parked() -> list[Any] | None:
            answer = sqs.receive_message(QueueUrl=names.ref("IngestDeadLetterQueue"), WaitTimeSeconds=1)
            return answer.get("Messages") or None

        messages = eventually(parked, timeout_s=90, what="the message in the dead-letter queue")
    finally:
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse_load ON ingest_ledger")
            conn.execute("DROP FUNCTION refuse_load()")

    assert "drops%2Fe2e-refused%2Frefused.csv" in messages[0]["Body"]  # S3 events URL-encode keys
    jobs = http("GET", f"{stack.api}/api/v1/jobs", token(stack, tenant="e2e-refused")).body["items"]
    assert [job["status"] for job in jobs] == ["failed"]
    assert "gave up after 5 attempts" in jobs[0]["error_message"]
    assert "dead-letter queue" in jobs[0]["error_message"]
    assert "loads of tenant e2e-refused are refused" in jobs[0]["error_message"]
    attempts = [line for line in stack.lines if line.startswith("LoadWorkerFunction <-") and "returned" in line]
    assert len(attempts) >= 5


EVENTS_OF = {
    "IngestApiFunction": ["ingest-api-post.json", "ingest-api-post-gzip.json"],
    "LoadWorkerFunction": ["load-worker-sqs-s3-incoming.json", "load-worker-sqs-s3-drop.json"],
    "JobStatusFunction": ["job-status-get.json", "job-status-list.json"],
    "QuarantineFunction": ["quarantine-list.json", "quarantine-review.json", "quarantine-review-bulk.json"],
    "HealthFunction": ["health.json", "health-deep.json"],
}


@pytest.mark.parametrize(("function", "event"), [(f, e) for f, events in EVENTS_OF.items() for e in events])
def test_sluice_invoke_runs_every_functions_sample_events(stack: RunningStack, function: str, event: str) -> None:
    if function == "LoadWorkerFunction":
        # The sample events name the bucket of a stack called "sluice" and versions that exist nowhere: with the
        # bucket there, the worker finds the versions gone, fails their jobs and acknowledges the messages.
        s3 = stack.s3()
        bucket = json.loads(json.loads((REPO_ROOT / "events" / event).read_text())["Records"][0]["body"])["Records"][0]
        name = bucket["s3"]["bucket"]["name"]
        if name not in {entry["Name"] for entry in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    invoked = stack.sluice(
        "invoke", function, "-e", f"events/{event}", "--endpoint-url", stack.moto, "--stack-name", STACK
    )

    assert invoked.returncode == 0, invoked.stderr
    result = json.loads(invoked.stdout)
    if function == "LoadWorkerFunction":
        assert result == {"batchItemFailures": []}  # the objects it names do not exist: their jobs fail, acked
    else:
        # Answered by the function itself (the sample's ids may not exist here, or be reviewed already): not a fault.
        assert 200 <= result["statusCode"] < 500, result
    assert f"{function}: " in invoked.stderr


def test_every_function_of_the_template_has_sample_events() -> None:
    template = load_template(REPO_ROOT / "template.yaml")
    functions = {name for name, body in template["Resources"].items() if body["Type"] == "AWS::Serverless::Function"}
    assert set(EVENTS_OF) == functions
    for events in EVENTS_OF.values():
        for event in events:
            assert (REPO_ROOT / "events" / event).is_file()


def test_sluice_demo_reports_both_jobs_with_the_planted_reasons(stack: RunningStack) -> None:
    demo = stack.sluice("demo", "--api", stack.api, "--endpoint-url", stack.moto, "--stack-name", STACK)

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "API batch: job" in demo.stdout
    assert "CSV.gz drop: job" in demo.stdout
    assert demo.stdout.count(" completed") == 2
    # Every planted fault is found, each where it was planted (the drop's readings are older than the batch's).
    for block in demo.stdout.split("\n\n")[1:]:
        found = next(line for line in block.splitlines() if "quarantined by reason" in line).split(": ", 1)[1]
        planted = next(line for line in block.splitlines() if "planted" in line).split(": ", 1)[1]
        assert found == planted, block


def test_ctrl_c_stops_everything_the_stack_started(stack: RunningStack) -> None:
    os.killpg(stack.process.pid, signal.SIGINT)

    assert stack.process.wait(60) == 0
    time.sleep(0.5)
    assert stack.lines[-1] == "stopped" or "stopped" in stack.lines[-3:], stack.output()[-2000:]
    for port in (stack.http_port, stack.moto_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    leftovers = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"AWS_LAMBDA_FUNCTION_NAME={STACK}-".encode() in environ.read_bytes():
                leftovers.append(environ.parent.name)
        except OSError:
            continue
    assert leftovers == []
    # The database was running before (the test session needs it), so the stack left it running.
    with psycopg.connect(stack.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
