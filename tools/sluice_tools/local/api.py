"""API Gateway's HTTP API, locally: template.yaml's HttpApi routes served on 127.0.0.1, payload format 2.0.

Each request is matched to a route the way API Gateway selects routes (literal segments win over ``{param}``,
which wins over a greedy ``{param+}``), authorized by the route's JWT authorizer (401 and 403 answered here,
without invoking anything), turned into the 2.0 event, and given to the function the route's event names. The
function's answer becomes the HTTP response as API Gateway makes it. Two paths are the twin's own and exist only
locally: ``/openapi.yaml`` (the spec) and ``/docs/`` (Swagger UI on it).
"""

import base64
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote

from sluice_tools.local.auth import Forbidden, JwtAuthorizerConfig, SigningKey, Unauthorized, authorize
from sluice_tools.local.lambdas import Invocation
from sluice_tools.local.template import LOCAL_ACCOUNT_ID, StackContext, TemplateError, created_resources_of_type

# API Gateway's quotas: a request body of at most 10 MB, and a Lambda integration answered within 30 s.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
# Content types API Gateway passes as text; anything else (or any Content-Encoding) arrives base64-encoded.
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")


@dataclass(frozen=True, slots=True)
class Route:
    """One HttpApi event of a function: ``METHOD /path`` and who may call it."""

    method: str
    path: str
    function: str
    authorizer: str | None
    scopes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The route key, e.g. ``GET /api/v1/jobs/{job_id+}``."""
        return f"{self.method} {self.path}"

    @property
    def segments(self) -> list[str]:
        """The path's segments (the leading "/" dropped)."""
        return self.path.split("/")[1:]

    def rank(self) -> tuple[int, ...]:
        """Sort key: more specific routes first (literal < parameter < greedy, segment by segment)."""
        kinds = [2 if part.endswith("+}") else 1 if part.startswith("{") else 0 for part in self.segments]
        return (*kinds, 3, 1 if self.method == "ANY" else 0)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when this route serves ``method path``, else None."""
        parts = path.split("/")[1:]
        parameters: dict[str, str] = {}
        matched = self.method in {method, "ANY"}
        for index, segment in enumerate(self.segments):
            if not matched:
                break
            if segment.startswith("{") and segment.endswith("+}"):
                # Greedy: everything left, slashes and a trailing "/" included. An empty rest after the "/" matches
                # too (/console/ is /console/{proxy+}): HTTP API routes cannot end in "/", and a greedy route is how
                # deployments serve such a path (storacha/w3infra#166 serves /metrics/ so); /console does not match.
                if index >= len(parts):
                    return None
                parameters[segment[1:-2]] = unquote("/".join(parts[index:]))
                return parameters
            part = parts[index] if index < len(parts) else None
            if segment.startswith("{") and segment.endswith("}"):
                matched = bool(part)
                parameters[segment[1:-1]] = unquote(part or "")
            else:
                matched = segment == part
        return parameters if matched and len(parts) == len(self.segments) else None


def http_api_routes(context: StackContext) -> tuple[str, list[Route]]:
    """The template's one HttpApi and the routes its functions' HttpApi events declare, most specific first."""
    apis = created_resources_of_type(context, "AWS::Serverless::HttpApi")
    if len(apis) != 1:
        raise TemplateError(f"the local runtime serves exactly one AWS::Serverless::HttpApi, not {len(apis)}")
    ((api_id, api),) = apis.items()
    default_authorizer = api["Properties"].get("Auth", {}).get("DefaultAuthorizer")
    routes: list[Route] = []
    for logical_id, function in created_resources_of_type(context, "AWS::Serverless::Function").items():
        for name, event in function["Properties"].get("Events", {}).items():
            if event["Type"] != "HttpApi":
                continue
            properties = event.get("Properties", {})
            if properties.get("ApiId", {"Ref": api_id}) != {"Ref": api_id}:
                raise TemplateError(f"{logical_id}.{name}: an HttpApi event of another API")
            if str(properties.get("PayloadFormatVersion", "2.0")) != "2.0":
                raise TemplateError(f"{logical_id}.{name}: only payload format 2.0 runs locally")
            auth = properties.get("Auth", {})
            authorizer = auth.get("Authorizer", default_authorizer)
            routes.append(
                Route(
                    method=str(properties.get("Method", "ANY"))
                    .upper()
                    .replace("X-AMAZON-APIGATEWAY-ANY-METHOD", "ANY"),
                    path=str(properties.get("Path", "/$default")),
                    function=logical_id,
                    authorizer=None if authorizer in {None, "NONE"} else str(authorizer),
                    # Resolved: a route lists its scope's Cognito form under a condition (template.yaml).
                    scopes=tuple(context.resolve(auth.get("AuthorizationScopes", []))),
                )
            )
    keys = [route.key for route in routes]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise TemplateError(f"routes declared twice: {duplicates}")
    return api_id, sorted(routes, key=Route.rank)


def _method(method: object) -> str:
    text = str(method).upper()
    return "ANY" if text in {"ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD"} else text


def select_route(routes: Sequence[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route API Gateway would pick for ``method path`` (``routes`` most specific first)."""
    for route in routes:
        parameters = route.match(method, path)
        if parameters is not None:
            return route, parameters
    return None


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """An HTTP request as the twin received it."""

    method: str
    raw_path: str
    raw_query: str
    headers: Sequence[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """An HTTP response to send."""

    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes

    @classmethod
    def message(cls, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> "HttpResponse":
        """API Gateway's own answers: ``{"message": "..."}``."""
        body = json.dumps({"message": message}).encode()
        return cls(status, [("content-type", "application/json"), *headers], body)


def proxy_event(
    request: HttpRequest,
    route: Route,
    path_parameters: Mapping[str, str],
    *,
    api_id: str,
    authorizer_context: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway sends a Lambda integration for this request."""
    moment = time.time()
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        lowered = name.lower()
        if lowered == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
        else:
            # Repeated headers are joined with commas, as API Gateway does.
            headers[lowered] = f"{headers[lowered]},{value}" if lowered in headers else value
    user_agent = headers.get("user-agent", "")
    host = headers.get("host", "127.0.0.1")
    # API Gateway adds these for the function; the twin speaks plain HTTP.
    headers.setdefault("x-forwarded-proto", "http")
    headers.setdefault("x-forwarded-port", host.rpartition(":")[2] if ":" in host else "80")
    headers["x-forwarded-for"] = ", ".join(filter(None, (headers.get("x-forwarded-for"), request.source_ip)))
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT_ID,
            "apiId": api_id,
            # With the port, unlike API Gateway's: links the functions build must lead back to the twin.
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": request.method,
                "path": unquote(request.raw_path),
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": user_agent,
            },
            "requestId": base64.b64encode(uuid.uuid4().bytes[:10]).decode().rstrip("="),
            "routeKey": route.key,
            "stage": "$default",
            "time": formatdate(moment, usegmt=True).replace("GMT", "+0000"),
            "timeEpoch": int(moment * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    query = query_parameters(request.raw_query)
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if authorizer_context is not None:
        event["requestContext"]["authorizer"] = dict(authorizer_context)
    if request.body:
        if is_text(headers):
            try:
                event["body"] = request.body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(request.body).decode(), True
        else:
            event["body"], event["isBase64Encoded"] = base64.b64encode(request.body).decode(), True
    return event


def query_parameters(raw_query: str) -> dict[str, str]:
    """``queryStringParameters``: decoded, a repeated name's values joined with commas."""
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
    return parameters


def is_text(headers: Mapping[str, str]) -> bool:
    """Does API Gateway hand this body to the function as text (rather than base64)?"""
    if headers.get("content-encoding"):
        return False
    content_type = headers.get("content-type", "").lower()
    return not content_type or content_type.startswith(_TEXT_TYPES) or "+json" in content_type


def proxy_response(invocation: Invocation) -> HttpResponse:
    """The HTTP response API Gateway makes of a function's answer (payload format 2.0).

    A request payload Lambda refused (over 6 MB as an event) is answered 413, as HTTP API does: AWS's own .NET Lambda
    Test Tool asserts that answer against API Gateway (aws/aws-lambda-dotnet, LargePayloadTests.cs). A function that
    failed, its answer over 6 MB among the failures, is a 500 ``Internal Server Error``: HTTP API answers every
    integration error so (Amazon API Gateway developer guide, "Troubleshooting issues with HTTP API Lambda
    integrations"), where a REST API would answer 502."""
    if invocation.rejected:
        return HttpResponse.message(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request Entity Too Large")
    if invocation.failed:
        return HttpResponse.message(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error")
    result = invocation.result
    if not isinstance(result, dict) or "statusCode" not in result:
        # Without a statusCode, API Gateway takes the result itself as a JSON body of a 200.
        return HttpResponse(200, [("content-type", "application/json")], json.dumps(result).encode())
    try:
        status = int(result["statusCode"])
        headers = [(str(name), str(value)) for name, value in (result.get("headers") or {}).items()]
        headers += [("set-cookie", str(cookie)) for cookie in result.get("cookies") or ()]
        body = result.get("body") or ""
        payload = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    except (TypeError, ValueError, AttributeError):
        return HttpResponse.message(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error")
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("content-type", "application/json"))
    return HttpResponse(status, headers, payload)


def bearer_challenge(error: str, description: str) -> str:
    """A ``WWW-Authenticate`` value (RFC 6750). The description keeps printable ASCII only, less the quote and
    backslash a quoted-string escapes: whatever a message ever carries, a header can neither be split (CR, LF) nor
    fail to encode (non-latin-1 text ends the connection mid-answer)."""
    safe = "".join(char for char in description if " " <= char <= "~" and char not in '"\\')
    return f'Bearer error="{error}" error_description="{safe}"'


Invoke = Callable[[str, dict[str, Any]], Invocation]


@dataclass
class HttpApiTwin:
    """Routes, authorizers and the functions behind them: turns an HTTP request into a response."""

    api_id: str
    routes: Sequence[Route]
    authorizers: Mapping[str, JwtAuthorizerConfig]
    signing_key: SigningKey
    invoke: Invoke
    local_pages: Mapping[str, Callable[[], HttpResponse]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for route in self.routes:
            if route.authorizer is not None and route.authorizer not in self.authorizers:
                raise TemplateError(f"{route.key} names the authorizer {route.authorizer}, which is not declared")
        for path in self.local_pages:
            if select_route(self.routes, "GET", path) is not None:
                raise TemplateError(f"the template routes {path}, which the local twin serves itself")

    def handle(self, request: HttpRequest) -> tuple[HttpResponse, str | None]:
        """The response to ``request`` and the function that served it (None when the twin answered itself)."""
        if len(request.body) > MAX_REQUEST_BYTES:
            return HttpResponse.message(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request Entity Too Large"), None
        if request.method in {"GET", "HEAD"} and request.raw_path in self.local_pages:
            return self.local_pages[request.raw_path](), None
        selected = select_route(self.routes, request.method, request.raw_path)
        if selected is None:
            return HttpResponse.message(HTTPStatus.NOT_FOUND, "Not Found"), None
        route, path_parameters = selected
        authorizer_context: dict[str, Any] | None = None
        if route.authorizer is not None:
            headers = {name.lower(): value for name, value in request.headers}
            try:
                claims, scopes = authorize(self.authorizers[route.authorizer], self.signing_key, headers, route.scopes)
            except Unauthorized as exc:
                challenge = bearer_challenge("invalid_token", str(exc))
                return HttpResponse.message(401, "Unauthorized", [("www-authenticate", challenge)]), None
            except Forbidden as exc:
                challenge = bearer_challenge("insufficient_scope", str(exc))
                return HttpResponse.message(403, "Forbidden", [("www-authenticate", challenge)]), None
            authorizer_context = {"jwt": {"claims": claims, "scopes": scopes or None}}
        event = proxy_event(request, route, path_parameters, api_id=self.api_id, authorizer_context=authorizer_context)
        return proxy_response(self.invoke(route.function, event)), route.function
