"""The whole pipeline on one machine: template.yaml's resources in moto, its functions, the HTTP API twin, the
SQS event source and the schedules, started together and stopped together (``make run`` drives this).
"""

import json
import logging
import mimetypes
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import boto3
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sluice_tools.local.api import HttpApiTwin, HttpRequest, HttpResponse, http_api_routes
from sluice_tools.local.auth import SigningKey, jwt_authorizers, token_claims
from sluice_tools.local.demo import DEMO_SYSTEM_ID, DEMO_SYSTEM_NAME, DEMO_TENANT
from sluice_tools.local.lambdas import FunctionSpec, Invocation, LocalFunction, function_specs
from sluice_tools.local.poller import QueuePoller, SqsEventSource, sqs_event_sources
from sluice_tools.local.resources import plan_stack, provision_stack
from sluice_tools.local.schedule import Schedule, ScheduleError, parse_schedule
from sluice_tools.local.streams import StreamPoller, dynamodb_event_sources
from sluice_tools.local.template import (
    LOCAL_ACCOUNT_ID,
    StackContext,
    TemplateError,
    created_resources_of_type,
    function_environment,
    load_template,
)
from sluice_tools.systems import SystemRegistrationError, add_system

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = logging.getLogger(__name__)
# Environments started per API function at most; each is a process of its own (about 80 MB).
API_CONCURRENCY = 4
# The local AWS needs some credentials to sign with; moto accepts any.
LOCAL_CREDENTIALS = dict.fromkeys(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "local")
# What the local stack sets unlike AWS, for each function that declares the variable: webhooks may target http and
# loopback addresses, so a receiver on this machine gets them.
LOCAL_SETTINGS: Final = {"SLUICE_WEBHOOK_ALLOW_LOCAL": "true"}


@dataclass(frozen=True, slots=True)
class LocalStackOptions:
    """Where the local stack lives and what it talks to."""

    root: Path
    database_dsn: str
    moto_endpoint: str = "http://127.0.0.1:4566"
    stack_name: str = "sluice-local"
    region: str = "eu-central-1"
    host: str = "127.0.0.1"
    port: int = 3000
    # A shorter visibility timeout for the event source's queues (tests, or to see retries within minutes).
    visibility_timeout_s: int | None = None
    demo_tenant: str = DEMO_TENANT
    demo_system: str = DEMO_SYSTEM_NAME
    env_overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Off for the latency benchmark: in AWS the worker does not share the API's CPU, here it would.
    poll_queues: bool = True

    @property
    def local_dir(self) -> Path:
        """``.local/``: the signing key, logs and other generated state."""
        return self.root / ".local"

    @property
    def template_path(self) -> Path:
        """template.yaml."""
        return self.root / "template.yaml"


@dataclass(frozen=True, slots=True)
class DatabaseLogin:
    """A login user the local functions connect as: a member of one of the migrations' group roles, with its own
    secret standing in for one of the template's database secret parameters."""

    parameter: str
    user: str
    group: str
    secret_suffix: str


# One per function that connects, as docs/operations.md ("The database roles") has an operator create them in AWS.
DATABASE_LOGINS: Final = (
    DatabaseLogin("WorkerDatabaseSecretArn", "sluice_worker_login", "sluice_worker", "worker"),
    DatabaseLogin("ReviewDatabaseSecretArn", "sluice_reviewer_login", "sluice_reviewer", "reviewer"),
    DatabaseLogin("SystemsDatabaseSecretArn", "sluice_registrar_login", "sluice_registrar", "registrar"),
    DatabaseLogin("AlertsDatabaseSecretArn", "sluice_alerter_login", "sluice_alerter", "alerter"),
    DatabaseLogin("NotifierDatabaseSecretArn", "sluice_notifier_login", "sluice_notifier", "notifier"),
    DatabaseLogin("ReadOnlyDatabaseSecretArn", "sluice_reader_login", "sluice_reader", "reader"),
    # ReadingsFunction reads as sluice_reader too, with a login of its own, as in AWS.
    DatabaseLogin("ReadingsDatabaseSecretArn", "sluice_readings_login", "sluice_reader", "readings"),
)


def database_secret_name(stack_name: str, login: DatabaseLogin | None = None) -> str:
    """The local stack's database secret (RDS layout): the owner's, standing in for the DatabaseSecretArn
    parameter, or that of one login user, standing in for its parameter."""
    return f"{stack_name}/database" if login is None else f"{stack_name}/database-{login.secret_suffix}"


def database_secret_arn(stack_name: str, region: str, login: DatabaseLogin | None = None) -> str:
    """The secret's partial ARN (no random suffix): Secrets Manager, and moto, accept it, and it is predictable."""
    return f"arn:aws:secretsmanager:{region}:{LOCAL_ACCOUNT_ID}:secret:{database_secret_name(stack_name, login)}"


def secret_from_dsn(dsn: str) -> dict[str, Any]:
    """A DSN in the RDS secret layout the functions read (``dsn_from_secret``)."""
    parts = conninfo_to_dict(dsn)
    return {
        "engine": "postgres",
        "host": parts.get("host", "127.0.0.1"),
        "port": int(str(parts.get("port") or 5432)),
        "username": parts.get("user", "postgres"),
        "password": parts.get("password", ""),
        "dbname": parts.get("dbname", "sluice"),
        # The local cluster has no TLS; in AWS the secret leaves this out and TLS is required.
        "sslmode": parts.get("sslmode", "disable"),
    }


def ensure_database_secret(client: "SecretsManagerClient", name: str, dsn: str) -> None:
    """Create the database secret, or bring its value up to date."""
    value = json.dumps(secret_from_dsn(dsn))
    try:
        client.put_secret_value(SecretId=name, SecretString=value)
    except client.exceptions.ResourceNotFoundException:
        client.create_secret(Name=name, SecretString=value, Description="Sluice local database (RDS layout)")


# A concurrent CREATE ROLE of the same name, or "tuple concurrently updated" from a concurrent ALTER ROLE or GRANT.
_CONCURRENT_ROLE_CHANGE = (
    psycopg.errors.UniqueViolation,
    psycopg.errors.DuplicateObject,
    psycopg.errors.InternalError_,
)
_LOGIN_ATTEMPTS = 5


def ensure_database_logins(
    dsn: str, password: str | None = None, logins: Sequence[DatabaseLogin] = DATABASE_LOGINS
) -> str:
    """Create each login user (or give it a new password) as a member of its group role, on the cluster of ``dsn``
    (whose user may create roles); return the password they now share (random unless given).

    Roles belong to the cluster, so every local stack on it (``make run``, the end-to-end tests' scratch databases)
    uses the same users, and the latest start's password. The project's cluster trusts loopback connections, so an
    earlier stack still running keeps connecting; on a cluster that checks passwords it would need a restart. Two
    stacks starting at the same moment may collide on a catalog row: the loser tries again.
    """
    chosen = password or secrets.token_urlsafe(24)
    for attempt in range(1, _LOGIN_ATTEMPTS + 1):
        try:
            with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
                for login in logins:
                    _ensure_login(conn, login, chosen)
        except _CONCURRENT_ROLE_CHANGE:
            if attempt == _LOGIN_ATTEMPTS:
                raise
            time.sleep(0.1 * attempt)
        else:
            break
    return chosen


def _ensure_login(conn: psycopg.Connection[tuple[Any, ...]], login: DatabaseLogin, password: str) -> None:
    if conn.execute("SELECT FROM pg_roles WHERE rolname = %s", (login.group,)).fetchone() is None:
        raise RuntimeError(
            f"the database has no role {login.group}: run the migrations first (.venv/bin/sluice-migrate up)"
        )
    exists = conn.execute("SELECT FROM pg_roles WHERE rolname = %s", (login.user,)).fetchone() is not None
    # Role statements take no bind parameters: the password goes in as a quoted literal.
    conn.execute(
        sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
            sql.SQL("ALTER" if exists else "CREATE"), sql.Identifier(login.user), sql.Literal(password)
        )
    )
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(login.group), sql.Identifier(login.user)))


def login_dsn(dsn: str, login: DatabaseLogin, password: str) -> str:
    """``dsn`` with the login user and its password in place of the owner's."""
    return make_conninfo(dsn, user=login.user, password=password)


def local_parameters(stack_name: str, region: str) -> dict[str, str]:
    """Template parameters the local stack sets: each database secret parameter names the secret it creates."""
    parameters = {"DatabaseSecretArn": database_secret_arn(stack_name, region)}
    for login in DATABASE_LOGINS:
        parameters[login.parameter] = database_secret_arn(stack_name, region, login)
    return parameters


def local_function_specs(
    context: StackContext, root: Path, moto_endpoint: str, overrides: Mapping[str, Mapping[str, str]]
) -> dict[str, FunctionSpec]:
    """The functions with the environment the template resolves for them, pointed at the local AWS."""
    pointed = {"Parameters": {"SLUICE_AWS_ENDPOINT_URL": moto_endpoint, **LOCAL_SETTINGS}}
    merged: dict[str, dict[str, str]] = {key: dict(value) for key, value in pointed.items()}
    for key, value in overrides.items():
        merged.setdefault(key, {}).update(value)
    return function_specs(context, root, local_environment=LOCAL_CREDENTIALS, overrides=merged)


def planned_context(
    root: Path, stack_name: str = "sluice-local", region: str = "eu-central-1", *, moto_endpoint: str
) -> StackContext:
    """The local stack's context as ``make run`` provisions it, worked out without calling AWS."""
    context = StackContext(
        load_template(root / "template.yaml"),
        stack_name=stack_name,
        region=region,
        parameter_overrides=local_parameters(stack_name, region),
    )
    return plan_stack(context, moto_endpoint)


def local_token(  # noqa: PLR0913 - each is a claim or where the key is
    context: StackContext,
    local_dir: Path,
    *,
    tenant: str,
    subject: str,
    scope: str,
    lifetime_s: int = 3600,
    authorizer: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """A token the twin's authorizer accepts (the template's only one, unless named), and its claims."""
    authorizers = jwt_authorizers(context, http_api_routes(context)[0])
    config = authorizers[authorizer] if authorizer else next(iter(authorizers.values()))
    claims = token_claims(
        config,
        tenant_claim=context.ref("TenantClaim"),
        tenant=tenant,
        subject=subject,
        scope=scope,
        lifetime_s=lifetime_s,
    )
    return SigningKey.load_or_create(local_dir).mint(claims), claims


def register_demo_system(conn: psycopg.Connection[Any], tenant: str, name: str) -> tuple[str, str | None]:
    """The demo system's id, registered when missing; with why it could not be, when it could not (its id renamed
    through the API, say, or another tenant's), so that the stack still starts and says so."""
    try:
        system, _ = add_system(conn, tenant, name, DEMO_SYSTEM_ID)
    except SystemRegistrationError as exc:
        return str(DEMO_SYSTEM_ID), f"the demo system {name!r} was not registered: {exc}"
    return str(system.id), None


def sam_env_vars(context: StackContext, moto_endpoint: str) -> dict[str, dict[str, str]]:
    """``events/env.json``: what ``sam local invoke --env-vars`` needs to reach ``make run``'s stack.

    SAM resolves ``!Ref`` of a resource to its logical id, so every variable is given its value in the local stack:
    under "Parameters", which SAM applies to each function that declares the variable, when every function gets
    the same value; otherwise under each function's logical id (each database function's secret is its own).
    """
    environments = {
        logical_id: function_environment(context, logical_id)
        for logical_id in created_resources_of_type(context, "AWS::Serverless::Function")
    }
    values: dict[str, set[str]] = {}
    for environment in environments.values():
        for name, value in environment.items():
            values.setdefault(name, set()).add(value)
    shared = {name: found.pop() for name, found in values.items() if len(found) == 1}
    shared["SLUICE_AWS_ENDPOINT_URL"] = moto_endpoint
    shared.update({name: value for name, value in LOCAL_SETTINGS.items() if name in values})
    env_vars: dict[str, dict[str, str]] = {"Parameters": dict(sorted(shared.items()))}
    for logical_id, environment in sorted(environments.items()):
        own = {name: value for name, value in environment.items() if name not in shared}
        if own:
            env_vars[logical_id] = dict(sorted(own.items()))
    return env_vars


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """A ``Schedule``/``ScheduleV2`` event of a function."""

    function: str
    name: str
    schedule: Schedule
    payload: Any | None


def scheduled_events(context: StackContext) -> list[ScheduledEvent]:
    """The template's enabled schedules."""
    events: list[ScheduledEvent] = []
    for logical_id, function in created_resources_of_type(context, "AWS::Serverless::Function").items():
        for name, event in function["Properties"].get("Events", {}).items():
            if event["Type"] not in {"Schedule", "ScheduleV2"}:
                continue
            properties = context.resolve(event.get("Properties", {}))
            expression = properties.get("Schedule") or properties.get("ScheduleExpression")
            enabled = properties.get("Enabled", True) and properties.get("State", "ENABLED") == "ENABLED"
            if not enabled:
                continue
            try:
                schedule = parse_schedule(str(expression))
            except ScheduleError as exc:
                raise TemplateError(f"{logical_id}.{name}: {exc}") from exc
            payload = json.loads(properties["Input"]) if "Input" in properties else None
            events.append(ScheduledEvent(logical_id, name, schedule, payload))
    return events


def schedule_event(scheduled: ScheduledEvent, stack_name: str, region: str, moment: datetime) -> Any:
    """What EventBridge sends when a schedule fires: its Input, or the "Scheduled Event" envelope."""
    if scheduled.payload is not None:
        return scheduled.payload
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT_ID,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [
            f"arn:aws:events:{region}:{LOCAL_ACCOUNT_ID}:rule/{stack_name}-{scheduled.function}{scheduled.name}"
        ],
        "detail": {},
    }


class Scheduler:
    """Fires each schedule on time (one thread; invocations run in threads of their own, as async invokes do)."""

    def __init__(
        self,
        events: list[ScheduledEvent],
        fire: Callable[[ScheduledEvent, datetime], None],
        clock: Callable[[], datetime],
    ) -> None:
        self._events = events
        self._fire = fire
        self._clock = clock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._fired: list[threading.Thread] = []  # written by the scheduler's thread only

    def start(self) -> None:
        """Start firing."""
        if self._events:
            self._thread.start()

    def stop(self, timeout_s: float = 10) -> None:
        """Stop firing, then wait at most ``timeout_s`` in all for the invocations already fired (as the pollers
        wait for the batch they hold), so that what they report comes before the stack says it has stopped."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5)  # at once: the thread waits on ``_stopping`` between firings
        ends = time.monotonic() + timeout_s
        for thread in self._fired:
            thread.join(max(0.0, ends - time.monotonic()))

    def _run(self) -> None:
        now = self._clock()
        due = {index: event.schedule.next_after(now) for index, event in enumerate(self._events)}
        while not self._stopping.is_set():
            index = min(due, key=lambda key: due[key])
            wait = (due[index] - self._clock()).total_seconds()
            if wait > 0 and self._stopping.wait(min(wait, 1.0)):
                return
            if wait > 0:
                continue
            moment = due[index]
            due[index] = self._events[index].schedule.next_after(moment)
            fired = threading.Thread(target=self._fire, args=(self._events[index], moment), daemon=True)
            fired.start()
            self._fired = [thread for thread in self._fired if thread.is_alive()] + [fired]


class LocalStack:
    """Everything ``make run`` serves, started by ``start`` and stopped by ``stop``."""

    def __init__(self, options: LocalStackOptions, out: IO[str]) -> None:
        self.options = options
        self._out = out
        self._lock = threading.Lock()
        self.functions: dict[str, LocalFunction] = {}
        self.context: StackContext | None = None
        self.demo_system_id: str | None = None
        self._pollers: list[QueuePoller] = []
        self._stream_pollers: list[StreamPoller] = []
        self._scheduler: Scheduler | None = None
        self._server: ThreadingHTTPServer | None = None
        self._server_thread: threading.Thread | None = None
        self._logs: list[IO[bytes]] = []

    # --- start -----------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Provision, register the demo system, start functions, the HTTP twin, pollers and schedules."""
        options = self.options
        session = boto3.session.Session(
            region_name=options.region,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        endpoint = options.moto_endpoint
        s3, sqs = session.client("s3", endpoint_url=endpoint), session.client("sqs", endpoint_url=endpoint)
        secrets_manager = session.client("secretsmanager", endpoint_url=endpoint)
        ensure_database_secret(secrets_manager, database_secret_name(options.stack_name), options.database_dsn)
        # The functions connect as the login users of their roles, each through its own secret, as in AWS.
        password = ensure_database_logins(options.database_dsn)
        for login in DATABASE_LOGINS:
            ensure_database_secret(
                secrets_manager,
                database_secret_name(options.stack_name, login),
                login_dsn(options.database_dsn, login, password),
            )
        context = StackContext(
            load_template(options.template_path),
            stack_name=options.stack_name,
            region=options.region,
            parameter_overrides=local_parameters(options.stack_name, options.region),
        )
        provision_stack(context, s3, sqs, session.client("dynamodb", endpoint_url=endpoint))
        self.context = context
        sources = [source for source in sqs_event_sources(context) if source.enabled]
        if options.visibility_timeout_s is not None:
            for source in sources:
                sqs.set_queue_attributes(
                    QueueUrl=source.queue_url, Attributes={"VisibilityTimeout": str(options.visibility_timeout_s)}
                )
        with psycopg.connect(options.database_dsn, autocommit=True) as conn:
            self.demo_system_id, warning = register_demo_system(conn, options.demo_tenant, options.demo_system)
        if warning is not None:
            print(f"warning: {warning}", file=self._out, flush=True)

        specs = local_function_specs(context, options.root, options.moto_endpoint, options.env_overrides)
        log_dir = options.local_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        concurrency = {source.function: source.max_concurrency for source in sources}
        for logical_id, spec in specs.items():
            log = (log_dir / f"{logical_id}.log").open("ab")
            self._logs.append(log)
            self.functions[logical_id] = LocalFunction(spec, concurrency.get(logical_id, API_CONCURRENCY), log)

        signing_key = SigningKey.load_or_create(options.local_dir)
        api_id, routes = http_api_routes(context)
        twin = HttpApiTwin(
            api_id=api_id,
            routes=routes,
            authorizers=jwt_authorizers(context, api_id),
            signing_key=signing_key,
            invoke=self.invoke,
            local_pages=local_pages(options.root),
        )
        self._server = _http_server(twin, options.host, options.port, self._log_request)
        self._server_thread = threading.Thread(target=self._server.serve_forever, name="http-api", daemon=True)
        self._server_thread.start()

        self._pollers = [
            QueuePoller(source, sqs, self.invoke, options.region, self._log_batch)
            for source in sources
            if options.poll_queues
        ]
        for poller in self._pollers:
            poller.start()
        streams = session.client("dynamodbstreams", endpoint_url=endpoint)
        self._stream_pollers = [
            StreamPoller(source, streams, self.invoke, options.region)
            for source in dynamodb_event_sources(context)
            if source.enabled and options.poll_queues
        ]
        for stream_poller in self._stream_pollers:
            stream_poller.start()
        self._scheduler = Scheduler(scheduled_events(context), self._fire, lambda: datetime.now(UTC))
        self._scheduler.start()

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Invocation:
        """Invoke one of the template's functions synchronously."""
        invocation = self.functions[logical_id].invoke(event)
        if invocation.failed:
            error = invocation.error or {}
            self._say(f"  {logical_id} failed: {error.get('errorType')}: {error.get('errorMessage')}")
        return invocation

    def _fire(self, scheduled: ScheduledEvent, moment: datetime) -> None:
        event = schedule_event(scheduled, self.options.stack_name, self.options.region, moment)
        invocation = self.invoke(scheduled.function, event)
        outcome = "failed" if invocation.failed else "ok"
        self._say(
            f"schedule {scheduled.schedule.expression} -> {scheduled.function}"
            f" {outcome} ({invocation.duration_ms:.0f} ms)"
        )

    def _log_request(
        self, request: HttpRequest, response: HttpResponse, function: str | None, elapsed_ms: float
    ) -> None:
        target = function or "twin"
        self._say(f"{request.method} {request.raw_path} -> {target} {response.status} ({elapsed_ms:.1f} ms)")

    def _log_batch(self, source: SqsEventSource, received: int, failed: int, invocation: Invocation) -> None:
        outcome = f"{failed} returned to the queue" if failed else "all deleted"
        self._say(
            f"{source.function} <- {received} message(s) from the queue: {outcome} ({invocation.duration_ms:.0f} ms)"
        )

    def _say(self, line: str) -> None:
        with self._lock:
            print(line, file=self._out, flush=True)

    # --- stop ------------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop taking work, then stop every function environment (a message mid-load returns to its queue)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._scheduler is not None:
            self._scheduler.stop(timeout_s=0)
        for poller in self._pollers:
            poller.stop(timeout_s=0)
        for stream_poller in self._stream_pollers:
            stream_poller.stop(timeout_s=0)
        for function in self.functions.values():
            function.close()
        # Everything that was mid-invocation has its answer now (a failure, as its environment was stopped) and
        # says so; those reports come before the caller prints "stopped".
        ends = time.monotonic() + 10
        for poller in self._pollers:
            poller.stop(timeout_s=max(0.0, ends - time.monotonic()))
        for stream_poller in self._stream_pollers:
            stream_poller.stop(timeout_s=max(0.0, ends - time.monotonic()))
        if self._scheduler is not None:
            self._scheduler.stop(timeout_s=max(0.0, ends - time.monotonic()))
        for log in self._logs:
            log.close()

    # --- what to tell the user -------------------------------------------------------------------------------------
    def banner(self) -> str:
        """Endpoints, names and commands to paste."""
        options, context = self.options, self.context
        if context is None:
            raise RuntimeError("the stack is not started")
        base = f"http://{options.host}:{options.port}"
        bucket = context.ref("BatchBucket")
        moto = options.moto_endpoint
        return "\n".join(
            [
                "",
                f"Sluice is running: template.yaml's stack {options.stack_name!r} on this machine.",
                f"  HTTP API      {base}   (JWT authorizer: tokens from .venv/bin/sluice token)",
                f"  API docs      {base}/docs/   spec: {base}/openapi.yaml",
                f"  console       {base}/console/   (sign in: .venv/bin/sluice console prints a signed-in URL)",
                f"  local AWS     {moto}   (moto: S3, SQS, DynamoDB, Secrets Manager)",
                f"  bucket        {bucket}",
                f"  queue         {context.ref('IngestQueue')}",
                f"  dead letters  {context.ref('IngestDeadLetterQueue')}",
                f"  database      {options.database_dsn}",
                f"  demo system   tenant {options.demo_tenant!r}, system {options.demo_system!r}"
                f" = {self.demo_system_id}",
                f"  function logs {options.local_dir / 'logs'}/<LogicalId>.log",
                "",
                "Try it (in another terminal, from the checkout):",
                f"  export TOKEN=$(.venv/bin/sluice token --tenant {options.demo_tenant} --sub me)"
                f" SYSTEM={self.demo_system_id}",
                f'  curl -s {base}/api/v1/data/ingest -H "Authorization: Bearer $TOKEN"'
                """ -H "Content-Type: application/json" -d '""" + SAMPLE_BATCH + "'",
                f'  curl -s {base}/api/v1/jobs -H "Authorization: Bearer $TOKEN"',
                f"  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local .venv/bin/aws --endpoint-url {moto}"
                f" --region {options.region} s3 cp tests/data/drops/sample.csv s3://{bucket}/drops/{options.demo_tenant}/",
                "  .venv/bin/sluice demo        # a mixed batch and a CSV.gz drop, end to end",
                "",
                "ready: press Ctrl-C to stop",
            ]
        )


# One reading for the demo system, stamped now: shell quoting splices in $SYSTEM and the time.
SAMPLE_BATCH = (
    """{"system_id":"'$SYSTEM'","readings":[{"sensor_id":"6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8","""
    """"timestamp":"'$(date -u +%FT%TZ)'","value":212.5,"unit":"bar","quality":97}]}"""
)


def local_pages(root: Path) -> dict[str, Callable[[], HttpResponse]]:
    """The twin's own pages: the OpenAPI spec and Swagger UI on it (served offline from swagger-ui-bundle)."""
    # A development dependency, only needed here; it ships no type information.
    from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]  # noqa: PLC0415

    spec = root / "docs" / "openapi.yaml"
    assets = Path(swagger_ui_path)
    index = SWAGGER_PAGE.encode()

    def file_page(path: Path, content_type: str) -> Callable[[], HttpResponse]:
        return lambda: HttpResponse(
            200, [("content-type", content_type), ("cache-control", "no-store")], path.read_bytes()
        )

    pages: dict[str, Callable[[], HttpResponse]] = {
        "/openapi.yaml": file_page(spec, "application/yaml"),
        "/docs": lambda: HttpResponse(308, [("location", "/docs/")], b""),
        "/docs/": lambda: HttpResponse(200, [("content-type", "text/html; charset=utf-8")], index),
    }
    for name in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png"):
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        pages[f"/docs/{name}"] = file_page(assets / name, content_type)
    return pages


SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Sluice API (local)</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/openapi.yaml",
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout",
      persistAuthorization: true
    });
  </script>
</body>
</html>
"""


RequestLog = Callable[[HttpRequest, HttpResponse, str | None, float], None]


def _http_server(twin: HttpApiTwin, host: str, port: int, log: RequestLog) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as API Gateway offers
        # Headers and body go out in two writes; with Nagle's algorithm the body would wait for the client's
        # delayed ACK (40 ms on Linux) on every keep-alive response.
        disable_nagle_algorithm = True
        server_version = "sluice-local"

        def _serve(self) -> None:
            started = time.perf_counter()
            length = int(self.headers.get("content-length") or 0)
            raw_path, _, raw_query = self.path.partition("?")
            request = HttpRequest(
                method=self.command,
                raw_path=raw_path,
                raw_query=raw_query,
                headers=list(self.headers.items()),
                body=self.rfile.read(length) if length else b"",
                source_ip=self.client_address[0],
                protocol=self.request_version,
            )
            response, function = twin.handle(request)
            self.send_response(response.status)
            for name, value in response.headers:
                if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                    self.send_header(name, value)
            self.send_header("content-length", str(len(response.body)))
            self.send_header("apigw-requestid", uuid.uuid4().hex[:16])
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
            log(request, response, function, (time.perf_counter() - started) * 1000)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            """Requests are logged by the stack, one line each."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
