"""Calling the HTTP functions in-process the way API Gateway does: a payload 2.0 event built from events/, with
verified claims in the request context, and the answer read back."""

import json
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .lambdas import FakeLambdaContext, load_event

TENANT = "demo"
OTHER_TENANT = "other"


@dataclass
class Answer:
    """A function's HTTP answer: status, headers and the decoded JSON body."""

    status: int
    headers: dict[str, str]
    body: Any

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.body["error"]
        return error


def claims(scopes: str, tenant: str | None = TENANT, sub: str = "operator-anna") -> dict[str, str]:
    """Verified JWT claims as API Gateway's authorizer passes them (strings)."""
    found = {"sub": sub, "scope": scopes, "iss": "https://auth.example.com/", "aud": "sluice-api"}
    return found | ({"tenant_id": tenant} if tenant is not None else {})


def call(
    module: ModuleType,
    method: str,
    path: str,
    *,
    verified: dict[str, str] | None,
    query: dict[str, str] | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """Invoke ``module``'s handler with an event for ``method path``; ``verified=None`` sends no claims."""
    event = load_event("job-status-list.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
    event["queryStringParameters"] = query
    event["rawQueryString"] = "&".join(f"{name}={value}" for name, value in (query or {}).items())
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
        event["headers"]["content-type"] = "application/json"
    event["headers"] |= headers or {}
    jwt = event["requestContext"]["authorizer"]["jwt"]
    jwt["claims"], jwt["scopes"] = verified or {}, None
    result = module.lambda_handler(event, FakeLambdaContext())
    # A 204 has no body.
    body = json.loads(result["body"]) if result.get("body") else None
    return Answer(result["statusCode"], result.get("headers") or {}, body)
