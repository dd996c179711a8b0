"""HealthFunction: the probe answers without a token and touches nothing; the deep check reaches the database (and
its schema version), the bucket, the queues and the jobs table, and says which one failed."""

import json
from collections.abc import Iterator
from types import ModuleType

import psycopg
import pytest

from sluice import __version__
from sluice.adapters.aws import dynamodb_client, s3_client, secretsmanager_client
from sluice.adapters.migrations import SCHEMA_VERSION, VERSION_TABLE
from sluice.settings import get_health_settings
from sluice_tools.local.template import StackContext, function_environment

from ..api_client import call, claims
from ..lambdas import FakeLambdaContext, handler_module, load_event

# An operator's token: the scope ops:read, and no tenant (the deep check reads none).
OPERATOR = claims("ops:read", tenant=None, sub="ops-oncall")


@pytest.fixture
def health(
    aws_stack: StackContext, migrated_db: str, database_secret: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    """HealthFunction with the template's environment, imported cold; the database through the secret."""
    for name, value in function_environment(aws_stack, "HealthFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", database_secret)
    get_health_settings.cache_clear()
    module = handler_module("HealthFunction")
    yield module
    module.get_service().connector.close()
    get_health_settings.cache_clear()


def test_the_probe_answers_with_the_version_and_no_token(health: ModuleType) -> None:
    result = health.lambda_handler(load_event("health.json"), FakeLambdaContext())

    assert result["statusCode"] == 200
    assert result["body"] == f'{{"status":"ok","version":"{__version__}"}}'
    assert result["headers"]["Cache-Control"] == "no-store"
    assert health.get_service.cache_info().currsize == 0  # no client, no connection


def test_the_deep_check_reaches_everything(health: ModuleType) -> None:
    result = health.lambda_handler(load_event("health-deep.json"), FakeLambdaContext())
    answer = call(health, "GET", "/health/deep", verified=OPERATOR)

    assert result["statusCode"] == 200
    assert answer.body["status"] == "ok"
    assert set(answer.body["checks"]) == {"database", "bucket", "ingest_queue", "jobs_table"}
    assert all(check["ok"] for check in answer.body["checks"].values())
    assert answer.body["checks"]["database"]["detail"] == f"reachable, schema version {SCHEMA_VERSION}"
    assert answer.body["checks"]["ingest_queue"]["detail"].endswith("0 in the dead-letter queue")


def test_the_deep_check_needs_a_verified_caller(health: ModuleType) -> None:
    answer = call(health, "GET", "/health/deep", verified=None)

    assert (answer.status, answer.error["code"]) == (401, "unauthorized")


@pytest.mark.parametrize(
    "verified",
    [claims("", tenant=None), claims("ingest:write jobs:read quarantine:read quarantine:review")],
    ids=["no tenant, no scope", "every tenant scope"],
)
def test_the_deep_check_needs_the_ops_read_scope_and_reaches_nothing_without_it(
    health: ModuleType, verified: dict[str, str]
) -> None:
    answer = call(health, "GET", "/health/deep", verified=verified)

    assert (answer.status, answer.error["code"]) == (403, "forbidden")
    assert answer.error["details"] == [
        {"field": "scope", "index": None, "reason": "ops:read is not among the token's scopes"}
    ]
    assert "checks" not in answer.body
    assert health.get_service.cache_info().currsize == 0  # no client, no connection, no rate-limit write


def test_a_flood_of_deep_checks_from_one_operator_is_refused_with_retry_after(
    health: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_READ_RATE_LIMIT_REQUESTS", "3")
    get_health_settings.cache_clear()
    limited = handler_module("HealthFunction")
    try:
        answers = [call(limited, "GET", "/health/deep", verified=OPERATOR) for _ in range(4)]
        other = call(limited, "GET", "/health/deep", verified=claims("ops:read", tenant=None, sub="ops-second"))
    finally:
        limited.get_service().connector.close()

    assert [answer.status for answer in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert refused.error["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert other.status == 200


def test_the_deep_check_runs_when_its_rate_limit_cannot_be_read(health: ModuleType, aws_stack: StackContext) -> None:
    # An operator reads the deep check while DynamoDB fails: it must answer, not 503 for want of its rate limit.
    dynamodb_client().delete_table(TableName=str(aws_stack.ref("RateLimitTable")))

    answer = call(health, "GET", "/health/deep", verified=OPERATOR)

    assert (answer.status, answer.body["status"]) == (200, "ok")


def test_a_schema_behind_the_code_degrades_the_check(health: ModuleType, migrated_db: str) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {VERSION_TABLE} WHERE version = %s", (SCHEMA_VERSION,))  # noqa: S608 - a constant

    answer = call(health, "GET", "/health/deep", verified=OPERATOR)

    assert (answer.status, answer.body["status"]) == (503, "degraded")
    database = answer.body["checks"]["database"]
    assert not database["ok"]
    assert f"this code needs {SCHEMA_VERSION}: run the migrations" in database["detail"]
    assert answer.body["checks"]["bucket"]["ok"]


def test_a_missing_bucket_and_table_are_named(health: ModuleType, aws_stack: StackContext) -> None:
    s3_client().delete_bucket_policy(Bucket=str(aws_stack.ref("BatchBucket")))
    s3_client().delete_bucket(Bucket=str(aws_stack.ref("BatchBucket")))
    dynamodb_client().delete_table(TableName=str(aws_stack.ref("JobsTable")))

    answer = call(health, "GET", "/health/deep", verified=OPERATOR)

    assert answer.status == 503
    assert {name for name, check in answer.body["checks"].items() if not check["ok"]} == {"bucket", "jobs_table"}
    assert answer.body["checks"]["jobs_table"]["detail"].startswith("ResourceNotFoundException")


def test_an_unreachable_database_degrades_the_check(health: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = {"host": "127.0.0.1", "port": 1, "username": "postgres", "password": "", "dbname": "sluice"}
    arn = secretsmanager_client().create_secret(Name="sluice-nowhere", SecretString=json.dumps(secret))["ARN"]
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", arn)
    get_health_settings.cache_clear()
    cold = handler_module("HealthFunction")

    answer = call(cold, "GET", "/health/deep", verified=OPERATOR)

    assert (answer.status, answer.body["checks"]["database"]["ok"]) == (503, False)
    assert answer.body["checks"]["database"]["detail"].startswith("OperationalError")
    assert answer.body["checks"]["jobs_table"]["ok"]
