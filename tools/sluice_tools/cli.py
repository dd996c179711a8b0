"""``sluice``: the local runtime's command line (``.venv/bin/sluice --help``).

sluice serve                     the local stack (``make run`` starts the database and moto, then this)
sluice token --tenant T --sub S  a JWT the local authorizer accepts
sluice console [--open]          the operator console's URL, signed in with a fresh local token
sluice systems add|list          register a tenant's systems (in the database)
sluice systems import FILE.csv   register a CSV of id,name rows through the API
sluice invoke <LogicalId> -e F   one function, one event, like ``sam local invoke``
sluice demo                      a batch through the API and a drop through S3, end to end
sluice redrive [--dry-run]       parked batches: IngestDeadLetterQueue back to IngestQueue
"""

import argparse
import faulthandler
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import psycopg

from sluice_tools.settings import get_database_settings

ALL_SCOPES = (
    "ingest:write jobs:read quarantine:read quarantine:review systems:read systems:write readings:read alerts:read"
    " alerts:write ops:read"
)
DEFAULT_API = "http://127.0.0.1:3000"
DEFAULT_MOTO = "http://127.0.0.1:4566"
DEFAULT_REGION = "eu-central-1"


def _root(args: argparse.Namespace) -> Path:
    root: Path = args.root.resolve()
    if not (root / "template.yaml").exists():
        raise SystemExit(f"sluice: no template.yaml in {root} (run from the checkout, or pass --root)")
    return root


def _dsn() -> str:
    return get_database_settings().db_dsn


# How long `sluice serve` may take to stop before it prints its threads' stacks and exits.
STOP_BUDGET_S = 30


def serve(args: argparse.Namespace) -> int:
    """Run the local stack until SIGINT or SIGTERM."""
    from sluice_tools.local.stack import LocalStack, LocalStackOptions  # noqa: PLC0415 - keeps `sluice token` quick

    options = LocalStackOptions(
        root=_root(args),
        database_dsn=_dsn(),
        moto_endpoint=args.endpoint_url,
        stack_name=args.stack_name,
        region=args.region,
        host=args.host,
        port=args.port,
        visibility_timeout_s=args.visibility_timeout,
        env_overrides=_env_vars(args.env_vars),
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    # `kill -USR1 <pid>` prints every thread's stack to stderr: what a stop that hangs is waiting on.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    started = time.monotonic()
    stack = LocalStack(options, sys.stdout)
    try:
        stack.start()
        print(stack.banner(), flush=True)
        print(f"(started in {time.monotonic() - started:.1f} s)", flush=True)
        stop.wait()
    finally:
        print("\nstopping: HTTP API, pollers, schedules, function environments ...", flush=True)
        # Ctrl-C always ends the stack: should stopping hang, every thread's stack is printed (what it waited on)
        # and the process exits.
        faulthandler.dump_traceback_later(STOP_BUDGET_S, exit=True)
        stack.stop()
        faulthandler.cancel_dump_traceback_later()
        print("stopped", flush=True)
    return 0


def _mint(args: argparse.Namespace) -> str:
    """A token for the local authorizer from the command's --tenant, --sub, --scope and --ttl."""
    from sluice_tools.local.stack import local_token, planned_context  # noqa: PLC0415 - keeps `sluice --help` quick

    root = _root(args)
    minted, _ = local_token(
        planned_context(root, moto_endpoint=DEFAULT_MOTO),
        root / ".local",
        tenant=args.tenant,
        subject=args.sub,
        scope=args.scope,
        lifetime_s=args.ttl,
        authorizer=getattr(args, "authorizer", None),
    )
    return minted


def token(args: argparse.Namespace) -> int:
    """Print a token for the local authorizer."""
    print(_mint(args))
    return 0


def console(args: argparse.Namespace) -> int:
    """Print the operator console's URL, signed in with a fresh local token (and open it with --open)."""
    url = console_url(args.api, _mint(args))
    print(url)
    if args.open:
        import webbrowser  # noqa: PLC0415 - only when asked to open one

        if not webbrowser.open(url):
            print("sluice: no browser to open here; paste the URL into one", file=sys.stderr)
    return 0


def console_url(api: str, token: str) -> str:
    """The console's address with the token in its fragment: a browser never sends a fragment to a server, and the
    console moves it into the tab's session storage and off the address bar at once."""
    return f"{api.rstrip('/')}/console/#token={token}"


def systems(args: argparse.Namespace) -> int:
    """Register or list a tenant's systems in the database ``SLUICE_DB_DSN`` names, or import a CSV through the API."""
    from sluice_tools.systems import SystemRegistrationError, add_system, list_systems  # noqa: PLC0415

    if args.action == "import":
        return import_systems(args)
    with psycopg.connect(_dsn(), autocommit=True) as conn:
        if args.action == "add":
            try:
                system, new = add_system(conn, args.tenant, args.name, args.id)
            except SystemRegistrationError as exc:
                print(f"sluice systems add: {exc}", file=sys.stderr)
                return 1
            if not new:
                print(f"sluice: {args.name!r} was registered for {args.tenant!r} already", file=sys.stderr)
            print(system.id)
            return 0
        for system in list_systems(conn, args.tenant):
            print(f"{system.id}  {system.created_at:%Y-%m-%dT%H:%M:%SZ}  {system.name}")
    return 0


def import_systems(args: argparse.Namespace) -> int:
    """Register each ``id,name`` row of a CSV through ``POST /api/v1/systems``; exit status 1 when any row failed."""
    from sluice_tools.systems import FAILED, ImportAbortedError, api_sender, summary  # noqa: PLC0415
    from sluice_tools.systems import import_systems as import_file  # noqa: PLC0415

    bearer = args.token or os.environ.get("SLUICE_TOKEN")
    if not bearer:  # the local stack's: minted like `sluice token`, with the systems scopes only
        from sluice_tools.local.stack import local_token, planned_context  # noqa: PLC0415

        root = _root(args)
        bearer, _ = local_token(
            planned_context(root, moto_endpoint=DEFAULT_MOTO),
            root / ".local",
            tenant=args.tenant,
            subject=args.sub,
            scope="systems:read systems:write",
        )
    try:
        outcomes = import_file(args.file, api_sender(args.api, bearer), lambda line: print(line, flush=True))
    except (OSError, ValueError) as exc:
        print(f"sluice systems import: {args.file}: {exc}", file=sys.stderr)
        return 1
    except ImportAbortedError as exc:
        print(f"sluice systems import: stopped: {exc}", file=sys.stderr)
        return 1
    print(summary(outcomes))
    return 1 if any(outcome.outcome in FAILED for outcome in outcomes) else 0


def invoke(args: argparse.Namespace) -> int:
    """Run one function with one event in a fresh environment and print its result, like ``sam local invoke``."""
    from sluice_tools.local.lambdas import LocalFunction  # noqa: PLC0415
    from sluice_tools.local.stack import local_function_specs, planned_context  # noqa: PLC0415

    root = _root(args)
    context = planned_context(root, args.stack_name, args.region, moto_endpoint=args.endpoint_url)
    specs = local_function_specs(context, root, args.endpoint_url, _env_vars(args.env_vars))
    if args.logical_id not in specs:
        raise SystemExit(
            f"sluice: {args.logical_id} is not a function of the local stack, which deploys template.yaml with its"
            f" parameters' defaults ({', '.join(sorted(specs))})"
        )
    event = json.load(sys.stdin) if args.event == "-" else json.loads(Path(args.event).read_text(encoding="utf-8"))
    function = LocalFunction(specs[args.logical_id], max_concurrency=1, log=sys.stderr.fileno())
    try:
        invocation = function.invoke(event)
    finally:
        function.close()
    print(f"{args.logical_id}: {invocation.duration_ms:.0f} ms, request {invocation.request_id}", file=sys.stderr)
    print(json.dumps(invocation.error if invocation.failed else invocation.result, indent=2))
    return 1 if invocation.failed else 0


def demo(args: argparse.Namespace) -> int:
    """Send the demo batch and drop through the running stack and report both jobs."""
    import boto3  # noqa: PLC0415

    from sluice_tools.local.demo import (  # noqa: PLC0415
        DEMO_SYSTEM_ID,
        DEMO_SYSTEM_NAME,
        ApiClient,
        demo_batch,
        demo_drop,
        drop_jobs,
        print_job,
    )
    from sluice_tools.local.stack import LOCAL_CREDENTIALS, local_token, planned_context  # noqa: PLC0415
    from sluice_tools.systems import add_system  # noqa: PLC0415

    root = _root(args)
    context = planned_context(root, args.stack_name, args.region, moto_endpoint=args.endpoint_url)
    with psycopg.connect(_dsn(), autocommit=True) as conn:
        system, _ = add_system(conn, args.tenant, DEMO_SYSTEM_NAME, DEMO_SYSTEM_ID)
    minted, _ = local_token(context, root / ".local", tenant=args.tenant, subject="sluice-demo", scope=ALL_SCOPES)
    api = ApiClient(args.api.rstrip("/"), minted)
    now = datetime.now(UTC)

    batch, batch_reasons = demo_batch(system.id, now)
    status, answer = api.call("POST", "/api/v1/data/ingest", batch)
    if status != 202:
        print(f"sluice demo: the API answered {status}: {json.dumps(answer)}", file=sys.stderr)
        return 1
    print(
        f"POST /api/v1/data/ingest: 202, job {answer['job_id']} ({len(batch['readings'])} readings, "
        f"{sum(batch_reasons.values())} of them bad)"
    )

    body, drop_reasons = demo_drop(system.id, now)
    bucket = context.ref("BatchBucket")
    key = f"drops/{args.tenant}/demo-{now:%Y%m%dT%H%M%S}.csv.gz"
    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    put = s3.put_object(Bucket=bucket, Key=key, Body=body)
    drop_ids = drop_jobs(bucket, key, put.get("VersionId"), put.get("ETag"))
    print(f"s3://{bucket}/{key}: uploaded (2,001 rows, {sum(drop_reasons.values())} of them bad)")

    print(f"waiting for both jobs (at most {args.timeout:.0f} s) ...")
    jobs = (("API batch", [answer["job_id"]], batch_reasons), ("CSV.gz drop", drop_ids, drop_reasons))
    for title, job_ids, expected in jobs:
        job = api.wait_for_job(job_ids, args.timeout)
        reasons = api.quarantine_reasons(job["job_id"])
        print_job(title, job, reasons, sys.stdout)
        planted = ", ".join(f"{reason} {count}" for reason, count in sorted(expected.items()))
        print(f"  planted: {planted}")
        if reasons["duplicate"] > expected.get("duplicate", 0):
            print("  (the other duplicates were stored by an earlier demo: each reading is stored once)")
    return 0


def redrive(args: argparse.Namespace) -> int:
    """Move the parked batches of IngestDeadLetterQueue back to IngestQueue (--dry-run: only list them)."""
    from sluice.errors import SluiceError  # noqa: PLC0415
    from sluice_tools.local.stack import LOCAL_CREDENTIALS, planned_context  # noqa: PLC0415
    from sluice_tools.redrive import QueueRedrive, RedriveQueues, queue_region, redrive_client, show_parked  # noqa: PLC0415

    if (args.queue_url is None) != (args.dlq_url is None):
        raise SystemExit("sluice redrive: pass both --queue-url and --dlq-url, or neither (the local stack's then)")
    if args.max is not None and args.max < 1:
        raise SystemExit("sluice redrive: --max must be at least 1")
    if args.queue_url is None:  # the local stack's queues, named as `make run` names them
        endpoint = args.endpoint_url or DEFAULT_MOTO
        region = args.region or DEFAULT_REGION
        context = planned_context(_root(args), args.stack_name, region, moto_endpoint=endpoint)
        queues = RedriveQueues(context.ref("IngestDeadLetterQueue"), context.ref("IngestQueue"))
    else:  # AWS (boto3's credentials), unless --endpoint-url names a local one
        endpoint = args.endpoint_url
        region = args.region or queue_region(args.queue_url) or DEFAULT_REGION
        queues = RedriveQueues(args.dlq_url, args.queue_url)
    client = redrive_client(region, endpoint, LOCAL_CREDENTIALS if endpoint else None)
    mover = QueueRedrive(queues, client)
    failure: SluiceError | None = None
    try:
        found = mover.parked(args.max) if args.dry_run else mover.move(args.max)
    except SluiceError as exc:
        found, failure = mover.moved, exc
    for message in found:
        print(show_parked(message))
    if failure is not None:
        print(f"sluice redrive: moved {len(found)} message(s), then stopped: {failure}", file=sys.stderr)
        return 1
    if args.dry_run:
        print(f"dry run: {len(found)} message(s) in {queues.dead_letter_url}; nothing moved")
    else:
        print(f"moved {len(found)} message(s) from {queues.dead_letter_url} to {queues.queue_url}")
    return 0


def _env_vars(path: Path | None) -> dict[str, dict[str, str]]:
    if path is None:
        return {}
    loaded = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict) or not all(isinstance(value, dict) for value in loaded.values()):
        raise SystemExit(f"sluice: {path} must map Parameters and LogicalIds to objects of variables, as sam's does")
    return {key: {name: str(value) for name, value in values.items()} for key, values in loaded.items()}


def parser() -> argparse.ArgumentParser:
    """The command line."""
    main_parser = argparse.ArgumentParser(
        prog="sluice", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    main_parser.add_argument("--root", type=Path, default=Path(), help="the checkout (default: the current directory)")
    commands = main_parser.add_subparsers(dest="command", required=True)

    def stack_arguments(command: argparse.ArgumentParser) -> None:
        command.add_argument("--endpoint-url", default=DEFAULT_MOTO, help=f"the moto server (default {DEFAULT_MOTO})")
        command.add_argument("--stack-name", default="sluice-local")
        command.add_argument("--region", default="eu-central-1")

    serve_command = commands.add_parser("serve", help=serve.__doc__)
    stack_arguments(serve_command)
    serve_command.add_argument("--host", default="127.0.0.1")
    serve_command.add_argument("--port", type=int, default=3000)
    serve_command.add_argument("--visibility-timeout", type=int, help="seconds, for the event source's queues")
    serve_command.add_argument("--env-vars", type=Path, help="a sam-style env vars file")
    serve_command.set_defaults(run=serve)

    add_token_command(commands)
    add_console_command(commands)
    systems_command = commands.add_parser("systems", help=systems.__doc__)
    actions = systems_command.add_subparsers(dest="action", required=True)
    add_command = actions.add_parser("add", help="register a system; prints its id")
    add_command.add_argument("--tenant", required=True)
    add_command.add_argument("--name", required=True)
    add_command.add_argument(
        "--id", type=UUID, help="the UUID its devices send (an error when another system has it; default: a new one)"
    )
    list_command = actions.add_parser("list", help="the tenant's systems")
    list_command.add_argument("--tenant", required=True)
    import_command = actions.add_parser(
        "import",
        help="register the id,name rows of a CSV through the API, idempotently; prints each row's outcome",
        description=(
            "Registers each row of FILE (a header line id,name, then one system a line; an empty id lets Sluice"
            " choose) through POST /api/v1/systems, and prints each row's outcome with its line number: created,"
            " exists, name_taken, system_id_taken or invalid. Importing a file again creates nothing new. Exit status"
            " 1 when any row was not registered."
        ),
    )
    import_command.add_argument("file", type=Path, help="the CSV (UTF-8)")
    import_command.add_argument("--api", default=DEFAULT_API, help=f"the HTTP API (default {DEFAULT_API})")
    import_command.add_argument(
        "--token",
        help="a bearer token with systems:write (default: $SLUICE_TOKEN, else one minted for the local stack)",
    )
    import_command.add_argument("--tenant", default="demo", help="the local stack's token's tenant (default demo)")
    import_command.add_argument("--sub", default="sluice-import", help="the local stack's token's principal")
    systems_command.set_defaults(run=systems)

    invoke_command = commands.add_parser("invoke", help=invoke.__doc__)
    invoke_command.add_argument("logical_id", help="the function's logical id in template.yaml")
    invoke_command.add_argument("-e", "--event", required=True, help="the event file ('-' reads standard input)")
    invoke_command.add_argument("--env-vars", type=Path, help="a sam-style env vars file, e.g. events/env.json")
    stack_arguments(invoke_command)
    invoke_command.set_defaults(run=invoke)

    demo_command = commands.add_parser("demo", help=demo.__doc__)
    demo_command.add_argument("--api", default=DEFAULT_API, help=f"the HTTP API (default {DEFAULT_API})")
    demo_command.add_argument("--tenant", default="demo")
    demo_command.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each job")
    stack_arguments(demo_command)
    demo_command.set_defaults(run=demo)
    add_redrive_command(commands)
    return main_parser


def add_token_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """``sluice token``'s arguments."""
    token_command = commands.add_parser("token", help=token.__doc__)
    token_command.add_argument("--tenant", default="demo")
    token_command.add_argument("--sub", default="local-developer", help="the principal")
    token_command.add_argument("--scope", default=ALL_SCOPES, help=f'space separated (default "{ALL_SCOPES}")')
    token_command.add_argument("--ttl", type=int, default=3600, help="seconds the token is valid (default 3600)")
    token_command.add_argument("--authorizer", help="the template's authorizer (default: its only one)")
    token_command.set_defaults(run=token)


def add_console_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """``sluice console``'s arguments."""
    console_command = commands.add_parser("console", help=console.__doc__, description=console.__doc__)
    console_command.add_argument("--tenant", default="demo")
    console_command.add_argument("--sub", default="local-operator", help="the person signed in")
    console_command.add_argument("--scope", default=ALL_SCOPES, help="space separated (default: every scope)")
    console_command.add_argument("--ttl", type=int, default=8 * 3600, help="seconds the sign-in lasts (default 8 h)")
    console_command.add_argument("--api", default=DEFAULT_API, help=f"the HTTP API (default {DEFAULT_API})")
    console_command.add_argument("--open", action="store_true", help="open it in this machine's browser")
    console_command.set_defaults(run=console)


def add_redrive_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """``sluice redrive``'s arguments."""
    redrive_command = commands.add_parser("redrive", help=redrive.__doc__, description=redrive.__doc__)
    redrive_command.add_argument(
        "--endpoint-url", help=f"a local AWS (default {DEFAULT_MOTO}; with --queue-url and --dlq-url: AWS itself)"
    )
    redrive_command.add_argument("--stack-name", default="sluice-local", help="the local stack (default sluice-local)")
    redrive_command.add_argument("--region", help=f"default: the queue URL's, else {DEFAULT_REGION}")
    redrive_command.add_argument("--queue-url", help="IngestQueue's URL (the stack's IngestQueueUrl output)")
    redrive_command.add_argument("--dlq-url", help="IngestDeadLetterQueue's URL (IngestDeadLetterQueueUrl)")
    redrive_command.add_argument("--max", type=int, help="move (or list) at most this many messages")
    redrive_command.add_argument("--dry-run", action="store_true", help="list the parked messages, move none")
    redrive_command.set_defaults(run=redrive)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``.venv/bin/sluice``."""
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
