"""Shared fixtures: the real local TimescaleDB, reached through the DSN setting, and template.yaml's AWS resources
in an in-process moto.

A test that needs the database fails with a clear message when it cannot be reached; nothing here skips.
"""

import json
from collections.abc import Iterator

import psycopg
import pytest
from moto import mock_aws
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sluice.adapters.aws import dynamodb_client, forget_clients, s3_client, secretsmanager_client, sqs_client
from sluice.adapters.migrations import Migration, MigrationRunner, load_migrations
from sluice_tools.local.resources import provision_stack
from sluice_tools.local.template import StackContext
from sluice_tools.settings import get_database_settings

from .lambdas import template
from .paths import MIGRATIONS_DIR
from .scratch import scratch_database
from .webhook_receiver import WebhookReceiver

AWS_REGION = "eu-central-1"


@pytest.fixture(scope="session")
def server_dsn() -> str:
    """The DSN of the test server's maintenance database; fails the test when the server is unreachable."""
    dsn = get_database_settings().db_dsn
    admin = make_conninfo(dsn, dbname="postgres")
    try:
        with psycopg.connect(admin, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"cannot reach PostgreSQL at {_redacted(dsn)} (SLUICE_DB_DSN): {exc}\n"
            "Start it with 'make db' (or run the tests through 'make test', which does).",
            pytrace=False,
        )
    return admin


@pytest.fixture(scope="session")
def migrations() -> list[Migration]:
    """The project's migrations, read from infra/migrations."""
    return load_migrations(MIGRATIONS_DIR)


@pytest.fixture
def scratch_db(server_dsn: str) -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards; yields its DSN."""
    with scratch_database(server_dsn) as dsn:
        yield dsn


@pytest.fixture
def migrated_db(scratch_db: str, migrations: list[Migration]) -> str:
    """A scratch database with every migration applied; yields its DSN."""
    MigrationRunner(scratch_db, migrations).up()
    return scratch_db


@pytest.fixture
def conn(migrated_db: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit connection to a migrated scratch database."""
    with psycopg.connect(migrated_db, autocommit=True) as connection:
        yield connection


def _redacted(dsn: str) -> str:
    parts = conninfo_to_dict(dsn)
    if "password" in parts:
        parts["password"] = "***"
    return make_conninfo(**{k: str(v) for k, v in parts.items() if v is not None})


@pytest.fixture
def aws_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[StackContext]:
    """template.yaml's bucket, queues and tables, created in an in-process moto (no network)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        forget_clients()
        context = StackContext(template(), stack_name="sluice-test", region=AWS_REGION)
        yield provision_stack(context, s3_client(), sqs_client(), dynamodb_client())
    forget_clients()


@pytest.fixture
def database_secret(aws_stack: StackContext, migrated_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A Secrets Manager secret (in moto, RDS's layout) naming the scratch database, set as SLUICE_DB_SECRET_ARN:
    the functions read their DSN from it, as in AWS."""
    params = conninfo_to_dict(migrated_db)
    secret = {"host": params.get("host", "127.0.0.1"), "port": params.get("port", 5432)}
    secret |= {"username": params.get("user", "postgres"), "password": "", "dbname": params["dbname"]}
    secret |= {"sslmode": "disable"}
    arn = secretsmanager_client().create_secret(Name="sluice-database", SecretString=json.dumps(secret))["ARN"]
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", arn)
    return arn


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A real webhook receiver on a free loopback port that verifies every delivery's signature (see
    tests/webhook_receiver.py); stopped afterwards."""
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()
