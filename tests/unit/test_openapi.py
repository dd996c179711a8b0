"""docs/openapi.yaml is a valid OpenAPI 3.1 document that cannot drift from template.yaml's routes, scopes and
functions, the API models, or the errors the HTTP edge answers with."""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any
from uuid import uuid4

import pytest
import yaml
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from pydantic import BaseModel, ValidationError

from sluice import settings
from sluice.adapters.aws import forget_clients
from sluice.adapters.http import MAX_REQUEST_BYTES, STATUS_BY_ERROR, STORAGE_RETRY_AFTER_S
from sluice.errors import (
    AlarmNotActiveError,
    DuplicateReadingError,
    ForbiddenError,
    IdempotencyInProgressError,
    IdempotencyKeyReusedError,
    InvalidRequestError,
    LimitReachedError,
    NameTakenError,
    NotFoundError,
    NotPendingError,
    PayloadTooLargeError,
    RateLimitedError,
    ReadingInvalidError,
    RequestError,
    SystemIdTakenError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from sluice.limits import MAX_READINGS_PER_BATCH, MIN_READINGS_PER_BATCH
from sluice.models.alerts import (
    AcknowledgeRequest,
    AlarmDetail,
    AlarmHistoryEntry,
    AlarmPage,
    AlarmQuery,
    AlarmView,
    AlertRuleCreate,
    AlertRulePage,
    AlertRuleQuery,
    AlertRuleUpdate,
    AlertRuleView,
    AttemptView,
    DeliveryPage,
    DeliveryQuery,
    DeliveryView,
    WebhookCreate,
    WebhookCreated,
    WebhookPage,
    WebhookQuery,
    WebhookView,
)
from sluice.models.api import (
    BULK_REVIEW_MAX,
    JOB_PAGE_DEFAULT,
    JOB_PAGE_MAX,
    QUARANTINE_PAGE_DEFAULT,
    QUARANTINE_PAGE_MAX,
    REVIEW_NOTES_MAX,
    SYSTEM_PAGE_DEFAULT,
    SYSTEM_PAGE_MAX,
    BulkReviewRequest,
    BulkReviewResult,
    DeepHealth,
    ErrorDetail,
    ErrorInfo,
    ErrorResponse,
    Health,
    HealthCheck,
    IngestRequest,
    JobAccepted,
    JobPage,
    JobQuery,
    JobView,
    QuarantineItem,
    QuarantinePage,
    QuarantineQuery,
    QuarantineSelection,
    ReadingIn,
    ReviewOutcome,
    ReviewRequest,
    SystemCreate,
    SystemPage,
    SystemQuery,
    SystemUpdate,
    SystemView,
    UploadCreated,
    UploadForm,
    UploadRequest,
)
from sluice.models.jobs import JobSource, JobStatus
from sluice.models.quarantine import ReviewAction, ReviewStatus
from sluice.models.readings import QuarantineReason, Unit
from sluice.models.readings_api import (
    READINGS_PAGE_DEFAULT,
    READINGS_PAGE_MAX,
    RawPoint,
    ReadingsPage,
    ReadingsQuery,
    Resolution,
    RollupPoint,
    SensorList,
    SensorView,
)
from sluice.models.types import SILENT_AFTER_DEFAULT_SECONDS, SILENT_AFTER_MAX_SECONDS, SILENT_AFTER_MIN_SECONDS
from sluice_tools.cli import ALL_SCOPES
from sluice_tools.local.template import StackContext, resources_of_type

from ..api_client import call, claims
from ..lambdas import FakeLambdaContext, handler_module, load_event, template
from ..paths import REPO_ROOT

SPEC_PATH = REPO_ROOT / "docs" / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

type Operation = tuple[str, str]  # (path as the spec writes it, lower-case method)

INGEST: Operation = ("/api/v1/data/ingest", "post")
UPLOAD: Operation = ("/api/v1/uploads", "post")
LIST_JOBS: Operation = ("/api/v1/jobs", "get")
GET_JOB: Operation = ("/api/v1/jobs/{job_id}", "get")
LIST_QUARANTINE: Operation = ("/api/v1/quarantine", "get")
GET_QUARANTINED: Operation = ("/api/v1/quarantine/{id}", "get")
REVIEW: Operation = ("/api/v1/quarantine/{id}/review", "post")
BULK_REVIEW: Operation = ("/api/v1/quarantine/review", "post")
LIST_SYSTEMS: Operation = ("/api/v1/systems", "get")
REGISTER_SYSTEM: Operation = ("/api/v1/systems", "post")
GET_SYSTEM: Operation = ("/api/v1/systems/{system_id}", "get")
RENAME_SYSTEM: Operation = ("/api/v1/systems/{system_id}", "patch")
LIST_READINGS: Operation = ("/api/v1/systems/{system_id}/readings", "get")
LIST_SENSORS: Operation = ("/api/v1/systems/{system_id}/sensors", "get")
LIST_RULES: Operation = ("/api/v1/alert-rules", "get")
CREATE_RULE: Operation = ("/api/v1/alert-rules", "post")
GET_RULE: Operation = ("/api/v1/alert-rules/{rule_id}", "get")
CHANGE_RULE: Operation = ("/api/v1/alert-rules/{rule_id}", "patch")
DELETE_RULE: Operation = ("/api/v1/alert-rules/{rule_id}", "delete")
LIST_ALARMS: Operation = ("/api/v1/alarms", "get")
GET_ALARM: Operation = ("/api/v1/alarms/{alarm_id}", "get")
ACKNOWLEDGE: Operation = ("/api/v1/alarms/{alarm_id}/acknowledge", "post")
LIST_WEBHOOKS: Operation = ("/api/v1/webhooks", "get")
CREATE_WEBHOOK: Operation = ("/api/v1/webhooks", "post")
GET_WEBHOOK: Operation = ("/api/v1/webhooks/{webhook_id}", "get")
DELETE_WEBHOOK: Operation = ("/api/v1/webhooks/{webhook_id}", "delete")
LIST_DELIVERIES: Operation = ("/api/v1/webhooks/{webhook_id}/deliveries", "get")
HEALTH: Operation = ("/health", "get")
DEEP_HEALTH: Operation = ("/health/deep", "get")
CONSOLE: Operation = ("/console", "get")
CONSOLE_FILES: Operation = ("/console/{proxy}", "get")
# The routes without a token: the probe and the console's files (which hold no data).
OPEN_OPERATIONS = (HEALTH, CONSOLE, CONSOLE_FILES)
OPERATIONS = [
    INGEST,
    UPLOAD,
    LIST_JOBS,
    GET_JOB,
    LIST_QUARANTINE,
    GET_QUARANTINED,
    REVIEW,
    BULK_REVIEW,
    LIST_SYSTEMS,
    REGISTER_SYSTEM,
    GET_SYSTEM,
    RENAME_SYSTEM,
    LIST_READINGS,
    LIST_SENSORS,
    LIST_RULES,
    CREATE_RULE,
    GET_RULE,
    CHANGE_RULE,
    DELETE_RULE,
    LIST_ALARMS,
    GET_ALARM,
    ACKNOWLEDGE,
    LIST_WEBHOOKS,
    CREATE_WEBHOOK,
    GET_WEBHOOK,
    DELETE_WEBHOOK,
    LIST_DELIVERIES,
    HEALTH,
    DEEP_HEALTH,
]
# The console's files: not JSON, so outside the operations above; checked against the spec in test_console.py.
FILE_OPERATIONS = [CONSOLE, CONSOLE_FILES]

# A batch and an upload are checked alike: a JSON body under an idempotency key, on the ingest budget.
SENDING: set[type[RequestError]] = {
    InvalidRequestError,
    UnauthorizedError,
    ForbiddenError,
    NotFoundError,
    IdempotencyInProgressError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    IdempotencyKeyReusedError,
    RateLimitedError,
}

# Reads by id, and deletions: the caller, its budget, the row.
BY_ID: set[type[RequestError]] = {UnauthorizedError, ForbiddenError, NotFoundError, RateLimitedError}
LISTING: set[type[RequestError]] = BY_ID | {InvalidRequestError}
# A JSON body: it may be too large, of another media type, or not valid.
WITH_BODY: set[type[RequestError]] = LISTING | {PayloadTooLargeError, UnsupportedMediaTypeError}

# The refusals each operation's code can raise. Their statuses come from STATUS_BY_ERROR; every function also
# answers 404 for a path it has no route for, and 500 for a crash.
REFUSALS: dict[Operation, set[type[RequestError]]] = {
    INGEST: SENDING,
    UPLOAD: SENDING,
    LIST_JOBS: {InvalidRequestError, UnauthorizedError, ForbiddenError, NotFoundError, RateLimitedError},
    GET_JOB: {UnauthorizedError, ForbiddenError, NotFoundError, RateLimitedError},
    LIST_QUARANTINE: {InvalidRequestError, UnauthorizedError, ForbiddenError, NotFoundError, RateLimitedError},
    GET_QUARANTINED: {UnauthorizedError, ForbiddenError, NotFoundError, RateLimitedError},
    REVIEW: {
        InvalidRequestError,
        UnauthorizedError,
        ForbiddenError,
        NotFoundError,
        NotPendingError,
        DuplicateReadingError,
        PayloadTooLargeError,
        UnsupportedMediaTypeError,
        ReadingInvalidError,
        RateLimitedError,
    },
    # A bulk review's per-row refusals are outcomes inside its 200, not statuses.
    BULK_REVIEW: {
        InvalidRequestError,
        UnauthorizedError,
        ForbiddenError,
        NotFoundError,
        PayloadTooLargeError,
        UnsupportedMediaTypeError,
        RateLimitedError,
    },
    LIST_SYSTEMS: {InvalidRequestError, UnauthorizedError, ForbiddenError, NotFoundError, RateLimitedError},
    REGISTER_SYSTEM: {
        InvalidRequestError,
        UnauthorizedError,
        ForbiddenError,
        NotFoundError,
        NameTakenError,
        SystemIdTakenError,
        PayloadTooLargeError,
        UnsupportedMediaTypeError,
        RateLimitedError,
    },
    GET_SYSTEM: {UnauthorizedError, ForbiddenError, NotFoundError, RateLimitedError},
    RENAME_SYSTEM: {
        InvalidRequestError,
        UnauthorizedError,
        ForbiddenError,
        NotFoundError,
        NameTakenError,
        PayloadTooLargeError,
        UnsupportedMediaTypeError,
        RateLimitedError,
    },
    LIST_READINGS: {InvalidRequestError, UnauthorizedError, ForbiddenError, NotFoundError, RateLimitedError},
    LIST_SENSORS: {UnauthorizedError, ForbiddenError, NotFoundError, RateLimitedError},
    LIST_RULES: LISTING,
    CREATE_RULE: WITH_BODY | {NameTakenError, LimitReachedError},
    GET_RULE: BY_ID,
    CHANGE_RULE: WITH_BODY | {NameTakenError},
    DELETE_RULE: BY_ID,
    LIST_ALARMS: LISTING,
    GET_ALARM: BY_ID,
    ACKNOWLEDGE: WITH_BODY | {AlarmNotActiveError},
    LIST_WEBHOOKS: LISTING,
    CREATE_WEBHOOK: WITH_BODY | {LimitReachedError},
    GET_WEBHOOK: BY_ID,
    DELETE_WEBHOOK: BY_ID,
    LIST_DELIVERIES: LISTING,
    HEALTH: {NotFoundError},
    DEEP_HEALTH: {UnauthorizedError, ForbiddenError, NotFoundError, RateLimitedError},
}
# The answers that are not errors: status -> the schema of the body (None: no body).
ANSWERS: dict[Operation, dict[int, str | None]] = {
    INGEST: {202: "JobAccepted"},
    UPLOAD: {201: "UploadCreated"},
    LIST_JOBS: {200: "JobPage"},
    GET_JOB: {200: "JobView"},
    LIST_QUARANTINE: {200: "QuarantinePage"},
    GET_QUARANTINED: {200: "QuarantineItem"},
    REVIEW: {200: "QuarantineItem"},
    BULK_REVIEW: {200: "BulkReviewResult"},
    LIST_SYSTEMS: {200: "SystemPage"},
    # 201 when the request registered the system, 200 when it was registered before (idempotent).
    REGISTER_SYSTEM: {200: "SystemView", 201: "SystemView"},
    GET_SYSTEM: {200: "SystemView"},
    RENAME_SYSTEM: {200: "SystemView"},
    LIST_READINGS: {200: "ReadingsPage"},
    LIST_SENSORS: {200: "SensorList"},
    LIST_RULES: {200: "AlertRulePage"},
    CREATE_RULE: {201: "AlertRuleView"},
    GET_RULE: {200: "AlertRuleView"},
    CHANGE_RULE: {200: "AlertRuleView"},
    DELETE_RULE: {204: None},
    LIST_ALARMS: {200: "AlarmPage"},
    GET_ALARM: {200: "AlarmDetail"},
    ACKNOWLEDGE: {200: "AlarmView"},
    LIST_WEBHOOKS: {200: "WebhookPage"},
    CREATE_WEBHOOK: {201: "WebhookCreated"},
    GET_WEBHOOK: {200: "WebhookView"},
    DELETE_WEBHOOK: {204: None},
    LIST_DELIVERIES: {200: "DeliveryPage"},
    HEALTH: {200: "Health"},
    # A failed check is a report (503 with the same body), not an error.
    DEEP_HEALTH: {200: "DeepHealth", 503: "DeepHealth"},
}
# /health reaches nothing, and the deep check reports what it cannot reach: neither answers storage_unavailable.
STORAGE_FREE = {HEALTH, DEEP_HEALTH}
# Spec schema -> the model it documents.
SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "IngestRequest": IngestRequest,
    "Reading": ReadingIn,
    "JobAccepted": JobAccepted,
    "UploadRequest": UploadRequest,
    "UploadForm": UploadForm,
    "UploadCreated": UploadCreated,
    "JobView": JobView,
    "JobPage": JobPage,
    "QuarantineItem": QuarantineItem,
    "QuarantinePage": QuarantinePage,
    "QuarantineSelection": QuarantineSelection,
    "ReviewRequest": ReviewRequest,
    "BulkReviewRequest": BulkReviewRequest,
    "ReviewOutcome": ReviewOutcome,
    "BulkReviewResult": BulkReviewResult,
    "SystemCreate": SystemCreate,
    "SystemUpdate": SystemUpdate,
    "SystemView": SystemView,
    "SystemPage": SystemPage,
    "RawPoint": RawPoint,
    "RollupPoint": RollupPoint,
    "ReadingsPage": ReadingsPage,
    "SensorView": SensorView,
    "SensorList": SensorList,
    "AlertRuleCreate": AlertRuleCreate,
    "AlertRuleUpdate": AlertRuleUpdate,
    "AlertRuleView": AlertRuleView,
    "AlertRulePage": AlertRulePage,
    "AlarmView": AlarmView,
    "AlarmHistoryEntry": AlarmHistoryEntry,
    "AlarmDetail": AlarmDetail,
    "AlarmPage": AlarmPage,
    "AcknowledgeRequest": AcknowledgeRequest,
    "WebhookCreate": WebhookCreate,
    "WebhookView": WebhookView,
    "WebhookCreated": WebhookCreated,
    "WebhookPage": WebhookPage,
    "AttemptView": AttemptView,
    "DeliveryView": DeliveryView,
    "DeliveryPage": DeliveryPage,
    "Health": Health,
    "HealthCheck": HealthCheck,
    "DeepHealth": DeepHealth,
    "ErrorResponse": ErrorResponse,
    "ErrorInfo": ErrorInfo,
    "ErrorDetail": ErrorDetail,
}
# Spec schema -> the enum it lists.
SCHEMA_ENUMS: dict[str, type[StrEnum]] = {
    "JobStatus": JobStatus,
    "JobSource": JobSource,
    "QuarantineReason": QuarantineReason,
    "ReviewStatus": ReviewStatus,
    "ReviewAction": ReviewAction,
    "Unit": Unit,
    "Resolution": Resolution,
}
# A listing's query parameters are its query model's fields.
QUERY_MODELS: dict[Operation, type[BaseModel]] = {
    LIST_JOBS: JobQuery,
    LIST_QUARANTINE: QuarantineQuery,
    LIST_SYSTEMS: SystemQuery,
    LIST_READINGS: ReadingsQuery,
    LIST_RULES: AlertRuleQuery,
    LIST_ALARMS: AlarmQuery,
    LIST_WEBHOOKS: WebhookQuery,
    LIST_DELIVERIES: DeliveryQuery,
}


@cache
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    return loaded


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref``s (``#/components/...``) until a node that is not one."""
    while "$ref" in node:
        found: Any = spec()
        for part in node["$ref"].removeprefix("#/").split("/"):
            found = found[part]
        node = found
    return node


def operation(op: Operation) -> dict[str, Any]:
    path, method = op
    found: dict[str, Any] = spec()["paths"][path][method]
    return found


def operation_id(op: Operation) -> str:
    return f"{op[1].upper()} {op[0]}"


def spec_operations() -> set[Operation]:
    return {(path, method) for path, item in spec()["paths"].items() for method in item if method in HTTP_METHODS}


@dataclass(frozen=True)
class Route:
    """One HttpApi event of a function in template.yaml."""

    function: str
    template_path: str
    method: str
    authorizer: str
    scopes: tuple[str, ...]

    @property
    def path(self) -> str:
        """The path as OpenAPI writes it: a greedy ``{name+}`` is ``{name}``."""
        return self.template_path.replace("+}", "}")

    @property
    def greedy(self) -> bool:
        return "+}" in self.template_path


def template_routes() -> dict[Operation, Route]:
    """(path, method) -> the route every HttpApi event of every function in template.yaml declares."""
    apis = resources_of_type(template(), "AWS::Serverless::HttpApi")
    # The scopes as deployed with the default parameters: bare (their Cognito forms are test_template.py's).
    defaults = StackContext(template(), stack_name="sluice", region="eu-central-1")
    routes: dict[Operation, Route] = {}
    for function_id, function in resources_of_type(template(), "AWS::Serverless::Function").items():
        for event in function["Properties"].get("Events", {}).values():
            if event["Type"] != "HttpApi":
                continue
            properties = event["Properties"]
            auth = properties.get("Auth", {})
            default = apis[properties["ApiId"]["Ref"]]["Properties"]["Auth"]["DefaultAuthorizer"]
            route = Route(
                function=function_id,
                template_path=properties["Path"],
                method=properties["Method"].lower(),
                authorizer=auth.get("Authorizer", default),
                scopes=tuple(sorted(defaults.resolve(auth.get("AuthorizationScopes", [])))),
            )
            assert (route.path, route.method) not in routes, f"{route.method} {route.path} is routed twice"
            routes[(route.path, route.method)] = route
    return routes


def expected_security(route: Route) -> list[dict[str, list[str]]]:
    """What the spec must require for a route: nothing without an authorizer, else the bearer JWT and its scopes."""
    if route.authorizer == "NONE":
        return []
    return [{"bearerAuth": [], "jwt": list(route.scopes)}]


def required_scopes(op: Operation) -> list[str]:
    """The scopes an operation requires under the ``jwt`` scheme."""
    requirements: list[dict[str, list[str]]] = operation(op)["security"]
    return sorted(scope for requirement in requirements for scope in requirement.get("jwt", []))


def response(op: Operation, status: int) -> dict[str, Any]:
    return resolve(operation(op)["responses"][str(status)])


def body_schema(node: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = node["content"]["application/json"]["schema"]
    return schema


def schema_name(node: dict[str, Any]) -> str:
    """The component a request body or response refers to for its JSON body."""
    return str(body_schema(node)["$ref"]).removeprefix("#/components/schemas/")


def json_examples(node: dict[str, Any]) -> list[Any]:
    media = node["content"]["application/json"]
    return [resolve(example)["value"] for example in media["examples"].values()]


def expected_answers(op: Operation) -> dict[int, set[str]]:
    """Status -> the error codes an operation answers it with (empty for an answer that is not an error)."""
    codes: dict[int, set[str]] = {status: set() for status in ANSWERS[op]}
    for kind in REFUSALS[op]:
        codes.setdefault(STATUS_BY_ERROR[kind], set()).add(kind.code)
    codes[500] = {"internal_error"}
    if op not in STORAGE_FREE:
        codes[503] = {"storage_unavailable"}
    return codes


def schema_validator(schema: dict[str, Any]) -> OAS31Validator:
    """A validator for a schema of the spec, with the spec's components to resolve refs in."""
    return OAS31Validator({**schema, "components": spec()["components"]})


def component_validator(name: str) -> OAS31Validator:
    return schema_validator({"$ref": f"#/components/schemas/{name}"})


def query_parameters(op: Operation) -> dict[str, dict[str, Any]]:
    parameters = [resolve(parameter) for parameter in operation(op).get("parameters", [])]
    return {parameter["name"]: parameter for parameter in parameters if parameter["in"] == "query"}


# --- the document ------------------------------------------------------------------------------------------------


def test_the_spec_is_valid_openapi_3_1() -> None:
    assert spec()["openapi"] == "3.1.0"

    validate(spec())


def test_the_spec_version_is_the_package_version() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")

    assert f'\nversion = "{spec()["info"]["version"]}"\n' in pyproject


def test_the_operations_under_test_are_the_documented_ones() -> None:
    assert set(OPERATIONS) | set(FILE_OPERATIONS) == spec_operations()


def test_every_operation_has_one_declared_tag_and_every_tag_is_used() -> None:
    declared = {tag["name"] for tag in spec()["tags"]}
    used = {tag for op in OPERATIONS + FILE_OPERATIONS for tag in operation(op)["tags"]}

    assert declared == {"ingest", "jobs", "quarantine", "systems", "alerts", "readings", "health", "console"}
    assert all(tag["description"] for tag in spec()["tags"])
    assert used == declared
    for op in OPERATIONS + FILE_OPERATIONS:
        assert len(operation(op)["tags"]) == 1, operation_id(op)


# --- the template's routes ---------------------------------------------------------------------------------------


def test_every_template_route_is_documented_with_its_security() -> None:
    routes = template_routes()

    assert routes
    for op, route in routes.items():
        assert op in spec_operations(), f"{operation_id(op)} ({route.template_path}) is not in docs/openapi.yaml"
        assert operation(op)["security"] == expected_security(route), operation_id(op)


def test_every_documented_operation_is_a_template_route() -> None:
    assert spec_operations() <= set(template_routes())


def test_no_operation_relies_on_a_default_security_requirement() -> None:
    assert "security" not in spec()
    for op in OPERATIONS:
        assert "security" in operation(op), operation_id(op)


def test_the_open_route_is_the_probe_and_the_deep_check_is_an_operators() -> None:
    routes = template_routes()

    assert operation(HEALTH)["security"] == [] == expected_security(routes[HEALTH])
    assert operation(DEEP_HEALTH)["security"] == [{"bearerAuth": [], "jwt": ["ops:read"]}]
    assert routes[DEEP_HEALTH].authorizer != "NONE"
    assert all(route.scopes for op, route in routes.items() if op not in OPEN_OPERATIONS)
    for op in (CONSOLE, CONSOLE_FILES):
        assert operation(op)["security"] == [] == expected_security(routes[op])


def test_a_greedy_route_is_documented_as_accepting_a_trailing_slash() -> None:
    greedy = [op for op, route in template_routes().items() if route.greedy]

    assert greedy == [GET_JOB, CONSOLE_FILES]
    for op in greedy:
        assert "trailing slash is accepted" in operation(op)["description"]


def test_every_scope_an_operation_requires_is_declared() -> None:
    declared = set(spec()["components"]["securitySchemes"]["jwt"]["flows"]["clientCredentials"]["scopes"])

    assert declared == set(ALL_SCOPES.split())
    assert {scope for op in OPERATIONS for scope in required_scopes(op)} == declared


def test_devices_and_people_get_the_same_scopes() -> None:
    flows = spec()["components"]["securitySchemes"]["jwt"]["flows"]

    assert set(flows) == {"clientCredentials", "authorizationCode"}
    assert flows["authorizationCode"]["scopes"] == flows["clientCredentials"]["scopes"]


def test_every_path_parameter_is_documented_with_an_example() -> None:
    for op in OPERATIONS:
        names = set(re.findall(r"\{(\w+)\}", op[0]))
        parameters = [resolve(parameter) for parameter in operation(op).get("parameters", [])]
        in_path = {parameter["name"]: parameter for parameter in parameters if parameter["in"] == "path"}

        assert set(in_path) == names, operation_id(op)
        for parameter in in_path.values():
            assert parameter["required"] is True
            schema_validator(parameter["schema"]).validate(parameter["example"])


# --- the handlers ------------------------------------------------------------------------------------------------

# Nothing listens on port 9: a handler that reached AWS or the database before checking the caller would answer
# 503, not the documented 401.
UNREACHABLE_ENV = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "SLUICE_DB_DSN": "postgresql://sluice@127.0.0.1:9/sluice",
    "AWS_DEFAULT_REGION": "eu-central-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "SLUICE_JOBS_TABLE": "jobs",
    "SLUICE_BATCH_BUCKET": "bucket",
    "SLUICE_INGEST_QUEUE_URL": "https://sqs.eu-central-1.amazonaws.com/123456789012/ingest",
    "SLUICE_DEAD_LETTER_QUEUE_URL": "https://sqs.eu-central-1.amazonaws.com/123456789012/ingest-dlq",
    "SLUICE_RATE_LIMIT_TABLE": "rate-limits",
    "SLUICE_IDEMPOTENCY_TABLE": "idempotency",
    "POWERTOOLS_METRICS_NAMESPACE": "Sluice",
    "POWERTOOLS_SERVICE_NAME": "sluice",
}
FUNCTION_SETTINGS = (
    settings.get_ingest_api_settings,
    settings.get_job_status_settings,
    settings.get_quarantine_settings,
    settings.get_systems_settings,
    settings.get_readings_settings,
    settings.get_health_settings,
    settings.get_alerts_settings,
)
UNKNOWN_PATH = "/api/v1/nothing-here"


@pytest.fixture
def handler_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The functions' settings from the environment, with every endpoint they could reach unreachable."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in UNREACHABLE_ENV.items():
        monkeypatch.setenv(name, value)
    forget_clients()
    for function_settings in FUNCTION_SETTINGS:
        function_settings.cache_clear()
    yield
    forget_clients()
    for function_settings in FUNCTION_SETTINGS:
        function_settings.cache_clear()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


def call_without_identity(function: str, method: str, path: str) -> Answer:
    """Invoke a function's handler with an API Gateway v2 event for ``method path`` that carries no JWT claims."""
    event = load_event("ingest-api-post.json")
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method.upper()} {path}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method.upper()
    event["requestContext"]["authorizer"]["jwt"]["claims"] = {}
    event["requestContext"]["authorizer"]["jwt"]["scopes"] = None
    event["body"] = "{}" if method == "post" else None
    result = handler_module(function).lambda_handler(event, FakeLambdaContext())
    return Answer(result["statusCode"], result["headers"], json.loads(result["body"]))


def sample_path(op: Operation) -> str:
    """The operation's path with each path parameter filled with its documented example."""
    parameters = {resolve(parameter)["name"]: resolve(parameter) for parameter in operation(op).get("parameters", [])}
    return re.sub(r"\{(\w+)\}", lambda match: str(parameters[match.group(1)]["example"]), op[0])


def handler_cases() -> list[Any]:
    """Each documented JSON operation with a path it answers: its sample path, and with a trailing slash if greedy.
    The console's answers are files, checked against the spec in tests/unit/test_console.py."""
    routes = template_routes()
    cases = [(op, sample_path(op)) for op in sorted(spec_operations()) if op not in FILE_OPERATIONS]
    cases += [(op, f"{path}/") for op, path in cases if op in routes and routes[op].greedy]
    return [pytest.param(op, path, id=f"{op[1].upper()} {path}") for op, path in cases]


@pytest.mark.usefixtures("handler_env")
@pytest.mark.parametrize(("op", "path"), handler_cases())
def test_the_handler_the_template_routes_to_answers_the_documented_operation(op: Operation, path: str) -> None:
    route = template_routes()[op]

    answer = call_without_identity(route.function, op[1], path)

    # An unrouted path would be 404 not_found: the documented answer proves the handler routes this operation.
    if operation(op)["security"] == []:
        assert answer.status == 200
    else:
        assert answer.status == 401
        assert answer.body["error"]["code"] == "unauthorized"
        assert answer.headers["WWW-Authenticate"] == "Bearer"
    documented = response(op, answer.status)
    schema_validator(body_schema(documented)).validate(answer.body)
    for header, described in documented.get("headers", {}).items():
        schema_validator(described["schema"]).validate(answer.headers[header])


UNUSABLE_SUBS = ["x" * 257, "mallory\x00admin"]


@pytest.mark.usefixtures("handler_env")
@pytest.mark.parametrize(
    ("op", "sub"),
    [
        pytest.param(op, sub, id=f"{operation_id(op)} {sub[:12]!r}")
        for op in sorted(spec_operations())
        if operation(op)["security"]
        for sub in UNUSABLE_SUBS
    ],
)
def test_a_sub_too_long_or_holding_a_nul_is_401_before_any_storage(op: Operation, sub: str) -> None:
    # The sub keys DynamoDB items and is stored as creator and reviewer; unchecked, these were a 500 (a job's
    # creator over 256 characters, a NUL in reviewed_by) or a 503 that no retry would ever cure (a key too long).
    body = {"action": "reject"} if op in {REVIEW, BULK_REVIEW} else {"system_id": str(uuid4()), "readings": [1]}
    verified = claims("ingest:write jobs:read quarantine:read quarantine:review", sub=sub)

    answer = call(
        handler_module(template_routes()[op].function),
        op[1].upper(),
        sample_path(op),
        verified=verified,
        body=body if op[1] == "post" else None,
    )

    assert (answer.status, answer.error["code"]) == (401, "unauthorized")
    assert answer.error["details"][0]["field"] == "sub"
    schema_validator(body_schema(response(op, 401))).validate(answer.body)


@pytest.mark.usefixtures("handler_env")
@pytest.mark.parametrize("function", sorted({route.function for route in template_routes().values()}))
def test_a_path_the_spec_does_not_have_is_not_found_in_every_function(function: str) -> None:
    assert UNKNOWN_PATH not in spec()["paths"]

    answer = call_without_identity(function, "get", UNKNOWN_PATH)

    assert answer.status == 404
    assert answer.body["error"]["code"] == "not_found"
    ErrorResponse.model_validate(answer.body)


# --- models and schemas ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "model"), SCHEMA_MODELS.items(), ids=SCHEMA_MODELS)
def test_a_schema_has_the_models_fields(name: str, model: type[BaseModel]) -> None:
    documented = resolve(spec()["components"]["schemas"][name])
    generated = model.model_json_schema()

    assert set(documented["properties"]) == set(generated["properties"])
    assert set(documented.get("required", [])) == set(generated.get("required", []))
    assert documented.get("additionalProperties") == generated.get("additionalProperties")


@pytest.mark.parametrize(("name", "enum"), SCHEMA_ENUMS.items(), ids=SCHEMA_ENUMS)
def test_an_enum_schema_lists_the_enums_values(name: str, enum: type[StrEnum]) -> None:
    documented = spec()["components"]["schemas"][name]

    assert documented["enum"] == [member.value for member in enum]


def test_every_request_and_answer_body_has_a_model() -> None:
    bodies = {schema_name(resolve(operation(op)["requestBody"])) for op in OPERATIONS if "requestBody" in operation(op)}
    answers = {
        schema_name(response(op, status))
        for op in OPERATIONS
        for status in expected_answers(op)
        if ANSWERS[op].get(status, "") is not None
    }

    assert bodies | answers <= set(SCHEMA_MODELS)


def test_the_batch_size_bounds_are_the_rules() -> None:
    readings = spec()["components"]["schemas"]["IngestRequest"]["properties"]["readings"]

    assert (readings["minItems"], readings["maxItems"]) == (MIN_READINGS_PER_BATCH, MAX_READINGS_PER_BATCH)
    assert readings["items"] == {}


@pytest.mark.parametrize("op", list(QUERY_MODELS), ids=operation_id)
def test_a_listings_query_parameters_are_its_query_models_fields(op: Operation) -> None:
    model = QUERY_MODELS[op]
    parameters = query_parameters(op)
    # A field whose name is a Python keyword ("from") is declared under another name with the parameter's as alias.
    fields = {field.alias or name: field for name, field in model.model_fields.items()}

    assert set(parameters) == set(fields)
    for name, parameter in parameters.items():
        assert parameter["required"] is False, name
        assert parameter["schema"].get("default") == fields[name].default, name
        schema_validator(parameter["schema"]).validate(parameter["example"])
        model.model_validate({name: str(parameter["example"])})


def test_the_page_sizes_are_the_models() -> None:
    jobs_limit = query_parameters(LIST_JOBS)["limit"]["schema"]
    quarantine_limit = query_parameters(LIST_QUARANTINE)["limit"]["schema"]
    bulk = spec()["components"]["schemas"]["BulkReviewRequest"]["properties"]

    assert (jobs_limit["minimum"], jobs_limit["default"], jobs_limit["maximum"]) == (1, JOB_PAGE_DEFAULT, JOB_PAGE_MAX)
    assert (quarantine_limit["minimum"], quarantine_limit["default"], quarantine_limit["maximum"]) == (
        1,
        QUARANTINE_PAGE_DEFAULT,
        QUARANTINE_PAGE_MAX,
    )
    assert (bulk["limit"]["minimum"], bulk["limit"]["default"], bulk["limit"]["maximum"]) == (
        1,
        BULK_REVIEW_MAX,
        BULK_REVIEW_MAX,
    )
    assert (bulk["ids"]["minItems"], bulk["ids"]["maxItems"]) == (1, BULK_REVIEW_MAX)
    readings_limit = query_parameters(LIST_READINGS)["limit"]["schema"]
    assert (readings_limit["minimum"], readings_limit["default"], readings_limit["maximum"]) == (
        1,
        READINGS_PAGE_DEFAULT,
        READINGS_PAGE_MAX,
    )
    systems_limit = query_parameters(LIST_SYSTEMS)["limit"]["schema"]
    assert (systems_limit["minimum"], systems_limit["default"], systems_limit["maximum"]) == (
        1,
        SYSTEM_PAGE_DEFAULT,
        SYSTEM_PAGE_MAX,
    )


def test_a_cursor_is_as_long_as_the_models_allow() -> None:
    cursor_limits = {
        model.model_json_schema()["properties"]["cursor"]["anyOf"][0]["maxLength"]
        for model in (JobQuery, QuarantineQuery, SystemQuery, ReadingsQuery, BulkReviewRequest)
    }
    documented = {
        query_parameters(LIST_JOBS)["cursor"]["schema"]["maxLength"],
        query_parameters(LIST_READINGS)["cursor"]["schema"]["maxLength"],
        query_parameters(LIST_QUARANTINE)["cursor"]["schema"]["maxLength"],
        spec()["components"]["schemas"]["BulkReviewRequest"]["properties"]["cursor"]["maxLength"],
    }

    assert documented == cursor_limits


@pytest.mark.parametrize("name", ["ReviewRequest", "BulkReviewRequest"])
def test_review_notes_are_as_long_as_the_models_allow(name: str) -> None:
    assert spec()["components"]["schemas"][name]["properties"]["notes"]["maxLength"] == REVIEW_NOTES_MAX


@pytest.mark.parametrize("op", [REVIEW, BULK_REVIEW], ids=operation_id)
def test_the_review_routes_state_the_request_size_limit(op: Operation) -> None:
    too_large = response(op, STATUS_BY_ERROR[PayloadTooLargeError])

    assert str(MAX_REQUEST_BYTES) in resolve(operation(op)["requestBody"])["description"]
    assert str(MAX_REQUEST_BYTES) in too_large["description"]
    for example in json_examples(too_large):
        assert str(MAX_REQUEST_BYTES) in example["error"]["message"]


REFUSED_REVIEWS: list[tuple[str, dict[str, Any]]] = [
    ("ReviewRequest", {"action": "fix"}),
    ("ReviewRequest", {"action": "fix", "value": None, "unit": None, "timestamp": None}),
    ("ReviewRequest", {"action": "approve", "value": 1.0}),
    ("ReviewRequest", {"action": "reject", "unit": "bar"}),
    ("ReviewRequest", {"action": "delete"}),
    ("ReviewRequest", {"action": "reject", "reviewer": "mallory"}),
    ("ReviewRequest", {"action": "reject", "notes": "x" * (REVIEW_NOTES_MAX + 1)}),
    ("ReviewRequest", {"action": "fix", "unit": "psi"}),
    ("BulkReviewRequest", {"action": "reject"}),
    ("BulkReviewRequest", {"action": "reject", "ids": [1], "filter": {}}),
    ("BulkReviewRequest", {"action": "reject", "ids": []}),
    ("BulkReviewRequest", {"action": "reject", "ids": [1, 1]}),
    ("BulkReviewRequest", {"action": "reject", "ids": list(range(1, BULK_REVIEW_MAX + 2))}),
    ("BulkReviewRequest", {"action": "reject", "ids": [1], "cursor": "abc"}),
    ("BulkReviewRequest", {"action": "reject", "filter": {"review_status": "pending"}}),
    ("BulkReviewRequest", {"action": "reject", "filter": {}, "limit": BULK_REVIEW_MAX + 1}),
    ("BulkReviewRequest", {"action": "fix", "filter": {}}),
    ("BulkReviewRequest", {"action": "approve", "ids": [1], "timestamp": "2026-11-20T08:00:00Z"}),
]


@pytest.mark.parametrize(("name", "body"), REFUSED_REVIEWS, ids=lambda value: str(value)[:60])
def test_a_review_body_the_model_refuses_the_schema_refuses(name: str, body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SCHEMA_MODELS[name].model_validate(body)
    assert not component_validator(name).is_valid(body)


SYSTEM_BODIES: list[tuple[str, dict[str, Any], bool]] = [
    ("SystemCreate", {"name": "pump-7", "silent_after_seconds": 60}, True),
    ("SystemCreate", {"name": "pump-7", "silent_after_seconds": 604_800}, True),
    ("SystemCreate", {"name": "pump-7", "silent_after_seconds": 59}, False),
    ("SystemCreate", {"name": "pump-7", "silent_after_seconds": None}, False),
    ("SystemUpdate", {"name": "pump-7"}, True),
    ("SystemUpdate", {"silent_after_seconds": 120}, True),
    ("SystemUpdate", {"name": None, "silent_after_seconds": 120}, True),
    ("SystemUpdate", {"name": "pump-7", "silent_after_seconds": None}, True),
    ("SystemUpdate", {}, False),
    ("SystemUpdate", {"name": None}, False),
    ("SystemUpdate", {"name": None, "silent_after_seconds": None}, False),
    ("SystemUpdate", {"silent_after_seconds": 604_801}, False),
    ("SystemUpdate", {"name": "pump-7", "id": "3f0c9a52-6a7e-4c43-9a55-2c8f1b7d9e01"}, False),
]


@pytest.mark.parametrize(("name", "body", "valid"), SYSTEM_BODIES, ids=lambda value: str(value)[:60])
def test_a_system_body_is_taken_by_the_spec_as_by_the_model(name: str, body: dict[str, Any], valid: bool) -> None:
    try:
        SCHEMA_MODELS[name].model_validate(body)
    except ValidationError:
        taken = False
    else:
        taken = True

    assert (taken, component_validator(name).is_valid(body)) == (valid, valid)


def test_the_silence_bounds_are_the_models() -> None:
    schemas = spec()["components"]["schemas"]
    bounds = (SILENT_AFTER_MIN_SECONDS, SILENT_AFTER_MAX_SECONDS)
    for schema in ("SystemCreate", "SystemUpdate", "SystemView"):
        documented = schemas[schema]["properties"]["silent_after_seconds"]
        assert (documented["minimum"], documented["maximum"]) == bounds, schema
    assert schemas["SystemCreate"]["properties"]["silent_after_seconds"]["default"] == SILENT_AFTER_DEFAULT_SECONDS


# Bodies the models would take (lax, or any text) that the spec refuses, and so does the edge: JSON members of
# another type are not coerced, and PostgreSQL's text cannot hold a NUL.
EDGE_REFUSED_REVIEWS: list[tuple[Operation, str, dict[str, Any], str]] = [
    (REVIEW, "ReviewRequest", {"action": "reject", "notes": "gauge\x00reset"}, "notes"),
    (BULK_REVIEW, "BulkReviewRequest", {"action": "reject", "ids": [41], "notes": "gauge\x00reset"}, "notes"),
    (REVIEW, "ReviewRequest", {"action": "fix", "value": False}, "value"),
    (REVIEW, "ReviewRequest", {"action": "fix", "value": "212.5"}, "value"),
    (REVIEW, "ReviewRequest", {"action": "fix", "timestamp": 1763800000}, "timestamp"),
    (BULK_REVIEW, "BulkReviewRequest", {"action": "reject", "ids": ["41"]}, "ids"),
    (BULK_REVIEW, "BulkReviewRequest", {"action": "reject", "filter": {}, "limit": "5"}, "limit"),
]


@pytest.mark.parametrize(("op", "name", "body", "field"), EDGE_REFUSED_REVIEWS, ids=lambda value: str(value)[:60])
@pytest.mark.usefixtures("handler_env")
def test_a_review_body_the_spec_refuses_the_edge_refuses_before_the_database(
    op: Operation, name: str, body: dict[str, Any], field: str
) -> None:
    # The database is unreachable here: a refusal made after reaching it would answer 503.
    answer = call(
        handler_module("QuarantineFunction"), "POST", sample_path(op), verified=claims("quarantine:review"), body=body
    )

    assert not component_validator(name).is_valid(body)
    assert (answer.status, answer.error["details"][0]["field"]) == (400, field)


ACCEPTED_REVIEWS: list[tuple[str, dict[str, Any]]] = [
    ("ReviewRequest", {"action": "fix", "value": None, "unit": "bar"}),
    ("ReviewRequest", {"action": "reject", "value": None, "notes": None}),
    ("BulkReviewRequest", {"action": "approve", "ids": None, "filter": {}, "cursor": "abc"}),
    ("BulkReviewRequest", {"action": "fix", "ids": [3, 2, 1], "filter": None, "timestamp": "2026-11-20T08:00:00Z"}),
]


@pytest.mark.parametrize(("name", "body"), ACCEPTED_REVIEWS, ids=lambda value: str(value)[:60])
def test_a_review_body_the_model_accepts_the_schema_accepts(name: str, body: dict[str, Any]) -> None:
    SCHEMA_MODELS[name].model_validate(body)
    component_validator(name).validate(body)


# --- responses ---------------------------------------------------------------------------------------------------


def test_every_refusal_the_edge_maps_is_documented_somewhere() -> None:
    assert {kind for kinds in REFUSALS.values() for kind in kinds} == set(STATUS_BY_ERROR)


@pytest.mark.parametrize("op", OPERATIONS, ids=operation_id)
def test_an_operation_documents_each_status_it_answers_with_its_codes(op: Operation) -> None:
    answers = expected_answers(op)

    assert set(operation(op)["responses"]) == {str(status) for status in answers}
    for status, codes in answers.items():
        documented = response(op, status)
        if status in ANSWERS[op] and ANSWERS[op][status] is None:
            assert "content" not in documented, status
            continue
        examples = json_examples(documented)
        assert examples, f"{operation_id(op)} {status} has no example"
        if codes:
            assert body_schema(documented) == {"$ref": "#/components/schemas/ErrorResponse"}, status
            assert {example["error"]["code"] for example in examples} == codes, status
            assert all(f"`{code}`" in documented["description"] for code in codes), status
        else:
            assert schema_name(documented) == ANSWERS[op][status], status


@pytest.mark.parametrize("op", OPERATIONS, ids=operation_id)
def test_an_operations_examples_are_valid_for_the_models_and_the_spec(op: Operation) -> None:
    nodes = [response(op, status) for status in expected_answers(op) if ANSWERS[op].get(status, "") is not None]
    if "requestBody" in operation(op):
        nodes.append(resolve(operation(op)["requestBody"]))

    for node in nodes:
        name = schema_name(node)
        for value in json_examples(node):
            SCHEMA_MODELS[name].model_validate(value)
            component_validator(name).validate(value)


def test_a_bulk_reviews_row_errors_are_a_single_reviews_codes() -> None:
    single = {kind.code for kind in REFUSALS[REVIEW]}
    row_codes = {
        outcome["error"]["code"]
        for example in json_examples(response(BULK_REVIEW, 200))
        for outcome in example["results"]
        if outcome["error"] is not None
    }
    documented = spec()["components"]["schemas"]["ReviewOutcome"]["properties"]["error"]["description"]
    row_refusals = {NotFoundError, NotPendingError, DuplicateReadingError, ReadingInvalidError}

    assert row_codes <= {kind.code for kind in row_refusals} <= single
    assert all(f"`{kind.code}`" in documented for kind in row_refusals)


@pytest.mark.parametrize("op", [op for op in OPERATIONS if ForbiddenError in REFUSALS[op]], ids=operation_id)
def test_a_forbidden_answer_names_the_operations_scope(op: Operation) -> None:
    (scope,) = required_scopes(op)
    forbidden = response(op, STATUS_BY_ERROR[ForbiddenError])

    assert scope in forbidden["description"]
    assert any(
        scope in example["error"]["message"] and example["error"]["details"][0]["field"] == "scope"
        for example in json_examples(forbidden)
    )


def test_the_headers_the_edge_sets_are_documented() -> None:
    assert set(response(INGEST, 202)["headers"]) == {"Location", "Idempotent-Replayed"}
    assert set(response(UPLOAD, 201)["headers"]) == {"Location", "Idempotent-Replayed"}
    for op in OPERATIONS:
        if RateLimitedError in REFUSALS[op]:
            assert set(response(op, 429)["headers"]) == {"Retry-After"}, operation_id(op)
        if UnauthorizedError in REFUSALS[op]:
            assert set(response(op, 401)["headers"]) == {"WWW-Authenticate"}, operation_id(op)
        if op not in STORAGE_FREE:
            assert response(op, 503)["headers"]["Retry-After"]["schema"]["const"] == STORAGE_RETRY_AFTER_S
    for op in (HEALTH, DEEP_HEALTH):
        for status in ANSWERS[op]:
            assert response(op, status)["headers"]["Cache-Control"]["schema"]["const"] == "no-store"
