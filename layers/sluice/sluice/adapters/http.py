"""The HTTP edge shared by the API functions: who is calling, what was sent, and every error as a response.

API Gateway's JWT authorizer has verified the token before a function runs; the claims arrive as strings in the
request context. Reading them again here keeps a function safe when it is invoked some other way.
"""

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from pydantic import BaseModel, TypeAdapter, ValidationError

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
    Problem,
    RateLimitedError,
    ReadingInvalidError,
    RequestError,
    StorageUnavailableError,
    SystemIdTakenError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from sluice.models.api import ErrorInfo, ErrorResponse, error_details, shown_details
from sluice.models.types import Principal, TenantId
from sluice.settings import get_scope_settings

JSON = "application/json"
GZIP = "gzip"
# How long a client should wait after a 503 before sending the request again.
STORAGE_RETRY_AFTER_S = 5
# Review bodies are a decision and a note, or at most 500 ids: far below this.
MAX_REQUEST_BYTES = 256 * 1024

STATUS_BY_ERROR: Mapping[type[RequestError], int] = {
    InvalidRequestError: 400,
    UnauthorizedError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    IdempotencyInProgressError: 409,
    NotPendingError: 409,
    DuplicateReadingError: 409,
    NameTakenError: 409,
    SystemIdTakenError: 409,
    AlarmNotActiveError: 409,
    LimitReachedError: 409,
    PayloadTooLargeError: 413,
    UnsupportedMediaTypeError: 415,
    IdempotencyKeyReusedError: 422,
    ReadingInvalidError: 422,
    RateLimitedError: 429,
}

_tenant_id = TypeAdapter[str](TenantId)
_principal = TypeAdapter[str](Principal)


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified caller: its tenant, its principal (``sub``) and its scopes."""

    tenant_id: str
    principal: str
    scopes: frozenset[str]


def principal_of(event: APIGatewayProxyEventV2) -> str:
    """The verified principal (``sub``) of the request; 401 when there is none, or none it can be known by."""
    claims = event.request_context.authorizer.jwt_claim
    principal = str((claims or {}).get("sub") or "")
    if not principal:
        raise UnauthorizedError("no verified identity: send a bearer token from the tenant's identity provider")
    # The principal keys the rate limit and idempotency items and is stored as creator and reviewer: a sub those
    # cannot hold (too long for a key, a NUL for PostgreSQL's text) would fail later, as a 5xx.
    try:
        _principal.validate_python(principal)
    except ValidationError:
        usable = False
    else:
        usable = "\x00" not in principal
    if not usable:
        raise UnauthorizedError(
            "the token's sub is not a usable identity",
            [Problem(field="sub", reason="must be 1 to 256 characters, none of them NUL (U+0000)")],
        )
    return principal


def caller_of(event: APIGatewayProxyEventV2, tenant_claim: str, required_scope: str) -> Caller:
    """The caller named by the JWT claims in the request context; refuse one without a tenant or the scope."""
    principal = principal_of(event)
    authorizer = event.request_context.authorizer
    claims = authorizer.jwt_claim
    try:
        tenant_id = _tenant_id.validate_python(str(claims.get(tenant_claim) or ""))
    except ValidationError:
        raise ForbiddenError(
            f"the token carries no usable '{tenant_claim}' claim",
            [Problem(field=tenant_claim, reason="missing, or not letters, digits, '.', '_' and '-'")],
        ) from None
    scopes = require_scope(event, required_scope)
    return Caller(tenant_id=tenant_id, principal=principal, scopes=scopes)


def operator_of(event: APIGatewayProxyEventV2, required_scope: str) -> str:
    """The verified principal of a route that reads no tenant's data but the deployment's own (an operator's):
    401 without a usable ``sub``, 403 without ``required_scope``. No tenant claim is asked for."""
    principal = principal_of(event)
    require_scope(event, required_scope)
    return principal


def require_scope(event: APIGatewayProxyEventV2, required_scope: str) -> frozenset[str]:
    """The token's scopes, the deployment's resource server prefix taken off; 403 when ``required_scope`` is not
    among them."""
    authorizer = event.request_context.authorizer
    scopes = granted_scopes(authorizer.jwt_claim or {}, authorizer.jwt_scopes or (), get_scope_settings().scope_prefix)
    if required_scope not in scopes:
        raise ForbiddenError(
            f"this route needs the scope {required_scope}",
            [Problem(field="scope", reason=f"{required_scope} is not among the token's scopes")],
        )
    return scopes


def request_body(event: APIGatewayProxyEventV2) -> bytes:
    """The body's bytes: API Gateway base64-encodes bodies it does not treat as text (gzip ones among them)."""
    body = event.body or ""
    if not event.is_base64_encoded:
        return body.encode("utf-8", "surrogatepass")
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise InvalidRequestError(
            "the body could not be read", [Problem(field="body", reason="isBase64Encoded but not base64")]
        ) from None


def query_of[Query: BaseModel](event: APIGatewayProxyEventV2, model: type[Query]) -> Query:
    """The query string as ``model``; 400 naming each parameter at fault. API Gateway joins a repeated
    parameter's values with commas, so a repeat is refused as a malformed value."""
    try:
        return model.model_validate(dict(event.query_string_parameters or {}))
    except ValidationError as exc:
        raise InvalidRequestError("the query is not valid", error_details(exc)) from None


def require_json(event: APIGatewayProxyEventV2, what: str) -> None:
    """Refuse (415) a body that is not declared as JSON in UTF-8."""
    content_type = event.headers.get("content-type")
    media_type, _, parameters = (content_type or "").partition(";")
    charset = next(
        (value.strip().strip('"').lower() for name, _, value in _parameters(parameters) if name == "charset"),
        "utf-8",
    )
    if media_type.strip().lower() != JSON or charset != "utf-8":
        raise UnsupportedMediaTypeError(
            f"send {what} as {JSON} (UTF-8)",
            [Problem(field="Content-Type", reason=f"got {content_type or 'none'}, expected {JSON}")],
        )


def is_gzip_encoded(event: APIGatewayProxyEventV2) -> bool:
    """Whether the body is sent gzip-compressed (``Content-Encoding: gzip``); 415 for any other encoding."""
    content_encoding = event.headers.get("content-encoding")
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in {"identity", GZIP}:
        raise UnsupportedMediaTypeError(
            "the body may be sent plain or gzip-compressed",
            [Problem(field="Content-Encoding", reason=f"got {content_encoding}, expected gzip or none")],
        )
    return encoding == GZIP


def body_of[Body: BaseModel](event: APIGatewayProxyEventV2, model: type[Body]) -> Body:
    """The JSON body as ``model``: 415 unless declared as JSON, 413 when over ``MAX_REQUEST_BYTES``, 400 naming
    each field at fault."""
    require_json(event, "the request")
    body = request_body(event)
    if len(body) > MAX_REQUEST_BYTES:
        raise PayloadTooLargeError(
            f"the body is larger than {MAX_REQUEST_BYTES} bytes",
            [Problem(field="body", reason=f"the body has {len(body)} bytes, the limit is {MAX_REQUEST_BYTES}")],
        )
    try:
        text = body.decode("utf-8-sig")
        json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidRequestError(
            "the body is not JSON", [Problem(field="body", reason=f"{type(exc).__name__}: {exc}")]
        ) from None
    try:
        # Strict, as JSON: each member must be of the JSON type the spec names. Lax validation would take true or
        # "12.5" for a number and a number for a timestamp, and act on what the client did not mean.
        return model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise InvalidRequestError("the request body is not valid", error_details(exc)) from None


def absolute_url(event: APIGatewayProxyEventV2, path: str) -> str:
    """``path`` on the host the request came to (API Gateway's domain, or the local twin's host:port)."""
    host = (event.get("requestContext") or {}).get("domainName")
    if not host:
        return path
    scheme = event.headers.get("x-forwarded-proto") or "https"
    return f"{scheme}://{host}{path}"


def json_response(status: int, model: BaseModel, headers: Mapping[str, str] | None = None) -> Response[str]:
    """A JSON response from an API model."""
    return Response(status_code=status, content_type=JSON, body=model.model_dump_json(), headers=dict(headers or {}))


def error_response(exc: RequestError) -> Response[str]:
    """The response for a refused request: its status, and ``{"error": {"code", "message", "details"}}``."""
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, UnauthorizedError):
        headers["WWW-Authenticate"] = "Bearer"
    status = next(code for kind, code in STATUS_BY_ERROR.items() if isinstance(exc, kind))
    return json_response(status, _error_body(exc.code, exc.message, list(exc.details)), headers)


def register_error_responses(app: APIGatewayHttpResolver, logger: Logger, metrics: Metrics) -> None:
    """Map every error to its response in one place; nothing escapes as a bare 500 from API Gateway."""

    @app.exception_handler(RequestError)
    def refused(exc: RequestError) -> Response[str]:
        response = error_response(exc)
        logger.info("request refused", status=response.status_code, code=exc.code, reason=exc.message)
        metrics.add_metric(name="RefusedRequests", unit=MetricUnit.Count, value=1)
        return response

    @app.exception_handler(StorageUnavailableError)
    def unavailable(exc: StorageUnavailableError) -> Response[str]:
        logger.exception("storage unavailable")
        metrics.add_metric(name="StorageFailures", unit=MetricUnit.Count, value=1)
        # Every API function shares this answer, so it speaks of the request, not of a batch.
        body = _error_body(
            "storage_unavailable", "storage is unavailable; the request was not carried out, send it again"
        )
        return json_response(503, body, {"Retry-After": str(STORAGE_RETRY_AFTER_S)})

    @app.not_found
    def no_route(exc: Exception) -> Response[str]:
        metrics.add_metric(name="RefusedRequests", unit=MetricUnit.Count, value=1)
        return error_response(NotFoundError(f"no route for {app.current_event.http_method} {app.current_event.path}"))

    @app.exception_handler(Exception)
    def crashed(exc: Exception) -> Response[str]:
        logger.exception("unhandled error")
        metrics.add_metric(name="InternalErrors", unit=MetricUnit.Count, value=1)
        return json_response(500, _error_body("internal_error", "an unexpected error occurred; it has been logged"))


def _error_body(code: str, message: str, details: list[Problem] | None = None) -> ErrorResponse:
    return ErrorResponse(error=ErrorInfo(code=code, message=message, details=shown_details(details or [])))


def _parameters(text: str) -> list[tuple[str, str, str]]:
    return [(name.strip().lower(), sep, value) for name, sep, value in (p.partition("=") for p in text.split(";"))]


def granted_scopes(claims: Mapping[str, object], context_scopes: Iterable[str], prefix: str = "") -> frozenset[str]:
    """The scopes a token grants, in every form identity providers write them.

    ``scope`` is a space-separated string (Auth0, Keycloak, Cognito); ``scp`` is a string (Entra ID) or a list
    (Okta), which API Gateway hands over as "[a b]". Cognito names a custom scope ``<resource server>/<scope>``:
    ``prefix`` is this deployment's own resource server with its "/", taken off only where it matches exactly, so
    a scope of another resource server, or one that merely ends in a Sluice scope's name, grants nothing here.
    """
    words = [*context_scopes, *_claim_words(claims.get("scope")), *_claim_words(claims.get("scp"))]
    bare = (word.removeprefix(prefix) for word in words if prefix and word.startswith(prefix))
    return frozenset(words) | frozenset(bare)


def _claim_words(value: object) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    text = str(value or "").strip()
    # API Gateway renders a list claim as "[a b]"; a JSON array is taken too, should it ever pass one as such.
    if text.startswith("[") and text.endswith("]"):
        try:
            items = json.loads(text)
        except ValueError:
            text = text[1:-1]
        else:
            return [str(item) for item in items] if isinstance(items, list) else []
    return text.split()
