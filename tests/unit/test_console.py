"""ConsoleFunction: the console's files as the HTTP API serves them (what a browser does with them is
tests/browser's)."""

import base64
import gzip
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from openapi_schema_validator import OAS31Validator

from sluice.adapters import aws
from sluice_tools.cli import ALL_SCOPES

from ..lambdas import FakeLambdaContext, handler_module, load_event, template
from ..paths import REPO_ROOT

STATIC = REPO_ROOT / "functions" / "console" / "static"
BUCKET = "sluice-batches-123456789012-eu-central-1"
# Every import of a module by another: `from "./x.js"` and `import("./pages/x.js")`.
IMPORT = re.compile(r"""(?:from\s+|import\s*\(\s*)["'](\.{1,2}/[^"']+)["']""")


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """As template.yaml gives the function in AWS without a provider: no endpoint override, no sign-in settings."""
    for name in (
        "SLUICE_AWS_ENDPOINT_URL",
        "SLUICE_CONSOLE_AUTHORIZATION_URL",
        "SLUICE_CONSOLE_TOKEN_URL",
        "SLUICE_CONSOLE_AUDIENCE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLUICE_BATCH_BUCKET", BUCKET)
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.delenv("SLUICE_TENANT_CLAIM", raising=False)


def get(path: str, headers: dict[str, str] | None = None, method: str = "GET") -> dict[str, Any]:
    event = load_event("console-get.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["headers"].update(headers or {})
    result: dict[str, Any] = handler_module("ConsoleFunction").lambda_handler(event, FakeLambdaContext())
    return result


def spec_schema(name: str) -> dict[str, Any]:
    spec = yaml.safe_load((REPO_ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
    schema: dict[str, Any] = spec["components"]["schemas"][name]
    return schema


def test_the_address_without_its_slash_redirects_to_the_console() -> None:
    answer = get("/console")

    assert answer["statusCode"] == 301
    assert answer["headers"]["Location"] == "/console/"


def test_the_page_is_html_that_loads_its_module_under_a_strict_policy() -> None:
    answer = get("/console/")

    assert answer["statusCode"] == 200
    assert answer["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="js/main.js"></script>' in answer["body"]
    policy = answer["headers"]["Content-Security-Policy"]
    assert "script-src 'self';" in policy
    assert "unsafe" not in policy
    assert "frame-ancestors 'none'" in policy
    # The upload forms' bucket, as the form signer names it: regional and virtual-hosted.
    assert f"connect-src 'self' https://{BUCKET}.s3.eu-central-1.amazonaws.com;" in policy
    assert answer["headers"]["X-Content-Type-Options"] == "nosniff"


def referenced_files(path: Path) -> set[Path]:
    """The files a page or module loads, relative to static/."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".html":
        found = re.findall(r'(?:src|href)="([^"#:]+)"', text)
        return {(path.parent / name).resolve() for name in found}
    return {(path.parent / name).resolve() for name in IMPORT.findall(text)}


def test_every_file_the_page_loads_is_served_with_its_type() -> None:
    # Walk the page's imports: a module missing from the function's package would break the console in AWS only.
    seen: set[Path] = set()
    todo = {(STATIC / "index.html").resolve()}
    while todo:
        path = todo.pop()
        seen.add(path)
        todo |= referenced_files(path) - seen
    for path in seen:
        name = path.relative_to(STATIC.resolve()).as_posix()
        answer = get(f"/console/{name}")
        assert answer["statusCode"] == 200, name
        assert answer["headers"]["Content-Type"].split(";")[0] in {
            "text/html",
            "text/javascript",
            "text/css",
            "image/svg+xml",
        }
    assert {path.name for path in seen} >= {
        "main.js",
        "jobs.js",
        "quarantine.js",
        "systems.js",
        "upload.js",
        "alarms.js",
        "webhooks.js",
    }


def test_an_unchanged_file_is_a_304_by_its_entity_tag() -> None:
    first = get("/console/js/main.js")

    again = get("/console/js/main.js", {"if-none-match": first["headers"]["ETag"]})
    other = get("/console/js/main.js", {"if-none-match": '"something-else"'})

    assert again["statusCode"] == 304
    assert again["body"] == ""
    assert other["statusCode"] == 200
    assert first["headers"]["Cache-Control"] == "no-cache"
    assert get("/console/icon.svg")["headers"]["Cache-Control"] == "max-age=86400"


@pytest.mark.parametrize(
    "path",
    [
        "/console/nothing.js",
        "/console/../app.py",
        "/console/app.py",
        "/console/js/main.js/",
        "/console/js//main.js",
        "/consoles",
        # What a path can carry that a file name cannot (schemathesis found the first one): never a 500.
        "/console/" + "%E0%A4%AA" * 200,
        "/console/a\x00b.js",
    ],
)
def test_anything_else_is_not_found_in_the_apis_error_form(path: str) -> None:
    answer = get(path)

    assert answer["statusCode"] == 404
    assert json.loads(answer["body"])["error"]["code"] == "not_found"


def test_only_reads_are_served() -> None:
    answer = get("/console/", method="POST")

    assert answer["statusCode"] == 405
    assert answer["headers"]["Allow"] == "GET, HEAD"


def test_without_a_provider_the_console_signs_in_through_the_fragment() -> None:
    answer = get("/console/config.json")

    config = json.loads(answer["body"])
    assert config == {"mode": "fragment", "tenant_claim": "tenant_id"}
    assert answer["headers"]["Cache-Control"] == "no-store"
    OAS31Validator(spec_schema("ConsoleConfig")).validate(config)


def test_with_a_provider_the_console_signs_in_with_code_and_pkce_and_may_call_its_token_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLUICE_CONSOLE_AUTHORIZATION_URL", "https://login.example.com/oauth2/authorize")
    monkeypatch.setenv("SLUICE_CONSOLE_TOKEN_URL", "https://login.example.com/oauth2/token")
    monkeypatch.setenv("SLUICE_CONSOLE_CLIENT_ID", "console-client")
    monkeypatch.setenv("SLUICE_CONSOLE_SCOPES", "openid jobs:read")

    answer = get("/console/config.json")

    config = json.loads(answer["body"])
    assert config == {
        "mode": "oidc",
        "tenant_claim": "tenant_id",
        "authorization_endpoint": "https://login.example.com/oauth2/authorize",
        "token_endpoint": "https://login.example.com/oauth2/token",
        "client_id": "console-client",
        "scope": "openid jobs:read",
        "logout_endpoint": None,
        "audience": None,
    }
    OAS31Validator(spec_schema("ConsoleConfig")).validate(config)
    assert "https://login.example.com;" in answer["headers"]["Content-Security-Policy"]


def test_locally_the_forms_name_the_moto_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_AWS_ENDPOINT_URL", "http://127.0.0.1:4566")

    policy = get("/console/")["headers"]["Content-Security-Policy"]

    assert "connect-src 'self' http://127.0.0.1:4566;" in policy


@pytest.mark.parametrize(
    ("region", "endpoint"),
    [("eu-central-1", None), ("us-east-1", None), ("us-west-2", None), ("eu-central-1", "http://127.0.0.1:4566")],
)
def test_the_policy_lets_the_page_post_to_the_url_the_form_signer_names(
    monkeypatch: pytest.MonkeyPatch, region: str, endpoint: str | None
) -> None:
    # Given the form signer of that region (or of the local endpoint): signing is computation, no request is made
    monkeypatch.setenv("AWS_REGION", region)
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    if endpoint:
        monkeypatch.setenv("SLUICE_AWS_ENDPOINT_URL", endpoint)
    aws.forget_clients()
    try:
        url = aws.s3_form_client().generate_presigned_post(BUCKET, "drops/acme/uploads/x.csv")["url"]
    finally:
        aws.forget_clients()

    # When the console is served there
    policy = get("/console/")["headers"]["Content-Security-Policy"]

    # Then connect-src names the form URL's origin (us-east-1's forms name the global endpoint)
    connect = next(part for part in policy.split("; ") if part.startswith("connect-src ")).split()[1:]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" in connect, (url, connect)


def test_files_are_gzipped_for_a_browser_that_takes_it_each_encoding_with_its_own_tag() -> None:
    plain = get("/console/js/main.js")
    zipped = get("/console/js/main.js", {"accept-encoding": "gzip, deflate, br, zstd"})
    refused = get("/console/js/main.js", {"accept-encoding": "gzip;q=0, br"})
    icon = get("/console/icon.svg", {"accept-encoding": "gzip"})

    assert zipped["isBase64Encoded"] is True
    assert zipped["headers"]["Content-Encoding"] == "gzip"
    assert gzip.decompress(base64.b64decode(zipped["body"])).decode() == plain["body"]
    assert len(base64.b64decode(zipped["body"])) < len(plain["body"]) / 2
    assert zipped["headers"]["Vary"] == plain["headers"]["Vary"] == "Accept-Encoding"
    assert zipped["headers"]["ETag"] != plain["headers"]["ETag"]
    assert "Content-Encoding" not in refused["headers"]
    # Too small to be worth it.
    assert "Content-Encoding" not in icon["headers"]
    again = get("/console/js/main.js", {"accept-encoding": "gzip", "if-none-match": zipped["headers"]["ETag"]})
    assert again["statusCode"] == 304


def route_scopes() -> set[str]:
    """Every scope a route of the template takes, in its bare form (the Cognito forms sit under a condition)."""
    scopes: set[str] = set()
    for body in template()["Resources"].values():
        for event in body.get("Properties", {}).get("Events", {}).values():
            if event["Type"] == "HttpApi":
                named = event["Properties"].get("Auth", {}).get("AuthorizationScopes", [])
                scopes |= {scope for scope in named if isinstance(scope, str)}
    return scopes


def test_the_console_asks_for_every_scope_its_pages_need() -> None:
    # The Alarms and Webhooks pages read with alerts:read and acknowledge, create and delete with alerts:write.
    assert {"alerts:read", "alerts:write"} <= route_scopes()
    # With another provider (the parameter's default), and locally (`sluice console`): every scope of a route.
    default = template()["Parameters"]["ConsoleScopes"]["Default"]
    assert set(default.split()) == {"openid"} | route_scopes()
    assert set(ALL_SCOPES.split()) == route_scopes()
    # With the stack's pool: every scope the people's client allows (not ops:read), in Cognito's form.
    resources = template()["Resources"]
    chosen = resources["ConsoleFunction"]["Properties"]["Environment"]["Variables"]["SLUICE_CONSOLE_SCOPES"]
    condition, with_pool, without = chosen["Fn::If"]
    assert (condition, without) == ("UseCognito", {"Ref": "ConsoleScopes"})
    people = resources["PeopleClient"]["Properties"]["AllowedOAuthScopes"]
    assert set(with_pool.split()) == {"openid", "email"} | set(people)
    assert {"sluice/alerts:read", "sluice/alerts:write"} <= set(with_pool.split())
