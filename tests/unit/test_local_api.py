"""The local HTTP API twin: template.yaml's routes selected as API Gateway selects them, the payload format 2.0
event, the function's answer turned into a response, and the JWT authorizer answering 401/403 on its own."""

import base64
import gzip
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from sluice_tools.cli import ALL_SCOPES
from sluice_tools.local.api import (
    MAX_REQUEST_BYTES,
    HttpApiTwin,
    HttpRequest,
    HttpResponse,
    Route,
    bearer_challenge,
    http_api_routes,
    is_text,
    proxy_event,
    proxy_response,
    query_parameters,
    select_route,
)
from sluice_tools.local.auth import SigningKey, jwt_authorizers
from sluice_tools.local.lambdas import (
    MAX_REQUEST_PAYLOAD_BYTES,
    MAX_RESPONSE_PAYLOAD_BYTES,
    Invocation,
    LocalFunction,
    function_specs,
    refused_request,
    response_payload_bytes,
)
from sluice_tools.local.resources import plan_stack
from sluice_tools.local.template import StackContext, TemplateError, load_template

from ..paths import REPO_ROOT

ISSUER = "https://auth.example.com/"
AUDIENCE = "sluice-api"

# Every HttpApi event of template.yaml: a request it serves, the function, the route key and the path parameters.
TEMPLATE_ROUTES: list[tuple[str, str, str, str, dict[str, str]]] = [
    ("POST", "/api/v1/data/ingest", "IngestApiFunction", "POST /api/v1/data/ingest", {}),
    ("POST", "/api/v1/uploads", "IngestApiFunction", "POST /api/v1/uploads", {}),
    ("GET", "/api/v1/jobs", "JobStatusFunction", "GET /api/v1/jobs", {}),
    ("GET", "/api/v1/jobs/job-1", "JobStatusFunction", "GET /api/v1/jobs/{job_id+}", {"job_id": "job-1"}),
    ("GET", "/api/v1/quarantine", "QuarantineFunction", "GET /api/v1/quarantine", {}),
    ("GET", "/api/v1/quarantine/42", "QuarantineFunction", "GET /api/v1/quarantine/{id}", {"id": "42"}),
    (
        "POST",
        "/api/v1/quarantine/42/review",
        "QuarantineFunction",
        "POST /api/v1/quarantine/{id}/review",
        {"id": "42"},
    ),
    ("POST", "/api/v1/quarantine/review", "QuarantineFunction", "POST /api/v1/quarantine/review", {}),
    ("GET", "/api/v1/systems", "SystemsFunction", "GET /api/v1/systems", {}),
    ("POST", "/api/v1/systems", "SystemsFunction", "POST /api/v1/systems", {}),
    ("GET", "/api/v1/systems/s-1", "SystemsFunction", "GET /api/v1/systems/{system_id}", {"system_id": "s-1"}),
    ("PATCH", "/api/v1/systems/s-1", "SystemsFunction", "PATCH /api/v1/systems/{system_id}", {"system_id": "s-1"}),
    (
        "GET",
        "/api/v1/systems/s-1/readings",
        "ReadingsFunction",
        "GET /api/v1/systems/{system_id}/readings",
        {"system_id": "s-1"},
    ),
    (
        "GET",
        "/api/v1/systems/s-1/sensors",
        "ReadingsFunction",
        "GET /api/v1/systems/{system_id}/sensors",
        {"system_id": "s-1"},
    ),
    ("POST", "/api/v1/alert-rules", "AlertsFunction", "POST /api/v1/alert-rules", {}),
    ("GET", "/api/v1/alert-rules", "AlertsFunction", "GET /api/v1/alert-rules", {}),
    ("GET", "/api/v1/alert-rules/r-1", "AlertsFunction", "GET /api/v1/alert-rules/{rule_id}", {"rule_id": "r-1"}),
    ("PATCH", "/api/v1/alert-rules/r-1", "AlertsFunction", "PATCH /api/v1/alert-rules/{rule_id}", {"rule_id": "r-1"}),
    ("DELETE", "/api/v1/alert-rules/r-1", "AlertsFunction", "DELETE /api/v1/alert-rules/{rule_id}", {"rule_id": "r-1"}),
    ("GET", "/api/v1/alarms", "AlertsFunction", "GET /api/v1/alarms", {}),
    ("GET", "/api/v1/alarms/a-1", "AlertsFunction", "GET /api/v1/alarms/{alarm_id}", {"alarm_id": "a-1"}),
    (
        "POST",
        "/api/v1/alarms/a-1/acknowledge",
        "AlertsFunction",
        "POST /api/v1/alarms/{alarm_id}/acknowledge",
        {"alarm_id": "a-1"},
    ),
    ("POST", "/api/v1/webhooks", "AlertsFunction", "POST /api/v1/webhooks", {}),
    ("GET", "/api/v1/webhooks", "AlertsFunction", "GET /api/v1/webhooks", {}),
    ("GET", "/api/v1/webhooks/w-1", "AlertsFunction", "GET /api/v1/webhooks/{webhook_id}", {"webhook_id": "w-1"}),
    (
        "DELETE",
        "/api/v1/webhooks/w-1",
        "AlertsFunction",
        "DELETE /api/v1/webhooks/{webhook_id}",
        {"webhook_id": "w-1"},
    ),
    (
        "GET",
        "/api/v1/webhooks/w-1/deliveries",
        "AlertsFunction",
        "GET /api/v1/webhooks/{webhook_id}/deliveries",
        {"webhook_id": "w-1"},
    ),
    ("GET", "/health", "HealthFunction", "GET /health", {}),
    ("GET", "/health/deep", "HealthFunction", "GET /health/deep", {}),
    ("GET", "/console", "ConsoleFunction", "GET /console", {}),
    ("GET", "/console/js/main.js", "ConsoleFunction", "GET /console/{proxy+}", {"proxy": "js/main.js"}),
]


def stack_context(**parameters: str) -> StackContext:
    """template.yaml with every resource name planned, as ``sluice start`` sees it (no AWS called)."""
    overrides = {"DatabaseSecretArn": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:x", **parameters}
    context = StackContext(
        load_template(REPO_ROOT / "template.yaml"),
        stack_name="sluice-test",
        region="eu-central-1",
        parameter_overrides=overrides,
    )
    return plan_stack(context, "http://127.0.0.1:4566")


@pytest.fixture(scope="module")
def context() -> StackContext:
    return stack_context()


@pytest.fixture(scope="module")
def routes(context: StackContext) -> list[Route]:
    return http_api_routes(context)[1]


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return SigningKey.load_or_create(tmp_path_factory.mktemp("jwt"))


@dataclass
class RecordingFunction:
    """A fake ``invoke``: records each (function, event) and answers with ``result`` (or ``error``)."""

    result: Any = field(default_factory=lambda: {"statusCode": 200, "body": '{"ok": true}'})
    error: dict[str, Any] | None = None
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, function: str, event: dict[str, Any]) -> Invocation:
        self.calls.append((function, event))
        return Invocation(request_id=f"request-{len(self.calls)}", result=self.result, error=self.error)


def make_twin(
    context: StackContext,
    signing_key: SigningKey,
    function: RecordingFunction,
    local_pages: Mapping[str, Callable[[], HttpResponse]] | None = None,
) -> HttpApiTwin:
    api_id, routes = http_api_routes(context)
    return HttpApiTwin(
        api_id=api_id,
        routes=routes,
        authorizers=jwt_authorizers(context, api_id),
        signing_key=signing_key,
        invoke=function,
        local_pages=local_pages or {},
    )


def request(
    method: str,
    path: str,
    *,
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    token: str | None = None,
) -> HttpRequest:
    sent = [("Host", "127.0.0.1:3000"), *(headers or [])]
    if token is not None:
        sent.append(("Authorization", f"Bearer {token}"))
    return HttpRequest(method, path, query, sent, body, source_ip="127.0.0.1")


def mint(signing_key: SigningKey, scope: str = ALL_SCOPES, **claims: Any) -> str:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "dev", "tenant_id": "acme", "scope": scope, "iat": now}
    return signing_key.mint({**base, "exp": now + 300, **claims})


def body_json(response: HttpResponse) -> Any:
    return json.loads(response.body)


def header(response: HttpResponse, name: str) -> list[str]:
    return [value for key, value in response.headers if key.lower() == name]


# --- routes ------------------------------------------------------------------------------------------------------


def test_the_table_covers_every_route_of_the_template(routes: list[Route]) -> None:
    assert sorted(route.key for route in routes) == sorted(key for _, _, _, key, _ in TEMPLATE_ROUTES)


def test_routes_carry_their_authorizer_and_scopes(routes: list[Route]) -> None:
    by_key = {route.key: route for route in routes}

    assert by_key["GET /health"].authorizer is None
    assert by_key["GET /health/deep"].authorizer == "JwtAuthorizer"
    assert by_key["GET /health/deep"].scopes == ("ops:read",)
    assert by_key["POST /api/v1/data/ingest"].scopes == ("ingest:write",)
    assert by_key["GET /api/v1/jobs/{job_id+}"].scopes == ("jobs:read",)
    assert by_key["POST /api/v1/quarantine/review"].scopes == ("quarantine:review",)


@pytest.mark.parametrize("case", TEMPLATE_ROUTES, ids=[key for *_, key, _ in TEMPLATE_ROUTES])
def test_every_template_route_is_selected_for_its_own_request(
    routes: list[Route], case: tuple[str, str, str, str, dict[str, str]]
) -> None:
    method, path, function, key, parameters = case

    selected = select_route(routes, method, path)

    assert selected is not None
    route, found = selected
    assert (route.function, route.key, found) == (function, key, parameters)


@pytest.mark.parametrize(
    ("path", "job_id"),
    [("/api/v1/jobs/abc/", "abc/"), ("/api/v1/jobs/a/b/c", "a/b/c"), ("/api/v1/jobs/x%2Fy/z%20w", "x/y/z w")],
)
def test_the_greedy_job_id_takes_the_rest_of_the_path(routes: list[Route], path: str, job_id: str) -> None:
    selected = select_route(routes, "GET", path)

    assert selected is not None
    assert selected[0].key == "GET /api/v1/jobs/{job_id+}"
    assert selected[1] == {"job_id": job_id}


def test_a_greedy_route_takes_an_empty_rest_after_its_slash_but_not_the_bare_prefix(routes: list[Route]) -> None:
    console = select_route(routes, "GET", "/console/")
    jobs = select_route(routes, "GET", "/api/v1/jobs/")

    assert console is not None
    assert jobs is not None
    assert (console[0].key, console[1]) == ("GET /console/{proxy+}", {"proxy": ""})
    assert (jobs[0].key, jobs[1]) == ("GET /api/v1/jobs/{job_id+}", {"job_id": ""})
    assert select_route(routes, "GET", "/console")[0].key == "GET /console"  # type: ignore[index]


def test_the_literal_review_route_wins_over_the_parameter(routes: list[Route]) -> None:
    many = select_route(routes, "POST", "/api/v1/quarantine/review")
    one = select_route(routes, "POST", "/api/v1/quarantine/5/review")
    # GET has no literal route: "review" is then just an id.
    read = select_route(routes, "GET", "/api/v1/quarantine/review")

    assert many is not None
    assert one is not None
    assert read is not None
    assert (many[0].key, many[1]) == ("POST /api/v1/quarantine/review", {})
    assert (one[0].key, one[1]) == ("POST /api/v1/quarantine/{id}/review", {"id": "5"})
    assert (read[0].key, read[1]) == ("GET /api/v1/quarantine/{id}", {"id": "review"})


def test_path_parameters_are_percent_decoded(routes: list[Route]) -> None:
    selected = select_route(routes, "GET", "/api/v1/quarantine/a%20b%2Fc")

    assert selected is not None
    assert selected[1] == {"id": "a b/c"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v2/jobs"),
        ("GET", "/nope"),
        ("GET", "/"),
        ("DELETE", "/api/v1/jobs"),
        ("GET", "/api/v1/data/ingest"),
        ("POST", "/api/v1/quarantine/5"),
        ("GET", "/health/deep/more"),
        ("POST", "/api/v1/quarantine//review"),
        ("GET", "/api/v1/quarantine/"),
    ],
)
def test_unknown_paths_and_wrong_methods_select_nothing(routes: list[Route], method: str, path: str) -> None:
    assert select_route(routes, method, path) is None


def test_rank_puts_literal_before_parameter_before_greedy_and_methods_before_any() -> None:
    greedy = Route("GET", "/things/{rest+}", "F", None)
    parameter = Route("GET", "/things/{id}", "F", None)
    literal = Route("GET", "/things/new", "F", None)
    any_method = Route("ANY", "/things/{id}", "F", None)
    routes = sorted([any_method, greedy, parameter, literal], key=Route.rank)

    assert routes == [literal, parameter, any_method, greedy]
    assert select_route(routes, "GET", "/things/new") == (literal, {})
    assert select_route(routes, "GET", "/things/7") == (parameter, {"id": "7"})
    assert select_route(routes, "PUT", "/things/7") == (any_method, {"id": "7"})
    assert select_route(routes, "GET", "/things/7/parts") == (greedy, {"rest": "7/parts"})


def minimal_template(events: dict[str, Any], apis: int = 1) -> StackContext:
    resources: dict[str, Any] = {
        f"Api{n}": {"Type": "AWS::Serverless::HttpApi", "Properties": {}} for n in range(1, apis + 1)
    }
    resources["Fn"] = {"Type": "AWS::Serverless::Function", "Properties": {"Events": events}}
    return StackContext({"Resources": resources}, stack_name="s", region="eu-central-1")


def http_event(**properties: Any) -> dict[str, Any]:
    return {"Type": "HttpApi", "Properties": {"ApiId": {"Ref": "Api1"}, **properties}}


def test_an_any_method_route_is_read_from_the_template() -> None:
    context = minimal_template({"All": http_event(Path="/x", Method="x-amazon-apigateway-any-method")})

    api_id, routes = http_api_routes(context)

    assert api_id == "Api1"
    assert routes == [Route("ANY", "/x", "Fn", None)]


@pytest.mark.parametrize(
    ("events", "apis"),
    [
        ({"A": http_event(Path="/x", Method="GET")}, 2),
        ({"A": http_event(Path="/x", Method="GET", PayloadFormatVersion="1.0")}, 1),
        ({"A": http_event(Path="/x", Method="GET", ApiId={"Ref": "Elsewhere"})}, 1),
        ({"A": http_event(Path="/x", Method="GET"), "B": http_event(Path="/x", Method="get")}, 1),
    ],
    ids=["two-apis", "payload-1.0", "another-api", "duplicate-route"],
)
def test_templates_the_twin_cannot_serve_are_refused(events: dict[str, Any], apis: int) -> None:
    with pytest.raises(TemplateError):
        http_api_routes(minimal_template(events, apis))


# --- the 2.0 event -----------------------------------------------------------------------------------------------


def test_proxy_event_has_the_payload_format_2_0_fields(routes: list[Route]) -> None:
    given = HttpRequest(
        method="POST",
        raw_path="/api/v1/quarantine/a%20b/review",
        raw_query="tag=x&tag=y&q=caf%C3%A9&blank=",
        headers=[
            ("Host", "127.0.0.1:3000"),
            ("Content-Type", "application/json"),
            ("Cookie", "session=1; theme=dark"),
            ("X-Trace", "one"),
            ("x-trace", "two"),
            ("User-Agent", "pytest"),
        ],
        body=b'{"decision": "accept"}',
        source_ip="10.0.0.7",
    )
    selected = select_route(routes, given.method, given.raw_path)
    assert selected is not None

    event = proxy_event(given, *selected, api_id="HttpApi", authorizer_context=None)

    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /api/v1/quarantine/{id}/review"
    assert event["rawPath"] == "/api/v1/quarantine/a%20b/review"
    assert event["rawQueryString"] == "tag=x&tag=y&q=caf%C3%A9&blank="
    assert event["cookies"] == ["session=1", "theme=dark"]
    assert event["headers"] == {
        "host": "127.0.0.1:3000",
        "content-type": "application/json",
        "x-trace": "one,two",
        "user-agent": "pytest",
        "x-forwarded-proto": "http",
        "x-forwarded-port": "3000",
        "x-forwarded-for": "10.0.0.7",
    }
    assert event["queryStringParameters"] == {"tag": "x,y", "q": "café", "blank": ""}
    assert event["pathParameters"] == {"id": "a b"}
    assert (event["body"], event["isBase64Encoded"]) == ('{"decision": "accept"}', False)
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/api/v1/quarantine/a b/review",
        "protocol": "HTTP/1.1",
        "sourceIp": "10.0.0.7",
        "userAgent": "pytest",
    }
    assert context["stage"] == "$default"
    assert context["routeKey"] == event["routeKey"]
    assert context["apiId"] == "HttpApi"
    assert context["accountId"] == "123456789012"
    assert context["domainName"] == "127.0.0.1:3000"
    assert context["requestId"]
    assert abs(context["timeEpoch"] - time.time() * 1000) < 60_000
    assert context["time"].endswith("+0000")
    assert "authorizer" not in context


def test_proxy_event_leaves_out_what_the_request_lacks(routes: list[Route]) -> None:
    given = HttpRequest("GET", "/health", "", [], b"", source_ip="127.0.0.1")
    selected = select_route(routes, "GET", "/health")
    assert selected is not None

    event = proxy_event(given, *selected, api_id="HttpApi", authorizer_context=None)

    for absent in ("cookies", "queryStringParameters", "pathParameters", "body"):
        assert absent not in event
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["domainName"] == "127.0.0.1"
    assert event["headers"] == {"x-forwarded-proto": "http", "x-forwarded-port": "80", "x-forwarded-for": "127.0.0.1"}


def test_proxy_event_keeps_forwarding_headers_a_proxy_set(routes: list[Route]) -> None:
    given = HttpRequest(
        "GET",
        "/health",
        "",
        [("Host", "sluice.test"), ("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "https")],
        b"",
        source_ip="10.0.0.7",
    )
    selected = select_route(routes, "GET", "/health")
    assert selected is not None

    headers = proxy_event(given, *selected, api_id="HttpApi", authorizer_context=None)["headers"]

    assert headers["x-forwarded-for"] == "203.0.113.9, 10.0.0.7"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-port"] == "80"


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ([("Content-Type", "application/json"), ("Content-Encoding", "gzip")], gzip.compress(b'{"a": 1}')),
        ([("Content-Type", "application/octet-stream")], b"\x00\x01\x02binary"),
        ([("Content-Type", "text/csv")], b"caf\xe9"),  # not UTF-8
    ],
    ids=["gzip", "binary", "text-not-utf8"],
)
def test_bodies_api_gateway_cannot_pass_as_text_are_base64(
    routes: list[Route], headers: list[tuple[str, str]], body: bytes
) -> None:
    selected = select_route(routes, "POST", "/api/v1/data/ingest")
    assert selected is not None

    given = request("POST", "/api/v1/data/ingest", headers=headers, body=body)

    event = proxy_event(given, *selected, api_id="HttpApi", authorizer_context=None)

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, True),
        ({"content-type": "application/json"}, True),
        ({"content-type": "Application/JSON; charset=utf-8"}, True),
        ({"content-type": "text/csv"}, True),
        ({"content-type": "application/xml"}, True),
        ({"content-type": "application/x-www-form-urlencoded"}, True),
        ({"content-type": "application/problem+json"}, True),
        ({"content-type": "application/octet-stream"}, False),
        ({"content-type": "image/png"}, False),
        ({"content-type": "application/json", "content-encoding": "gzip"}, False),
    ],
)
def test_is_text(headers: dict[str, str], expected: bool) -> None:
    assert is_text(headers) is expected


def test_query_parameters_decode_and_join_repeated_names() -> None:
    assert query_parameters("a=1&a=2&b=x%20y&c=&d=1+2&e") == {"a": "1,2", "b": "x y", "c": "", "d": "1 2", "e": ""}
    assert query_parameters("") == {}


# --- the function's answer ---------------------------------------------------------------------------------------


def answered(result: Any = None, error: dict[str, Any] | None = None) -> Invocation:
    return Invocation(request_id="r", result=result, error=error)


def test_proxy_response_takes_status_headers_cookies_and_body() -> None:
    response = proxy_response(
        answered(
            {
                "statusCode": 201,
                "headers": {"Content-Type": "text/plain", "x-job": "j-1"},
                "cookies": ["session=1; HttpOnly", "theme=dark"],
                "body": "created",
            }
        )
    )

    assert response.status == 201
    assert response.body == b"created"
    assert list(response.headers) == [
        ("Content-Type", "text/plain"),
        ("x-job", "j-1"),
        ("set-cookie", "session=1; HttpOnly"),
        ("set-cookie", "theme=dark"),
    ]


def test_proxy_response_decodes_a_base64_body() -> None:
    payload = b"\x89PNG\x00\x01"
    response = proxy_response(
        answered(
            {
                "statusCode": 200,
                "headers": {"content-type": "image/png"},
                "isBase64Encoded": True,
                "body": base64.b64encode(payload).decode(),
            }
        )
    )

    assert (response.status, response.body) == (200, payload)
    assert header(response, "content-type") == ["image/png"]


def test_proxy_response_defaults_the_content_type_to_json() -> None:
    response = proxy_response(answered({"statusCode": 204}))

    assert (response.status, response.body) == (204, b"")
    assert header(response, "content-type") == ["application/json"]


@pytest.mark.parametrize("result", [{"items": [1, 2]}, ["a", "b"], "hello", 3, None])
def test_a_result_without_status_code_is_a_200_json_body(result: Any) -> None:
    response = proxy_response(answered(result))

    assert response.status == 200
    assert header(response, "content-type") == ["application/json"]
    assert body_json(response) == result


def test_a_failed_invocation_is_a_500() -> None:
    response = proxy_response(answered(error={"errorType": "RuntimeError", "errorMessage": "boom"}))

    assert response.status == 500
    assert body_json(response) == {"message": "Internal Server Error"}


def test_an_answer_over_lambdas_limit_is_a_500_as_http_api_answers_a_failed_function() -> None:
    limit = MAX_RESPONSE_PAYLOAD_BYTES
    message = f"Response payload size exceeded maximum allowed payload size ({limit} bytes)."
    response = proxy_response(answered(error={"errorType": "Function.ResponseSizeTooLarge", "errorMessage": message}))

    assert (response.status, body_json(response)) == (500, {"message": "Internal Server Error"})


def test_a_request_lambda_refuses_is_a_413_as_http_api_answers_it() -> None:
    refused = refused_request({"body": "x" * MAX_REQUEST_PAYLOAD_BYTES})
    assert refused is not None

    response = proxy_response(refused)

    assert (response.status, body_json(response)) == (413, {"message": "Request Entity Too Large"})


def padded_event(size: int) -> dict[str, str]:
    """An event whose compact JSON is exactly ``size`` bytes."""
    return {"pad": "x" * (size - len('{"pad":""}'))}


def test_lambda_takes_a_request_payload_smaller_than_6291456_bytes() -> None:
    # Lambda's own words: "Request must be smaller than 6291456 bytes for the InvokeFunction operation".
    assert refused_request(padded_event(MAX_REQUEST_PAYLOAD_BYTES - 1)) is None
    refused = refused_request(padded_event(MAX_REQUEST_PAYLOAD_BYTES))

    assert refused is not None
    assert refused.rejected
    assert refused.error == {
        "errorType": "RequestEntityTooLargeException",
        "errorMessage": "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
    }


def test_an_answer_is_measured_as_the_python_runtime_writes_it() -> None:
    # awslambdaric (python3.12+) writes UTF-8 text as is: "é" is 2 bytes, not the 6 of "\u00e9".
    assert response_payload_bytes({"text": "é"}) == len('{"text": "é"}'.encode())
    assert response_payload_bytes({"body": '{"a": "\n"}'}) == len(json.dumps({"body": '{"a": "\n"}'}))


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "teapot"},
        {"statusCode": None},
        {"statusCode": 200, "headers": ["x-a: 1"]},
        {"statusCode": 200, "isBase64Encoded": True, "body": "abc"},  # bad padding
        {"statusCode": 200, "cookies": 5},
    ],
    ids=["status-text", "status-null", "headers-list", "bad-base64", "cookies-number"],
)
def test_a_malformed_result_is_a_500(result: dict[str, Any]) -> None:
    response = proxy_response(answered(result))

    assert response.status == 500
    assert body_json(response) == {"message": "Internal Server Error"}


# --- the twin ------------------------------------------------------------------------------------------------------


def test_no_token_is_401_and_the_function_is_not_invoked(context: StackContext, signing_key: SigningKey) -> None:
    function = RecordingFunction()
    twin = make_twin(context, signing_key, function)

    response, served_by = twin.handle(request("GET", "/api/v1/jobs"))

    assert response.status == 401
    assert body_json(response) == {"message": "Unauthorized"}
    (challenge,) = header(response, "www-authenticate")
    assert challenge.startswith('Bearer error="invalid_token"')
    assert "no token" in challenge
    assert served_by is None
    assert function.calls == []


def test_an_invalid_token_is_401(context: StackContext, signing_key: SigningKey) -> None:
    function = RecordingFunction()
    twin = make_twin(context, signing_key, function)

    response, _ = twin.handle(request("GET", "/api/v1/jobs", token=mint(signing_key, iss="https://evil.example/")))

    assert response.status == 401
    assert "issuer" in header(response, "www-authenticate")[0]
    assert function.calls == []


@pytest.mark.parametrize(
    "alg", ["RS256\r\nX-Injected: yes", "RS256\u2603", 'RS256" error="forged'], ids=["crlf", "non-latin-1", "quote"]
)
def test_a_hostile_alg_is_a_plain_401_whose_challenge_repeats_none_of_it(
    context: StackContext, signing_key: SigningKey, alg: str
) -> None:
    function = RecordingFunction()
    twin = make_twin(context, signing_key, function)
    header_part = base64.urlsafe_b64encode(json.dumps({"alg": alg}).encode()).decode().rstrip("=")
    token = ".".join([header_part, *mint(signing_key).split(".")[1:]])

    response, served_by = twin.handle(request("GET", "/api/v1/jobs", token=token))

    assert (response.status, body_json(response), served_by) == (401, {"message": "Unauthorized"}, None)
    (challenge,) = header(response, "www-authenticate")
    assert challenge == (
        'Bearer error="invalid_token"'
        ' error_description="the token cannot be verified: its form, algorithm or signature is not accepted"'
    )
    assert function.calls == []


def test_a_challenge_keeps_only_what_a_header_can_carry() -> None:
    challenge = bearer_challenge("invalid_token", 'bad\r\nSet-Cookie: x=1 \u2603 "quoted" back\\slash\x00')

    assert challenge == 'Bearer error="invalid_token" error_description="badSet-Cookie: x=1  quoted backslash"'
    challenge.encode("latin-1")


def test_a_token_without_the_route_scope_is_403(context: StackContext, signing_key: SigningKey) -> None:
    function = RecordingFunction()
    twin = make_twin(context, signing_key, function)

    response, served_by = twin.handle(
        request("POST", "/api/v1/data/ingest", body=b"{}", token=mint(signing_key, scope="jobs:read"))
    )

    assert response.status == 403
    assert body_json(response) == {"message": "Forbidden"}
    (challenge,) = header(response, "www-authenticate")
    assert challenge.startswith('Bearer error="insufficient_scope"')
    assert "ingest:write" in challenge
    assert served_by is None
    assert function.calls == []


def test_a_good_token_invokes_the_function_with_its_claims(context: StackContext, signing_key: SigningKey) -> None:
    function = RecordingFunction(result={"statusCode": 200, "body": '{"job_id": "j-1"}'})
    twin = make_twin(context, signing_key, function)
    token = mint(signing_key, scope="jobs:read quarantine:read", groups=["a", "b"], admin=False)

    response, served_by = twin.handle(request("GET", "/api/v1/jobs/j-1", token=token))

    assert (response.status, body_json(response)) == (200, {"job_id": "j-1"})
    assert served_by == "JobStatusFunction"
    ((name, event),) = function.calls
    assert name == "JobStatusFunction"
    assert event["pathParameters"] == {"job_id": "j-1"}
    jwt = event["requestContext"]["authorizer"]["jwt"]
    assert jwt["scopes"] == ["jobs:read", "quarantine:read"]
    claims = jwt["claims"]
    assert all(isinstance(value, str) for value in claims.values())
    assert claims["tenant_id"] == "acme"
    assert claims["iss"] == ISSUER
    assert claims["groups"] == "[a b]"
    assert claims["admin"] == "false"
    assert claims["exp"].isdigit()
    assert int(claims["exp"]) > int(claims["iat"])


def test_a_route_without_scopes_takes_any_valid_token(context: StackContext, signing_key: SigningKey) -> None:
    # A route of its own: whether the template has such a route is the template's business.
    function = RecordingFunction()
    api_id, _ = http_api_routes(context)
    twin = HttpApiTwin(
        api_id=api_id,
        routes=[Route("GET", "/probe", "ProbeFunction", "JwtAuthorizer")],
        authorizers=jwt_authorizers(context, api_id),
        signing_key=signing_key,
        invoke=function,
    )

    response, served_by = twin.handle(request("GET", "/probe", token=mint(signing_key, scope="")))

    assert (response.status, served_by) == (200, "ProbeFunction")
    # API Gateway passes null, not an empty list, when the token grants no scopes.
    assert function.calls[0][1]["requestContext"]["authorizer"]["jwt"]["scopes"] is None


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_health_is_invoked_without_authorization(
    context: StackContext, signing_key: SigningKey, token: str | None
) -> None:
    function = RecordingFunction()
    twin = make_twin(context, signing_key, function)

    response, served_by = twin.handle(request("GET", "/health", token=token))

    assert (response.status, served_by) == (200, "HealthFunction")
    ((_, event),) = function.calls
    assert "authorizer" not in event["requestContext"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("DELETE", "/api/v1/jobs"), ("POST", "/health")])
def test_no_route_is_404(context: StackContext, signing_key: SigningKey, method: str, path: str) -> None:
    function = RecordingFunction()
    twin = make_twin(context, signing_key, function)

    response, served_by = twin.handle(request(method, path, token=mint(signing_key)))

    assert (response.status, body_json(response), served_by) == (404, {"message": "Not Found"}, None)
    assert function.calls == []


def test_a_body_over_10_mb_is_413(context: StackContext, signing_key: SigningKey) -> None:
    function = RecordingFunction()
    twin = make_twin(context, signing_key, function)
    token = mint(signing_key)

    too_big, _ = twin.handle(request("POST", "/api/v1/data/ingest", body=b"x" * (MAX_REQUEST_BYTES + 1), token=token))
    just_fits, served_by = twin.handle(
        request("POST", "/api/v1/data/ingest", body=b"x" * MAX_REQUEST_BYTES, token=token)
    )

    assert (too_big.status, body_json(too_big)) == (413, {"message": "Request Entity Too Large"})
    assert (just_fits.status, served_by) == (200, "IngestApiFunction")
    assert len(function.calls) == 1


def unstarted_functions(context: StackContext, root: Path) -> dict[str, LocalFunction]:
    """Every function of the template as a pool that has started no environment (its code is nowhere)."""
    specs = function_specs(context, root, local_environment={})
    return {name: LocalFunction(replace(spec, code_dir=root / "nowhere")) for name, spec in specs.items()}


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        # Under API Gateway's 10 MB but over 6 MB once in the event: text bodies go in as they are...
        (b"x" * (6 * 1024 * 1024 + 1024), [("Content-Type", "application/json")]),
        # ...and a gzip body goes in base64: 4.7 MB sent is 6.3 MB in the event.
        (b"\x1f\x8b" + b"\0" * (4_750_000 - 2), [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]),
    ],
    ids=["text-6.0-mib", "gzip-4.75-mb-as-base64"],
)
def test_an_event_over_lambdas_request_limit_is_413_and_no_environment_starts(
    context: StackContext, signing_key: SigningKey, tmp_path: Path, body: bytes, headers: list[tuple[str, str]]
) -> None:
    functions = unstarted_functions(context, tmp_path)
    api_id, routes = http_api_routes(context)
    twin = HttpApiTwin(
        api_id=api_id,
        routes=routes,
        authorizers=jwt_authorizers(context, api_id),
        signing_key=signing_key,
        invoke=lambda name, event: functions[name].invoke(event),
    )

    response, served_by = twin.handle(
        request("POST", "/api/v1/data/ingest", body=body, headers=headers, token=mint(signing_key))
    )

    assert len(body) < MAX_REQUEST_BYTES
    assert (response.status, body_json(response), served_by) == (
        413,
        {"message": "Request Entity Too Large"},
        "IngestApiFunction",
    )
    assert all(function.environments == 0 for function in functions.values())


def test_a_failing_function_is_a_500(context: StackContext, signing_key: SigningKey) -> None:
    function = RecordingFunction(error={"errorType": "Runtime.ExitError", "errorMessage": "died"})
    twin = make_twin(context, signing_key, function)

    response, served_by = twin.handle(request("GET", "/health"))

    assert (response.status, body_json(response), served_by) == (
        500,
        {"message": "Internal Server Error"},
        "HealthFunction",
    )


def spec_page() -> HttpResponse:
    return HttpResponse(200, [("content-type", "application/yaml")], b"openapi: 3.1.0\n")


def test_local_pages_are_served_by_the_twin(context: StackContext, signing_key: SigningKey) -> None:
    function = RecordingFunction()
    twin = make_twin(context, signing_key, function, local_pages={"/openapi.yaml": spec_page})

    got, served_by = twin.handle(request("GET", "/openapi.yaml"))
    head, _ = twin.handle(request("HEAD", "/openapi.yaml"))
    posted, _ = twin.handle(request("POST", "/openapi.yaml"))

    assert (got.status, got.body, served_by) == (200, b"openapi: 3.1.0\n", None)
    assert head.status == 200
    assert posted.status == 404
    assert function.calls == []


def test_a_template_route_colliding_with_a_local_page_is_refused(
    context: StackContext, signing_key: SigningKey
) -> None:
    with pytest.raises(TemplateError, match="/health"):
        make_twin(context, signing_key, RecordingFunction(), local_pages={"/health": spec_page})


def test_a_route_naming_an_undeclared_authorizer_is_refused(context: StackContext, signing_key: SigningKey) -> None:
    with pytest.raises(TemplateError, match="Missing"):
        HttpApiTwin(
            api_id="HttpApi",
            routes=[Route("GET", "/x", "Fn", "Missing")],
            authorizers=jwt_authorizers(context, "HttpApi"),
            signing_key=signing_key,
            invoke=RecordingFunction(),
        )


def test_the_template_parameters_set_the_issuer(signing_key: SigningKey) -> None:
    context = stack_context(JwtIssuer="https://issuer.test/")
    function = RecordingFunction()
    twin = make_twin(context, signing_key, function)

    accepted, _ = twin.handle(request("GET", "/api/v1/jobs", token=mint(signing_key, iss="https://issuer.test/")))
    refused, _ = twin.handle(request("GET", "/api/v1/jobs", token=mint(signing_key)))

    assert (accepted.status, refused.status) == (200, 401)
