"""The sample events in events/ are what AWS sends: each parses as its kind, and each names a real layout."""

import re
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import (
    APIGatewayProxyEventV2,
    EventBridgeEvent,
    S3Event,
    SQSEvent,
)

from sluice.adapters.dynamodb import job_from_item
from sluice.domain.job_events import job_announcement
from sluice.models.api import UploadRequest

from ..lambdas import EVENTS_DIR, load_event

BATCH_KEY = re.compile(r"^incoming/[A-Za-z0-9][A-Za-z0-9_.-]*/\d{4}/\d{2}/\d{2}/[0-9a-f-]{36}\.json$")
DROP_KEY = re.compile(r"^drops/[A-Za-z0-9][A-Za-z0-9_.-]*/.+\.(json|ndjson|jsonl|csv)(\.gz)?$")


def s3_keys(name: str) -> list[str]:
    keys = []
    for message in SQSEvent(load_event(name)).records:
        for record in S3Event(message.json_body).records:
            keys.append(unquote_plus(record.s3.get_object.key))
    return keys


def test_api_events_carry_verified_claims_and_a_json_body() -> None:
    for name in ("ingest-api-post.json", "ingest-api-post-gzip.json", "ingest-api-upload.json"):
        event = APIGatewayProxyEventV2(load_event(name))

        assert event.request_context.authorizer.jwt_claim["tenant_id"] == "demo"
        assert "ingest:write" in event.request_context.authorizer.jwt_scopes
        assert event.headers["content-type"] == "application/json"


READ_SIDE_EVENTS = {
    "job-status-get.json": ("GET /api/v1/jobs/{job_id+}", {"jobs:read"}),
    "job-status-list.json": ("GET /api/v1/jobs", {"jobs:read"}),
    "quarantine-list.json": ("GET /api/v1/quarantine", {"quarantine:read"}),
    "quarantine-review.json": ("POST /api/v1/quarantine/{id}/review", {"quarantine:review"}),
    "quarantine-review-bulk.json": ("POST /api/v1/quarantine/review", {"quarantine:review"}),
    "systems-list.json": ("GET /api/v1/systems", {"systems:read"}),
    "systems-get.json": ("GET /api/v1/systems/{system_id}", {"systems:read"}),
    "systems-register.json": ("POST /api/v1/systems", {"systems:write"}),
    "systems-rename.json": ("PATCH /api/v1/systems/{system_id}", {"systems:write"}),
    "health-deep.json": ("GET /health/deep", {"ops:read"}),
    "readings-list.json": ("GET /api/v1/systems/{system_id}/readings", {"readings:read"}),
    "readings-sensors.json": ("GET /api/v1/systems/{system_id}/sensors", {"readings:read"}),
    "alerts-rule-create.json": ("POST /api/v1/alert-rules", {"alerts:write"}),
    "alerts-alarms-list.json": ("GET /api/v1/alarms", {"alerts:read"}),
    "alerts-acknowledge.json": ("POST /api/v1/alarms/{alarm_id}/acknowledge", {"alerts:write"}),
    "alerts-webhook-create.json": ("POST /api/v1/webhooks", {"alerts:write"}),
}


def test_the_upload_event_asks_for_a_gzip_csv_by_a_name_its_key_never_carries() -> None:
    event = APIGatewayProxyEventV2(load_event("ingest-api-upload.json"))

    assert event.raw_event["routeKey"] == "POST /api/v1/uploads"
    assert UploadRequest.model_validate_json(event.body or "", strict=True).filename.endswith(".csv.gz")
    assert event.headers["idempotency-key"]


def test_read_side_events_name_their_route_and_carry_its_scope() -> None:
    for name, (route_key, scopes) in READ_SIDE_EVENTS.items():
        event = APIGatewayProxyEventV2(load_event(name))

        assert event.raw_event["routeKey"] == route_key, name
        assert event.request_context.authorizer.jwt_claim["tenant_id"] == "demo", name
        assert scopes <= set(event.request_context.authorizer.jwt_scopes or ()), name
        assert (event.body is not None) == (event.http_method in {"POST", "PATCH"}), name


def test_the_health_probe_event_carries_no_token() -> None:
    event = load_event("health.json")

    assert "authorizer" not in event["requestContext"]
    assert "authorization" not in event["headers"]


def test_the_batch_event_names_an_object_in_the_api_layout() -> None:
    (key,) = s3_keys("load-worker-sqs-s3-incoming.json")

    assert BATCH_KEY.match(key)


def test_the_drop_event_names_an_object_in_the_drop_layout_encoded_as_s3_sends_it() -> None:
    (key,) = s3_keys("load-worker-sqs-s3-drop.json")

    assert DROP_KEY.match(key)
    assert " " in key


def test_the_schedule_event_is_a_scheduled_eventbridge_event() -> None:
    event = EventBridgeEvent(load_event("maintenance-schedule.json"))

    assert (event.source, event.detail_type) == ("aws.events", "Scheduled Event")


def test_the_alert_evaluator_event_is_a_scheduled_eventbridge_event_of_its_rule() -> None:
    event = EventBridgeEvent(load_event("alert-evaluator-schedule.json"))

    assert (event.source, event.detail_type) == ("aws.events", "Scheduled Event")
    assert "AlertEvaluatorFunctionSchedule" in event.resources[0]


def test_the_job_events_event_is_a_stream_record_of_a_job_finishing() -> None:
    [record] = load_event("job-events-stream.json")["Records"]
    change = record["dynamodb"]

    before, after = job_from_item(change["OldImage"]), job_from_item(change["NewImage"])
    announcement = job_announcement(before, after, datetime.now(UTC))

    assert (record["eventSource"], record["eventName"], change["StreamViewType"]) == (
        "aws:dynamodb", "MODIFY", "NEW_AND_OLD_IMAGES")  # fmt: skip
    assert announcement is not None
    assert announcement.event_key == f"job.completed:{after.job_id}"


def test_the_token_claims_events_are_cognitos_pre_token_generation_events() -> None:
    person, device = load_event("token-claims-person.json"), load_event("token-claims-device.json")

    # A V3_0 trigger's events: a person's sign-in through hosted sign-in, a device's client credentials grant.
    assert (person["version"], person["triggerSource"]) == ("3", "TokenGeneration_HostedAuth")
    assert (device["version"], device["triggerSource"]) == ("3", "TokenGeneration_ClientCredentials")
    assert person["request"]["userAttributes"]["custom:tenant_id"] == "demo"
    assert device["request"]["userAttributes"] == {}
    for event in (person, device):
        assert event["callerContext"]["clientId"]
        assert event["response"] == {"claimsAndScopeOverrideDetails": None}
        assert all(scope.startswith("sluice/") for scope in event["request"]["scopes"] if ":" in scope)


def test_every_event_file_is_covered_here() -> None:
    covered = {
        "ingest-api-post.json",
        "ingest-api-post-gzip.json",
        "ingest-api-upload.json",
        "load-worker-sqs-s3-incoming.json",
        "load-worker-sqs-s3-drop.json",
        "maintenance-schedule.json",
        "alert-evaluator-schedule.json",
        "job-events-stream.json",
        "health.json",
        "console-get.json",
        "token-claims-person.json",
        "token-claims-device.json",
        *READ_SIDE_EVENTS,
    }

    # env.json is not an event: it is sam local invoke's --env-vars file (tests/unit/test_local_stack.py checks it).
    assert {path.name for path in EVENTS_DIR.glob("*.json")} - {"env.json"} == covered
