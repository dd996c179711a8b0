"""The local JWT authorizer: a project key made once and kept, and tokens checked the way API Gateway checks them
(any failure 401 with a reason, a missing scope 403)."""

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt

from sluice_tools.local.auth import (
    JWKS_FILE,
    KEY_FILE,
    Forbidden,
    JwtAuthorizerConfig,
    SigningKey,
    Unauthorized,
    authorize,
    claim_text,
    jwt_authorizers,
    token_claims,
    token_scopes,
)
from sluice_tools.local.resources import plan_stack
from sluice_tools.local.template import StackContext, TemplateError

from ..lambdas import template

ISSUER = "https://auth.example.com/"
AUDIENCE = "sluice-api"
NOW = 1_700_000_000
CONFIG = JwtAuthorizerConfig("JwtAuthorizer", ISSUER, (AUDIENCE,), "authorization")


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return SigningKey.load_or_create(tmp_path_factory.mktemp("jwt"))


@pytest.fixture(scope="module")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return SigningKey.load_or_create(tmp_path_factory.mktemp("other-jwt"))


def claims(**changes: Any) -> dict[str, Any]:
    """A valid token's claims at NOW; a change of None drops the claim."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "dev",
        "tenant_id": "acme",
        "scope": "jobs:read",
        "iat": NOW - 10,
        "exp": NOW + 300,
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def check(key: SigningKey, authorization: str, route_scopes: tuple[str, ...] = ()) -> tuple[dict[str, str], list[str]]:
    return authorize(CONFIG, key, {"authorization": authorization}, route_scopes, now=NOW)


# --- the key -------------------------------------------------------------------------------------------------------


def test_the_key_is_made_once_readable_by_its_owner_and_published(tmp_path: Path) -> None:
    directory = tmp_path / ".local"

    first = SigningKey.load_or_create(directory)
    second = SigningKey.load_or_create(directory)

    assert stat.S_IMODE((directory / KEY_FILE).stat().st_mode) == 0o600
    assert second.kid == first.kid
    assert not list(directory.glob("*.tmp"))
    jwks = json.loads((directory / JWKS_FILE).read_text(encoding="utf-8"))
    (public,) = jwks["keys"]
    assert (public["kid"], public["alg"], public["use"], public["kty"]) == (first.kid, "RS256", "sig", "RSA")
    assert "d" not in public  # the public half only
    # A token the first key minted verifies with the key loaded again.
    assert check(second, f"Bearer {first.mint(claims())}")[0]["sub"] == "dev"


def test_token_claims_are_what_an_identity_provider_would_issue() -> None:
    assert token_claims(
        CONFIG, tenant_claim="tenant_id", tenant="acme", subject="dev", scope="jobs:read", lifetime_s=60, now=NOW
    ) == {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "dev",
        "tenant_id": "acme",
        "scope": "jobs:read",
        "iat": NOW,
        "exp": NOW + 60,
    }


# --- the template's authorizer -----------------------------------------------------------------------------------


def test_the_template_declares_one_jwt_authorizer() -> None:
    context = plan_stack(StackContext(template(), stack_name="sluice-test", region="eu-central-1"), None)

    assert jwt_authorizers(context, "HttpApi") == {"JwtAuthorizer": CONFIG}


def api_template(authorizer: dict[str, Any]) -> StackContext:
    api = {"Type": "AWS::Serverless::HttpApi", "Properties": {"Auth": {"Authorizers": {"Custom": authorizer}}}}
    return StackContext({"Resources": {"Api": api}}, stack_name="s", region="eu-central-1")


@pytest.mark.parametrize(
    "authorizer",
    [
        {"FunctionArn": "arn:aws:lambda:eu-central-1:123456789012:function:auth"},
        {"IdentitySource": "$request.querystring.token", "JwtConfiguration": {"issuer": ISSUER, "audience": []}},
    ],
    ids=["lambda-authorizer", "query-identity-source"],
)
def test_authorizers_the_twin_cannot_run_are_refused(authorizer: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match="Custom"):
        jwt_authorizers(api_template(authorizer), "Api")


# --- accepted tokens ---------------------------------------------------------------------------------------------


def test_a_valid_token_gives_its_claims_as_text_and_its_scopes(key: SigningKey) -> None:
    found, scopes = check(key, f"Bearer {key.mint(claims(scope='jobs:read quarantine:read'))}", ("jobs:read",))

    assert found == {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "dev",
        "tenant_id": "acme",
        "scope": "jobs:read quarantine:read",
        "iat": str(NOW - 10),
        "exp": str(NOW + 300),
    }
    assert scopes == ["jobs:read", "quarantine:read"]


@pytest.mark.parametrize("prefix", ["Bearer ", "bearer ", "BEARER ", "Bearer   ", ""])
def test_the_bearer_prefix_is_optional(key: SigningKey, prefix: str) -> None:
    assert check(key, f"{prefix}{key.mint(claims())}")[0]["sub"] == "dev"


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": ["someone-else", AUDIENCE]},
        {"aud": None, "client_id": AUDIENCE},
        {"nbf": NOW},
        {"iat": None},
        {"exp": NOW + 0.5},
    ],
    ids=["aud-list", "client-id-without-aud", "nbf-now", "no-iat", "exp-float"],
)
def test_tokens_api_gateway_accepts(key: SigningKey, changes: dict[str, Any]) -> None:
    found, _ = check(key, key.mint(claims(**changes)))

    assert found["sub"] == "dev"


def test_the_identity_header_is_the_configured_one(key: SigningKey) -> None:
    config = JwtAuthorizerConfig("Other", ISSUER, (AUDIENCE,), "x-token")
    token = key.mint(claims())

    assert authorize(config, key, {"x-token": token}, (), now=NOW)[0]["sub"] == "dev"
    with pytest.raises(Unauthorized, match="no token"):
        authorize(config, key, {"authorization": f"Bearer {token}"}, (), now=NOW)


# --- refused tokens ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": NOW}, "expired"),
        ({"exp": NOW - 60}, "expired"),
        ({"exp": None}, "no exp"),
        ({"exp": "never"}, "expired"),
        ({"nbf": NOW + 60}, "nbf is in the future"),
        ({"iat": NOW + 60}, "iat is in the future"),
        ({"iat": "yesterday"}, "iat"),
        ({"iss": "https://evil.example/"}, f"issuer is not {ISSUER}"),
        ({"iss": None}, "issuer"),
        ({"aud": "someone-else"}, f"audience is not {AUDIENCE}"),
        ({"aud": ["a", "b"]}, "audience"),
        ({"aud": None}, "audience"),
        # client_id counts only when there is no aud.
        ({"aud": "someone-else", "client_id": AUDIENCE}, "audience"),
    ],
)
def test_tokens_with_bad_claims_are_401(key: SigningKey, changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason):
        check(key, f"Bearer {key.mint(claims(**changes))}")


def test_a_token_from_another_key_is_401(key: SigningKey, other_key: SigningKey) -> None:
    with pytest.raises(Unauthorized, match="cannot be verified"):
        check(key, f"Bearer {other_key.mint(claims())}")


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "RS256", "kid": "someone-elses-key"},
        {"alg": "RS256"},
    ],
    ids=["other-kid", "no-kid"],
)
def test_a_token_whose_kid_names_another_key_is_401(key: SigningKey, header: dict[str, str]) -> None:
    token = jwt.encode(header, claims(), key.key)

    with pytest.raises(Unauthorized, match="kid names no key"):
        check(key, token)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer garbage", "garbage", "a.b.c", "..", "Bearer", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJkZXYifQ."],
    ids=["bearer-garbage", "garbage", "three-parts", "empty-parts", "bearer-only", "alg-none"],
)
def test_tokens_that_cannot_be_verified_are_401(key: SigningKey, authorization: str) -> None:
    with pytest.raises(Unauthorized, match="cannot be verified"):
        check(key, authorization)


# Header values a sender can put in the token's own header: CR/LF to split a response header, text latin-1 cannot
# encode to break the answer, a quote to end the challenge's quoted-string.
HOSTILE_ALGS = ["RS256\r\nX-Injected: yes", "RS256\u2603", 'RS256" error="forged', "\x00"]


def with_alg(token: str, alg: str) -> str:
    """``token`` with its header's ``alg`` replaced, payload and signature kept."""
    header = base64.urlsafe_b64encode(json.dumps({"alg": alg, "typ": "JWT"}).encode()).decode().rstrip("=")
    return ".".join([header, *token.split(".")[1:]])


@pytest.mark.parametrize("alg", HOSTILE_ALGS, ids=["crlf", "non-latin-1", "quote", "nul"])
def test_a_hostile_alg_is_a_plain_401_that_does_not_repeat_it(key: SigningKey, alg: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        check(key, f"Bearer {with_alg(key.mint(claims()), alg)}")

    assert str(refused.value) == "the token cannot be verified: its form, algorithm or signature is not accepted"


@pytest.mark.parametrize("headers", [{}, {"authorization": ""}, {"authorization": "   "}])
def test_no_token_is_401(key: SigningKey, headers: dict[str, str]) -> None:
    with pytest.raises(Unauthorized, match="no token: send Authorization: Bearer <token>"):
        authorize(CONFIG, key, headers, (), now=NOW)


@pytest.mark.parametrize("audience", [{"name": AUDIENCE}, [{"name": AUDIENCE}]], ids=["object", "list-of-object"])
def test_an_audience_that_is_an_object_is_401(key: SigningKey, audience: Any) -> None:
    with pytest.raises(Unauthorized, match="audience"):
        check(key, key.mint(claims(aud=audience)))


# --- scopes ------------------------------------------------------------------------------------------------------


def test_a_token_without_any_route_scope_is_403(key: SigningKey) -> None:
    token = key.mint(claims(scope="jobs:read"))

    with pytest.raises(Forbidden, match="quarantine:read quarantine:review"):
        check(key, token, ("quarantine:read", "quarantine:review"))


def test_one_of_the_route_scopes_is_enough(key: SigningKey) -> None:
    token = key.mint(claims(scope="quarantine:review"))

    assert check(key, token, ("quarantine:read", "quarantine:review"))[1] == ["quarantine:review"]


def test_scopes_may_come_from_scp(key: SigningKey) -> None:
    token = key.mint(claims(scope=None, scp=["ingest:write", "jobs:read"]))

    found, scopes = check(key, token, ("ingest:write",))

    assert scopes == ["ingest:write", "jobs:read"]
    assert found["scp"] == "[ingest:write jobs:read]"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ({"scope": "a b  c"}, ["a", "b", "c"]),
        ({"scp": ["a", "b"]}, ["a", "b"]),
        ({"scp": "a b"}, ["a", "b"]),
        ({"scope": "a", "scp": ["b"]}, ["a"]),
        ({"scope": ""}, []),
        ({}, []),
    ],
)
def test_token_scopes(token: dict[str, Any], expected: list[str]) -> None:
    assert token_scopes(token) == expected


# --- claims as text ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("acme", "acme"),
        (["a", "b"], "[a b]"),
        ([], "[]"),
        ([1, True, "x"], "[1 true x]"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (1.5, "1.5"),
        ({"role": "admin", "level": 2}, '{"role":"admin","level":2}'),
    ],
)
def test_claim_text(value: Any, text: str) -> None:
    assert claim_text(value) == text
