"""`make run`'s stack as a test fixture: infra/run.sh started on free ports with its own database, and the plain
clients the end-to-end and reliability suites drive it with (HTTP, the AWS CLI, boto3, the `sluice` CLI)."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from sluice_tools.cli import ALL_SCOPES
from sluice_tools.local.api import http_api_routes
from sluice_tools.local.auth import JwtAuthorizerConfig, SigningKey, jwt_authorizers, token_claims
from sluice_tools.local.resources import plan_stack
from sluice_tools.local.stack import local_parameters
from sluice_tools.local.template import StackContext, load_template

from .paths import REPO_ROOT
from .scratch import scratch_database

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

REGION = "eu-central-1"
SYSTEM = "3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01"  # the demo system `make run` registers
SENSOR = "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8"
# Short, so a failing message is retried (and parked) within seconds rather than every 30 minutes.
VISIBILITY_S = 2
READY_TIMEOUT_S = 180
# How long Ctrl-C may take to stop the stack (function environments, pollers, moto) before the test says so.
STOP_TIMEOUT_S = 60
# The per-principal read, review and systems-write limits (120 reads, 30 reviews, 5,000 rows and 120 registrations a
# minute by default) are lifted on the stacks tests run, whose pollers and fuzzers read far faster than any client
# should: a stack started with template_limits=True (the access matrix's) keeps the template's, and shows them.
LIFTED_LIMITS = {
    "SLUICE_READ_RATE_LIMIT_REQUESTS": "1000000",
    "SLUICE_REVIEW_RATE_LIMIT_REQUESTS": "1000000",
    "SLUICE_REVIEW_ROWS_PER_MINUTE": "1000000000",
    "SLUICE_SYSTEMS_WRITE_RATE_LIMIT_REQUESTS": "1000000",
    "SLUICE_ALERTS_WRITE_RATE_LIMIT_REQUESTS": "1000000",
}


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
    stack_name: str
    lines: list[str] = field(default_factory=list)
    started_s: float = 0.0
    # Where each function's log (appended to across runs) stood when this stack started.
    log_offsets: dict[str, int] = field(default_factory=dict)

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
            stack_name=self.stack_name,
            region=REGION,
            parameter_overrides=local_parameters(self.stack_name, REGION),
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

    def invoke(self, function: str, event: str, *more: str) -> subprocess.CompletedProcess[str]:
        """`sluice invoke` of one of the stack's functions with a sample event of events/, as `sam local invoke`."""
        return self.sluice(
            "invoke", function, "-e", f"events/{event}", "--endpoint-url", self.moto, "--stack-name", self.stack_name,
            *more,
        )  # fmt: skip

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

    def dynamodb(self) -> "DynamoDBClient":
        return _session().client("dynamodb", endpoint_url=self.moto)


def _session() -> boto3.session.Session:
    return boto3.session.Session(region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local")


@contextmanager
def running_stack(
    server_dsn: str,
    stack_name: str,
    *,
    visibility_s: int = VISIBILITY_S,
    env: Mapping[str, str] | None = None,
    prefix: str = "sluice_e2e",
    template_limits: bool = False,
    function_env: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[RunningStack]:
    """infra/run.sh on free ports with a scratch database on ``server_dsn``'s server; stopped (as Ctrl-C stops it)
    on exit. ``env`` adds to its environment: fault switches (SLUICE_FAULT_*), another cluster (SLUICE_DB_*). The
    read and review limits are lifted (``LIFTED_LIMITS``) unless ``template_limits``. ``function_env`` sets
    variables of single functions, as a SAM env vars file does (``{"ConsoleFunction": {"SLUICE_...": "..."}}``)."""
    with scratch_database(server_dsn, prefix=prefix) as dsn, tempfile.TemporaryDirectory() as scratch:
        http_port, moto_port = free_port(), free_port()
        env_vars = Path(scratch) / "env.json"
        variables = {"Parameters": {} if template_limits else LIFTED_LIMITS, **(function_env or {})}
        env_vars.write_text(json.dumps(variables), encoding="utf-8")
        environment = {
            **os.environ,
            "SLUICE_LOCAL_ENV_VARS": str(env_vars),
            "SLUICE_DB_DSN": dsn,
            "SLUICE_HTTP_PORT": str(http_port),
            "MOTO_PORT": str(moto_port),
            "SLUICE_STACK_NAME": stack_name,
            "SLUICE_LOCAL_VISIBILITY_TIMEOUT": str(visibility_s),
            **(env or {}),
        }
        started = time.monotonic()
        process = subprocess.Popen(
            ["bash", str(REPO_ROOT / "infra" / "run.sh")],
            cwd=REPO_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so the test can press "Ctrl-C" on it alone
        )
        running = RunningStack(process, http_port, moto_port, dsn, stack_name)
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
                try:
                    process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    # `sluice serve` ends itself within its stop budget, so what hangs here is the script around it.
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
                    reader.join(10)
                    pytest.fail(f"make run's stack did not stop in {STOP_TIMEOUT_S} s:\n{running.output()}")
            reader.join(10)
            if process.stdout is not None:
                process.stdout.close()
            _keep_hung_stop(running)


def _keep_hung_stop(running: RunningStack) -> None:
    """When `sluice serve` took over its stop budget (it then printed its threads' stacks and exited), keep its
    output in .local/logs/stop-hangs.log: the stack did stop, so the test passes, but a stop that hangs is a bug."""
    if any(line.startswith("Timeout (") for line in running.lines):
        kept = REPO_ROOT / ".local" / "logs" / "stop-hangs.log"
        kept.parent.mkdir(parents=True, exist_ok=True)
        with kept.open("a", encoding="utf-8") as log:
            log.write(f"--- {running.stack_name} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
            log.write(running.output() + "\n")


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


def minute_text(minutes_ago: int, second: int = 10) -> str:
    """A reading time ``second`` seconds into the minute that started ``minutes_ago`` minutes before the current
    one (the alert evaluator judges whole minutes)."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes_ago)
    return (start + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_text(offset_s: int = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120 + offset_s))


@dataclass(frozen=True)
class TokenMinter:
    """Tokens signed in-process with the checkout's local key (``.local/``, which the running stack verifies with):
    the claims ``sluice token`` mints, any of them replaced, so a test can make the odd ones (expired, another
    issuer or audience) that the CLI will not."""

    key: SigningKey
    authorizer: JwtAuthorizerConfig
    tenant_claim: str

    @classmethod
    def for_stack(cls, stack: RunningStack) -> "TokenMinter":
        context = stack.names()
        authorizers = jwt_authorizers(context, http_api_routes(context)[0])
        return cls(
            SigningKey.load_or_create(REPO_ROOT / ".local"),
            next(iter(authorizers.values())),
            context.ref("TenantClaim"),
        )

    def mint(
        self,
        tenant: str = "demo",
        sub: str = "e2e-operator",
        scope: str = ALL_SCOPES,
        *,
        lifetime_s: int = 3600,
        issued_at: int | None = None,
        **replaced: Any,
    ) -> str:
        """A signed token; ``replaced`` claims override the usual ones (None drops a claim)."""
        claims = token_claims(
            self.authorizer,
            tenant_claim=self.tenant_claim,
            tenant=tenant,
            subject=sub,
            scope=scope,
            lifetime_s=lifetime_s,
            now=issued_at,
        )
        claims.update(replaced)
        return self.key.mint({name: value for name, value in claims.items() if value is not None})


def request(
    method: str, url: str, token: str | None = None, body: Any = None, headers: Mapping[str, str] | None = None
) -> Reply:
    """``http`` with extra request headers (which win over the ones it sets)."""
    data = None if body is None else json.dumps(body).encode()
    sent = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - a local http URL
    if token:
        sent.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        sent.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        sent.add_header(name, value)
    try:
        with urllib.request.urlopen(sent, timeout=30) as answer:  # noqa: S310
            raw, status, received = answer.read(), answer.status, dict(answer.headers)
    except urllib.error.HTTPError as error:
        raw, status, received = error.read(), error.code, dict(error.headers)
    try:
        decoded: Any = json.loads(raw)
    except ValueError:
        decoded = raw.decode()
    return Reply(status, {name.lower(): value for name, value in received.items()}, decoded)


def raw_http(
    method: str, url: str, body: bytes = b"", headers: Mapping[str, str] | None = None, timeout_s: float = 60
) -> Reply:
    """An HTTP call that sends ``body`` byte for byte with exactly ``headers`` (no Content-Type is added), for
    requests a JSON client cannot make: gzip, broken encodings, wrong media types."""
    parts = urllib.parse.urlsplit(url)
    connection = HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s)
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body, dict(headers or {}))
        answer = connection.getresponse()
        raw, status = answer.read(), answer.status
        received = {name.lower(): value for name, value in answer.getheaders()}
    finally:
        connection.close()
    try:
        decoded: Any = json.loads(raw)
    except ValueError:
        decoded = raw.decode(errors="replace")
    return Reply(status, received, decoded)
