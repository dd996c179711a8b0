"""ConsoleFunction: GET /console/ and its files (no token): the operator console, static files that call the JSON
API with the signed-in person's token. It reads no data and holds no secret, so it has no authorizer; what a person
can see and do is what the API lets their token do.

``/console/config.json`` is the one answer built here: the sign-in provider's endpoints and client id from the
environment (template.yaml's Console* parameters, or the stack's Cognito pool). Without them the console signs in
with a token carried in the URL's fragment only (``sluice console`` locally).

No Tracer: a first load asks for a dozen files at once, and each new execution environment's cold start is what a
person waits for; the X-Ray SDK would double it, to trace a function that reads only its own package."""

import base64
import gzip
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.settings import ConsoleSettings

logger = Logger()

STATIC = Path(__file__).parent / "static"
# HTTP APIs do not compress answers: the function does, for files worth it (the modules shrink about 3x).
GZIP_FROM_BYTES = 1024
PREFIX = "/console/"
# Text files only: the console has no images but an inline SVG icon.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One file as it is served: its bytes, type and entity tag."""

    body: bytes
    content_type: str
    etag: str


def file_names() -> frozenset[str]:
    """The console's files, by their path below static/ (a dozen: listed on each request, so a file added under
    `make run` is served at once)."""
    return frozenset(
        path.relative_to(STATIC).as_posix()
        for path in STATIC.rglob("*")
        if path.is_file() and path.suffix in CONTENT_TYPES
    )


def asset(name: str) -> Asset | None:
    """The file ``name`` below static/, or None. A name is looked up among the files, never handed to the file
    system as it came (a request's path can be anything: "..", a NUL, a name too long for it). Read on each
    request (a few kilobytes, from the package's own disk) rather than kept: an edit shows on the next reload."""
    if name not in file_names():
        return None
    path = STATIC / name
    body = path.read_bytes()
    # The content's own tag: unchanged bytes are a 304 across deployments and execution environments.
    tag = hashlib.sha256(body).hexdigest()[:32]
    return Asset(body, CONTENT_TYPES[path.suffix], f'"{tag}"')


@cache
def settings() -> ConsoleSettings:
    """The function's settings, read once per execution environment."""
    return ConsoleSettings()


@cache
def sign_in_config() -> dict[str, Any]:
    """What the browser needs to sign a person in: OIDC authorization code with PKCE, or the local fragment."""
    config = settings()
    # The claim that names the tenant: the console keys what it keeps in the browser (a bulk review to resume) by it.
    if not config.has_provider:
        return {"mode": "fragment", "tenant_claim": config.tenant_claim}
    return {
        "mode": "oidc",
        "tenant_claim": config.tenant_claim,
        "authorization_endpoint": config.console_authorization_url,
        "token_endpoint": config.console_token_url,
        "client_id": config.console_client_id,
        "scope": config.console_scopes,
        "logout_endpoint": config.console_logout_url or None,
        "audience": config.console_audience or None,
    }


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def upload_origins(config: ConsoleSettings) -> list[str]:
    """Where the upload forms send the browser (sluice.adapters.aws.s3_form_client signs them): the bucket's
    endpoint, virtual-hosted, in AWS; the moto server's origin (path-style) locally."""
    if config.aws_endpoint_url:
        return [origin] if (origin := _origin(config.aws_endpoint_url)) else []
    regional = f"https://{config.batch_bucket}.s3.{config.aws_region}.amazonaws.com"
    if config.aws_region != "us-east-1":
        return [regional]
    # In us-east-1 botocore names the global endpoint (its s3 us_east_1_regional_endpoint default, "legacy"):
    # allowed too, so an upload page in that region is not blocked by its own policy.
    return [regional, f"https://{config.batch_bucket}.s3.amazonaws.com"]


@cache
def content_security_policy() -> str:
    """Scripts and styles of this origin only; fetches to the API (same origin), the bucket the upload forms name,
    and the provider's token endpoint. The page can be framed by nobody."""
    config = settings()
    connect = ["'self'", *upload_origins(config), _origin(config.console_token_url) if config.has_provider else None]
    sources = " ".join(source for source in connect if source)
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {sources}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def _response(status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {
            "Content-Type": content_type,
            # Revalidated on every load (an entity tag makes that a 304): a deployment shows at once.
            "Cache-Control": "no-cache",
            "Content-Security-Policy": content_security_policy(),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            **(headers or {}),
        },
        "body": body.decode(),
    }


def _refusal(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    # The API's error envelope, so a client reads every refusal of the stack the same way.
    body = json.dumps({"error": {"code": code, "message": message, "details": []}}).encode()
    return _response(status, body, "application/json", headers)


def _not_found() -> dict[str, Any]:
    return _refusal(404, "not_found", "no such file of the console")


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether the browser takes gzip (``Accept-Encoding: gzip, deflate, br``; not ``gzip;q=0``)."""
    for part in (accept_encoding or "").split(","):
        coding, _, weight = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return weight.replace(" ", "").lower() not in {"q=0", "q=0.0", "q=0.00", "q=0.000"}
    return False


@lru_cache(maxsize=32)
def _compressed(body: bytes) -> bytes:
    # Once per file content and execution environment, not per request; mtime=0: the same bytes every time.
    return gzip.compress(body, mtime=0)


def _gzipped(response: dict[str, Any], body: bytes) -> dict[str, Any]:
    response["body"] = base64.b64encode(_compressed(body)).decode()
    response["isBase64Encoded"] = True
    response["headers"]["Content-Encoding"] = "gzip"
    return response


def serve(path: str, if_none_match: str | None, accept_encoding: str | None = None) -> dict[str, Any]:
    """The answer to GET ``path`` (the request's raw path)."""
    if path == PREFIX.rstrip("/"):
        # Relative links in index.html resolve against /console/, not /.
        return _response(301, b"", "text/plain", {"Location": PREFIX})
    if not path.startswith(PREFIX):
        return _not_found()
    name = path.removeprefix(PREFIX) or "index.html"
    if name == "config.json":
        return _response(
            200, json.dumps(sign_in_config()).encode(), CONTENT_TYPES[".json"], {"Cache-Control": "no-store"}
        )
    found = asset(name)
    if found is None:
        return _not_found()
    compress = len(found.body) >= GZIP_FROM_BYTES and accepts_gzip(accept_encoding)
    # Each encoding is its own representation, with its own tag; Vary tells caches the answer depends on it.
    etag = f'{found.etag[:-1]}-gzip"' if compress else found.etag
    headers = {"ETag": etag, "Vary": "Accept-Encoding"}
    if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return _response(304, b"", found.content_type, headers)
    if name.endswith(".svg"):
        # The icon: Chromium asks for a page's icon again on every hash change; it may keep it a day.
        headers["Cache-Control"] = "max-age=86400"
    response = _response(200, b"" if compress else found.body, found.content_type, headers)
    return _gzipped(response, found.body) if compress else response


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    method = event.get("requestContext", {}).get("http", {}).get("method", "GET")
    if method not in {"GET", "HEAD"}:
        return _refusal(405, "method_not_allowed", "the console's files are read with GET", {"Allow": "GET, HEAD"})
    return serve(str(event.get("rawPath", "")), headers.get("if-none-match"), headers.get("accept-encoding"))
