"""IngestApiFunction end to end against template.yaml's resources in moto: what it stores and what it answers."""

import base64
import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from urllib.parse import unquote_plus
from uuid import UUID

import pytest

from sluice.adapters.aws import dynamodb_client, s3_client, sqs_client
from sluice.settings import get_ingest_api_settings
from sluice_tools.local.template import StackContext, function_environment

from ..api_client import Answer
from ..lambdas import FakeLambdaContext, handler_module, load_event

SYSTEM_ID = "3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01"
KEY_PATTERN = re.compile(r"^incoming/demo/(\d{4})/(\d{2})/(\d{2})/([0-9a-f-]{36})\.json$")


def reading(second: int = 0, **changes: Any) -> dict[str, Any]:
    return {
        "sensor_id": "6b1d2c3e-4f50-4a61-8b72-93a4b5c6d7e8",
        "timestamp": f"2026-11-20T08:00:{second % 60:02d}Z",
        "value": 212.5,
        "unit": "bar",
        "quality": 97,
    } | changes


def batch(count: int = 3, **changes: Any) -> dict[str, Any]:
    return {"system_id": SYSTEM_ID, "readings": [reading(i) for i in range(count)]} | changes


@dataclass
class IngestApi:
    """The handler, and a look at what it left in S3, DynamoDB and SQS."""

    module: ModuleType
    stack: StackContext

    def post(
        self,
        body: dict[str, Any] | list[Any] | str | bytes,
        *,
        headers: dict[str, str] | None = None,
        claims: dict[str, str] | None = None,
        gzipped: bool = False,
    ) -> Answer:
        event = load_event("ingest-api-post.json")
        raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        if gzipped:
            raw = gzip.compress(raw)
            event["headers"]["content-encoding"] = "gzip"
        if gzipped or isinstance(body, bytes):
            event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
        else:
            event["body"] = raw.decode()
        if claims is not None:
            event["requestContext"]["authorizer"]["jwt"]["claims"] = claims
            event["requestContext"]["authorizer"]["jwt"]["scopes"] = None
        event["headers"] |= headers or {}
        event["headers"] = {name: value for name, value in event["headers"].items() if value is not None}
        result = self.module.lambda_handler(event, FakeLambdaContext())
        return Answer(result["statusCode"], result["headers"], json.loads(result["body"]))

    @property
    def bucket(self) -> str:
        return self.stack.refs["BatchBucket"]

    def objects(self) -> list[str]:
        listing = s3_client().list_objects_v2(Bucket=self.bucket)
        return [entry["Key"] for entry in listing.get("Contents", [])]

    def jobs(self) -> list[dict[str, Any]]:
        items = dynamodb_client().scan(TableName=self.stack.refs["JobsTable"])["Items"]
        return [{name: next(iter(value.values())) for name, value in item.items()} for item in items]

    def queued_keys(self) -> list[str]:
        """Keys named by the S3 event messages waiting on IngestQueue (S3's test event left out)."""
        keys: list[str] = []
        while True:
            answer = sqs_client().receive_message(QueueUrl=self.stack.refs["IngestQueue"], MaxNumberOfMessages=10)
            if not answer.get("Messages"):
                return keys
            for message in answer["Messages"]:
                body = json.loads(message["Body"])
                keys += [unquote_plus(record["s3"]["object"]["key"]) for record in body.get("Records", [])]
                sqs_client().delete_message(
                    QueueUrl=self.stack.refs["IngestQueue"], ReceiptHandle=message["ReceiptHandle"]
                )


@pytest.fixture
def api(aws_stack: StackContext, monkeypatch: pytest.MonkeyPatch) -> Iterator[IngestApi]:
    """IngestApiFunction with the environment template.yaml gives it, imported fresh (cold) for each test."""
    for name, value in function_environment(aws_stack, "IngestApiFunction").items():
        monkeypatch.setenv(name, value)
    get_ingest_api_settings.cache_clear()
    yield IngestApi(handler_module("IngestApiFunction"), aws_stack)
    get_ingest_api_settings.cache_clear()


def assert_nothing_stored(api: IngestApi) -> None:
    assert api.objects() == []
    assert api.jobs() == []


# --- accepted ----------------------------------------------------------------------------------------------------


def test_a_batch_becomes_one_job_record_and_one_object_that_s3_enqueues(api: IngestApi) -> None:
    before = datetime.now(UTC)
    sent = batch(3)

    answer = api.post(sent)

    assert answer.status == 202
    job_id = answer.body["job_id"]
    assert answer.body == {
        "job_id": job_id,
        "status": "queued",
        "status_url": f"https://api.example.com/api/v1/jobs/{job_id}",
    }
    assert answer.headers["Location"] == answer.body["status_url"]
    assert answer.headers["Idempotent-Replayed"] == "false"
    (job,) = api.jobs()
    created_at = datetime.fromisoformat(job["created_at"])
    assert before <= created_at <= datetime.now(UTC)
    assert job == {
        "job_id": job_id,
        "tenant_id": "demo",
        "status": "queued",
        "source": "api",
        "system_id": SYSTEM_ID,
        "created_by": "press-gateway-17",
        "total_readings": "3",
        "bucket": api.bucket,
        "object_key": f"incoming/demo/{created_at:%Y/%m/%d}/{job_id}.json",
        "created_at": job["created_at"],
        "expires_at": str(int((created_at + timedelta(days=90)).timestamp())),
    }
    assert api.objects() == [job["object_key"]]
    stored = s3_client().get_object(Bucket=api.bucket, Key=job["object_key"])
    assert json.loads(stored["Body"].read()) == sent
    assert stored["ContentType"] == "application/json"
    assert stored["Metadata"] == {"job-id": job_id, "tenant-id": "demo", "readings": "3"}
    assert api.queued_keys() == [job["object_key"]]


def test_the_sample_event_is_accepted(api: IngestApi) -> None:
    answer = api.module.lambda_handler(load_event("ingest-api-post.json"), FakeLambdaContext())

    assert answer["statusCode"] == 202
    assert len(api.objects()) == 1


def test_a_gzip_batch_is_stored_as_sent_and_marked_gzip(api: IngestApi) -> None:
    answer = api.module.lambda_handler(load_event("ingest-api-post-gzip.json"), FakeLambdaContext())

    assert answer["statusCode"] == 202
    (key,) = api.objects()
    stored = s3_client().get_object(Bucket=api.bucket, Key=key)
    assert stored["ContentEncoding"] == "gzip"
    body = stored["Body"].read()
    assert body == base64.b64decode(load_event("ingest-api-post-gzip.json")["body"])
    assert json.loads(gzip.decompress(body))["system_id"] == SYSTEM_ID


def test_bad_readings_are_left_to_the_worker_so_the_batch_is_still_accepted(api: IngestApi) -> None:
    readings = [reading(0), 17, "text", None, {}, reading(1, value="NaN"), reading(2, unit="psi", quality=-4)]

    answer = api.post('{"system_id": "' + SYSTEM_ID + '", "readings": ' + json.dumps(readings)[:-1] + ", NaN]}")

    assert answer.status == 202
    (job,) = api.jobs()
    assert job["total_readings"] == str(len(readings) + 1)


def test_a_number_too_long_for_python_is_the_readings_problem_not_the_batchs(api: IngestApi) -> None:
    body = json.dumps(batch(1)).replace("97", "9" * 5000)

    assert api.post(body).status == 202


def test_a_utf8_bom_and_a_charset_parameter_are_accepted(api: IngestApi) -> None:
    answer = api.post(
        b"\xef\xbb\xbf" + json.dumps(batch(1)).encode(),
        headers={"content-type": 'Application/JSON; charset="UTF-8"'},
    )

    assert answer.status == 202


def test_the_status_url_follows_the_host_and_scheme_of_the_request(api: IngestApi) -> None:
    event = load_event("ingest-api-post.json")
    event["requestContext"]["domainName"] = "127.0.0.1:3000"
    event["headers"]["x-forwarded-proto"] = "http"

    answer = api.module.lambda_handler(event, FakeLambdaContext())

    job_id = json.loads(answer["body"])["job_id"]
    assert json.loads(answer["body"])["status_url"] == f"http://127.0.0.1:3000/api/v1/jobs/{job_id}"


# --- refused before anything is stored ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "content_encoding"),
    [
        (None, None),
        ("text/plain", None),
        ("application/x-ndjson", None),
        ("application/json; charset=latin-1", None),
        ("application/json", "br"),
    ],
)
def test_a_body_that_is_not_json_or_not_readable_is_415(
    api: IngestApi, content_type: str | None, content_encoding: str | None
) -> None:
    answer = api.post(batch(), headers={"content-type": content_type, "content-encoding": content_encoding})  # type: ignore[dict-item]

    assert answer.status == 415
    assert answer.error["code"] == "unsupported_media_type"
    assert answer.error["details"][0]["field"] == ("Content-Encoding" if content_encoding else "Content-Type")
    assert_nothing_stored(api)


def test_a_body_over_the_limit_is_413(api: IngestApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_MAX_BODY_BYTES", "4096")

    answer = api.post(batch(40))

    assert answer.status == 413
    assert answer.error["code"] == "payload_too_large"
    assert "4096" in answer.error["details"][0]["reason"]
    assert_nothing_stored(api)


def test_a_small_gzip_body_that_inflates_past_the_limit_is_413(api: IngestApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_MAX_BODY_BYTES", "4096")
    body = json.dumps(batch(1)).replace('"bar"', '"bar' + " " * 100_000 + '"')

    answer = api.post(body, gzipped=True)

    assert answer.status == 413
    assert "decompressed" in answer.error["message"]
    assert_nothing_stored(api)


NOT_A_BATCH: list[tuple[str, Any, str | None, int | None, str]] = [
    ("not json", "{system_id", "body", None, "not JSON"),
    ("not utf-8", b'{"system_id": "\xff"}', "body", None, "not UTF-8"),
    ("nested too deep", "[" * 100_000 + "]" * 100_000, "body", None, "nests too deeply"),
    ("a list", [batch()], None, None, "valid dictionary"),
    ("no system_id", {"readings": [reading()]}, "system_id", None, "Field required"),
    ("system_id not a uuid", batch(system_id="press-17"), "system_id", None, "UUID"),
    ("no readings", {"system_id": SYSTEM_ID}, "readings", None, "Field required"),
    ("readings not a list", batch(readings={"0": reading()}), "readings", None, "valid list"),
    ("no reading", batch(0), "readings", None, "at least 1 item"),
    ("10,001 readings", batch(10_001), "readings", None, "at most 10000 items"),
    ("tenant set in the body", batch(tenant_id="other"), "tenant_id", None, "Extra inputs"),
    ("job set in the body", batch(job_id="0b7f6a8e-2c1d-4e5f-9a8b-7c6d5e4f3a2b"), "job_id", None, "Extra"),
    ("status set in the body", batch(status="completed"), "status", None, "Extra inputs"),
]


@pytest.mark.parametrize(
    ("body", "field", "index", "reason"),
    [case[1:] for case in NOT_A_BATCH],
    ids=[case[0] for case in NOT_A_BATCH],
)
def test_a_malformed_envelope_is_400_naming_the_field(
    api: IngestApi, body: Any, field: str | None, index: int | None, reason: str
) -> None:
    answer = api.post(body)

    assert answer.status == 400
    assert answer.error["code"] == "invalid_request"
    (detail,) = answer.error["details"]
    assert (detail["field"], detail["index"]) == (field, index)
    assert reason in detail["reason"]
    assert_nothing_stored(api)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (gzip.compress(json.dumps(batch()).encode())[:-12], "truncated"),
        (gzip.compress(json.dumps(batch()).encode()) + b"tail", "after the end"),
        (json.dumps(batch()).encode(), "not a gzip stream"),
    ],
    ids=["truncated", "trailing bytes", "not gzip"],
)
def test_a_gzip_body_that_does_not_decompress_is_400(api: IngestApi, body: bytes, reason: str) -> None:
    answer = api.post(body, headers={"content-encoding": "gzip"})

    assert answer.status == 400
    assert reason in answer.error["details"][0]["reason"]
    assert_nothing_stored(api)


def test_a_base64_body_that_is_not_base64_is_400(api: IngestApi) -> None:
    event = load_event("ingest-api-post-gzip.json")
    event["body"] = "%%%not base64%%%"

    answer = api.module.lambda_handler(event, FakeLambdaContext())

    assert answer["statusCode"] == 400
    assert_nothing_stored(api)


@pytest.mark.parametrize("key", ["", "with space", "x" * 256, "naïve"])
def test_an_unusable_idempotency_key_is_400(api: IngestApi, key: str) -> None:
    answer = api.post(batch(), headers={"idempotency-key": key})

    assert answer.status == 400
    assert answer.error["details"][0]["field"] == "Idempotency-Key"
    assert_nothing_stored(api)


# --- who may send --------------------------------------------------------------------------------------------


def test_a_request_without_verified_claims_is_401(api: IngestApi) -> None:
    event = load_event("ingest-api-post.json")
    del event["requestContext"]["authorizer"]

    answer = api.module.lambda_handler(event, FakeLambdaContext())

    assert answer["statusCode"] == 401
    assert answer["headers"]["WWW-Authenticate"] == "Bearer"
    assert json.loads(answer["body"])["error"]["code"] == "unauthorized"
    assert_nothing_stored(api)


@pytest.mark.parametrize(
    ("claims", "field"),
    [
        ({"sub": "press-gateway-17", "scope": "ingest:write"}, "tenant_id"),
        ({"sub": "press-gateway-17", "tenant_id": "../other", "scope": "ingest:write"}, "tenant_id"),
        ({"sub": "press-gateway-17", "tenant_id": "demo", "scope": "jobs:read quarantine:read"}, "scope"),
    ],
    ids=["no tenant", "tenant not a prefix-safe id", "no ingest:write scope"],
)
def test_a_token_without_tenant_or_scope_is_403(api: IngestApi, claims: dict[str, str], field: str) -> None:
    answer = api.post(batch(), claims=claims)

    assert answer.status == 403
    assert answer.error["code"] == "forbidden"
    assert answer.error["details"][0]["field"] == field
    assert_nothing_stored(api)


def test_the_tenant_claim_name_is_configurable_and_scp_lists_are_read(
    api: IngestApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_TENANT_CLAIM", "custom:org")

    answer = api.post(batch(), claims={"sub": "svc", "custom:org": "acme", "scp": "[jobs:read ingest:write]"})

    assert answer.status == 202
    assert api.jobs()[0]["tenant_id"] == "acme"
    assert api.objects()[0].startswith("incoming/acme/")


# --- rate limit ------------------------------------------------------------------------------------------------


def test_the_sixteenth_request_in_a_minute_is_429_and_other_principals_are_unaffected(api: IngestApi) -> None:
    answers = [api.post(batch(1)) for _ in range(16)]

    assert [answer.status for answer in answers] == [202] * 15 + [429]
    refused = answers[-1]
    assert refused.error["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert len(api.jobs()) == 15
    other = api.post(batch(1), claims={"sub": "press-gateway-18", "tenant_id": "demo", "scope": "ingest:write"})
    assert other.status == 202


# --- idempotency -----------------------------------------------------------------------------------------------


def test_a_retry_with_the_same_key_and_body_returns_the_original_job(api: IngestApi) -> None:
    first = api.post(batch(), headers={"idempotency-key": "press-17-000042"})

    retry = api.post(batch(), gzipped=True, headers={"idempotency-key": "press-17-000042"})

    assert (first.status, retry.status) == (202, 202)
    assert retry.body == first.body
    assert (first.headers["Idempotent-Replayed"], retry.headers["Idempotent-Replayed"]) == ("false", "true")
    assert len(api.jobs()) == 1
    assert len(api.objects()) == 1


def test_the_same_key_with_another_body_is_422(api: IngestApi) -> None:
    api.post(batch(2), headers={"idempotency-key": "press-17-000042"})

    answer = api.post(batch(3), headers={"idempotency-key": "press-17-000042"})

    assert answer.status == 422
    assert answer.error["code"] == "idempotency_key_reused"
    assert "different body" in answer.error["message"]
    assert len(api.jobs()) == 1


def test_keys_belong_to_their_principal(api: IngestApi) -> None:
    first = api.post(batch(), headers={"idempotency-key": "k-1"})

    other = api.post(
        batch(),
        headers={"idempotency-key": "k-1"},
        claims={"sub": "press-gateway-18", "tenant_id": "demo", "scope": "ingest:write"},
    )

    assert other.status == 202
    assert other.body["job_id"] != first.body["job_id"]


# --- storage faults ----------------------------------------------------------------------------------------


def test_a_failed_store_fails_the_job_answers_503_and_a_retry_with_the_key_starts_afresh(api: IngestApi) -> None:
    s3_client().delete_bucket(Bucket=api.bucket)

    answer = api.post(batch(), headers={"idempotency-key": "press-17-000043"})

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"
    assert answer.error["code"] == "storage_unavailable"
    (job,) = api.jobs()
    assert job["status"] == "failed"
    assert "send it again" in job["error_message"]

    s3_client().create_bucket(Bucket=api.bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    retry = api.post(batch(), headers={"idempotency-key": "press-17-000043"})

    assert retry.status == 202
    assert retry.body["job_id"] != job["job_id"]
    assert sorted(j["status"] for j in api.jobs()) == ["failed", "queued"]
    assert len(api.objects()) == 1


def test_an_unwritable_jobs_table_is_503_and_stores_nothing(api: IngestApi) -> None:
    dynamodb_client().delete_table(TableName=api.stack.refs["JobsTable"])

    answer = api.post(batch())

    assert answer.status == 503
    assert api.objects() == []


def test_an_unknown_route_is_404_in_the_error_shape(api: IngestApi) -> None:
    event = load_event("ingest-api-post.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/api/v1/data/ingestion"

    answer = api.module.lambda_handler(event, FakeLambdaContext())

    assert answer["statusCode"] == 404
    assert json.loads(answer["body"])["error"]["code"] == "not_found"


# --- S3 notifications: the path batches and drops share -----------------------------------------------------


def test_objects_under_incoming_and_drops_reach_the_queue_and_others_do_not(api: IngestApi) -> None:
    for key in ("incoming/demo/2026/11/20/x.json", "drops/demo/export 2026-11-19.csv.gz", "exports/demo/x.csv"):
        s3_client().put_object(Bucket=api.bucket, Key=key, Body=b"{}")

    assert sorted(api.queued_keys()) == ["drops/demo/export 2026-11-19.csv.gz", "incoming/demo/2026/11/20/x.json"]


def test_job_ids_are_uuids_and_keys_are_dated_by_acceptance(api: IngestApi) -> None:
    answer = api.post(batch())

    match = KEY_PATTERN.match(api.objects()[0])
    assert match is not None
    assert UUID(match.group(4)) == UUID(answer.body["job_id"])


def test_without_a_domain_name_the_status_url_is_a_path(api: IngestApi) -> None:
    event = load_event("ingest-api-post.json")
    del event["requestContext"]["domainName"]

    answer = json.loads(api.module.lambda_handler(event, FakeLambdaContext())["body"])

    assert answer["status_url"] == f"/api/v1/jobs/{answer['job_id']}"


def test_an_unreachable_idempotency_table_is_503_and_stores_nothing(api: IngestApi) -> None:
    dynamodb_client().delete_table(TableName=api.stack.refs["IdempotencyTable"])

    answer = api.post(batch(), headers={"idempotency-key": "press-17-000044"})

    assert answer.status == 503
    assert_nothing_stored(api)


def test_an_unexpected_error_still_answers_in_the_error_shape(api: IngestApi) -> None:
    # An event API Gateway would never send: the body is a number, not a string.
    event = load_event("ingest-api-post.json")
    event["body"] = 12

    answer = api.module.lambda_handler(event, FakeLambdaContext())

    assert answer["statusCode"] == 500
    assert json.loads(answer["body"])["error"]["code"] == "internal_error"
    assert_nothing_stored(api)


def test_a_twin_request_arriving_while_the_first_is_storing_is_409(api: IngestApi) -> None:
    # Given a second execution environment that receives the same request while the first is storing the object
    twin = IngestApi(handler_module("IngestApiFunction"), api.stack)
    answers: list[Answer] = []

    def twin_arrives(**_: Any) -> None:
        if not answers:
            answers.append(twin.post(batch(), headers={"idempotency-key": "press-17-000045"}))

    s3_client().meta.events.register("before-call.s3.PutObject", twin_arrives)
    try:
        first = api.post(batch(), headers={"idempotency-key": "press-17-000045"})
    finally:
        s3_client().meta.events.unregister("before-call.s3.PutObject", twin_arrives)

    # Then the first is accepted, and the twin is told to retry rather than given a job that may yet fail
    assert first.status == 202
    (twin_answer,) = answers
    assert twin_answer.status == 409
    assert twin_answer.error["code"] == "idempotency_in_progress"
    assert api.post(batch(), headers={"idempotency-key": "press-17-000045"}).body == first.body
