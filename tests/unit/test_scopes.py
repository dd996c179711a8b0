"""A token's scopes as each identity provider writes them, read the way the API functions read them.

The claims below are those of real access tokens of each provider (identifiers made up), passed through the local
twin's rendering of API Gateway's request context: every claim a string, a list as "[a b]".
"""

from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from sluice.adapters.http import granted_scopes, require_scope
from sluice.errors import ForbiddenError
from sluice.settings import ScopeSettings, get_scope_settings
from sluice_tools.local.auth import claim_text

from ..lambdas import load_event

COGNITO_PREFIX = "sluice/"

# Cognito, client credentials (a device): no aud, client_id instead; custom scopes carry the resource server.
COGNITO_DEVICE = {
    "sub": "5ksqe0s7fc4r1p2d7tgm8dn0kq",
    "token_use": "access",
    "scope": "sluice/ingest:write sluice/jobs:read",
    "auth_time": 1764928800,
    "iss": "https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_Ab12Cd34E",
    "exp": 1764932400,
    "iat": 1764928800,
    "version": 2,
    "jti": "1f0d9c1e-3b0a-4f43-9f55-0c6f6e0a8d11",
    "client_id": "5ksqe0s7fc4r1p2d7tgm8dn0kq",
    "tenant_id": "acme",
}
# Cognito, authorization code (a person): OpenID scopes beside the custom ones.
COGNITO_PERSON = {
    "sub": "a3f4b2c1-0d9e-4f8a-b7c6-d5e4f3a2b1c0",
    "cognito:groups": ["reviewers"],
    "iss": "https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_Ab12Cd34E",
    "version": 2,
    "client_id": "7d2b9qk1m3o5p7r9t1v3x5z7b9",
    "origin_jti": "8a4c2e1f-6b7d-4c3e-9a1b-2d3f4e5a6b7c",
    "token_use": "access",
    "scope": "openid email sluice/jobs:read sluice/quarantine:read sluice/quarantine:review",
    "auth_time": 1764928800,
    "exp": 1764932400,
    "iat": 1764928800,
    "jti": "0b9f7e5d-3c1a-4e2f-8d6b-4a2c0e8f6d4b",
    "username": "anna",
    "tenant_id": "acme",
}
AUTH0 = {
    "iss": "https://sluice-example.eu.auth0.com/",
    "sub": "Xk9s2LmQ7pR4tV6wY8zA1bC3dE5fG7hJ@clients",
    "aud": "https://api.sluice.example.com",
    "iat": 1764928800,
    "exp": 1765015200,
    "scope": "ingest:write jobs:read",
    "gty": "client-credentials",
    "azp": "Xk9s2LmQ7pR4tV6wY8zA1bC3dE5fG7hJ",
    "https://sluice.example.com/tenant_id": "acme",
}
KEYCLOAK = {
    "exp": 1764929100,
    "iat": 1764928800,
    "jti": "onrtac:7c1e4f2a-9b3d-4e5f-a6b7-c8d9e0f1a2b3",
    "iss": "https://keycloak.example.com/realms/sluice",
    "aud": "sluice-api",
    "sub": "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9",
    "typ": "Bearer",
    "azp": "sluice-console",
    "realm_access": {"roles": ["default-roles-sluice"]},
    "scope": "openid profile email quarantine:read quarantine:review",
    "preferred_username": "anna",
    "tenant_id": "acme",
}
ENTRA_ID = {
    "aud": "6e74172b-be56-4843-9ff4-e66a39bb12e3",
    "iss": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
    "iat": 1764928800,
    "nbf": 1764928800,
    "exp": 1764932700,
    "name": "Anna Example",
    "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
    "scp": "jobs:read systems:read",
    "sub": "MF4f-ggWMEji12KynJUNQZphaUTvLcQug5jdF2nl01Q",
    "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "ver": "2.0",
    "tenant_id": "acme",
}
OKTA = {
    "ver": 1,
    "jti": "AT.0mP4JKAaOK5dDXmHPc-3GFyw9aQJeWQHdWdRWexoVh8",
    "iss": "https://dev-123456.okta.com/oauth2/default",
    "aud": "api://sluice",
    "iat": 1764928800,
    "exp": 1764932400,
    "cid": "0oa1b2c3d4e5f6g7h8i9",
    "uid": "00u1a2b3c4d5e6f7g8h9",
    "scp": ["ingest:write", "jobs:read"],
    "sub": "anna@example.com",
    "tenant_id": "acme",
}


def as_passed(claims: dict[str, Any]) -> dict[str, str]:
    """The claims as API Gateway's JWT authorizer puts them in the request context: each one text."""
    return {name: claim_text(value) for name, value in claims.items()}


@pytest.mark.parametrize(
    ("claims", "prefix", "expected"),
    [
        (COGNITO_DEVICE, COGNITO_PREFIX, {"ingest:write", "jobs:read"}),
        (COGNITO_PERSON, COGNITO_PREFIX, {"jobs:read", "quarantine:read", "quarantine:review"}),
        (AUTH0, "", {"ingest:write", "jobs:read"}),
        (KEYCLOAK, "", {"quarantine:read", "quarantine:review"}),
        (ENTRA_ID, "", {"jobs:read", "systems:read"}),
        (OKTA, "", {"ingest:write", "jobs:read"}),
    ],
    ids=["cognito-device", "cognito-person", "auth0", "keycloak", "entra-id", "okta"],
)
def test_each_providers_access_token_grants_its_sluice_scopes(
    claims: dict[str, Any], prefix: str, expected: set[str]
) -> None:
    sluice_scopes = {"ingest:write", "jobs:read", "quarantine:read", "quarantine:review", "systems:read", "ops:read"}

    granted = granted_scopes(as_passed(claims), (), prefix)

    assert granted & sluice_scopes == expected


def test_a_list_claim_is_read_as_a_list_however_it_arrives() -> None:
    passed_as_text = granted_scopes({"scp": "[ingest:write jobs:read]"}, ())
    passed_as_json = granted_scopes({"scp": '["ingest:write","jobs:read"]'}, ())
    passed_as_list = granted_scopes({"scp": ["ingest:write", "jobs:read"]}, ())

    assert passed_as_text == passed_as_json == passed_as_list == {"ingest:write", "jobs:read"}


def test_the_request_contexts_own_scopes_count_too() -> None:
    assert granted_scopes({}, ["sluice/jobs:read"], COGNITO_PREFIX) >= {"jobs:read"}


@pytest.mark.parametrize(
    "scope",
    [
        "other/ingest:write",  # another resource server of the same pool
        "sluice-test/ingest:write",  # a resource server whose name starts like this one's
        "xsluice/ingest:write",
        "sluice/sluice/ingest:write",
        "sluiceingest:write",
        "https://sluice.example.com/ingest:write",
        "notingest:write",  # ends with a Sluice scope's name
        "ingest:writer",
        "INGEST:WRITE",
    ],
)
def test_only_this_deployments_prefix_is_taken_off_and_only_exactly(scope: str) -> None:
    assert "ingest:write" not in granted_scopes({"scope": scope}, (), COGNITO_PREFIX)


def test_without_a_configured_prefix_a_cognito_scope_grants_nothing() -> None:
    # The same token under a deployment that trusts another provider: its prefixed scopes are not Sluice's.
    assert "ingest:write" not in granted_scopes(as_passed(COGNITO_DEVICE), (), "")


@pytest.fixture
def scope_prefix(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SLUICE_SCOPE_PREFIX", COGNITO_PREFIX)
    get_scope_settings.cache_clear()
    yield
    monkeypatch.delenv("SLUICE_SCOPE_PREFIX")
    get_scope_settings.cache_clear()


def event_with(claims: dict[str, Any]) -> APIGatewayProxyEventV2:
    event = load_event("job-status-list.json")
    event["requestContext"]["authorizer"]["jwt"] = {"claims": as_passed(claims), "scopes": None}
    return APIGatewayProxyEventV2(event)


@pytest.mark.usefixtures("scope_prefix")
def test_a_function_takes_the_prefix_from_its_environment() -> None:
    assert require_scope(event_with(COGNITO_DEVICE), "ingest:write") >= {"ingest:write", "sluice/ingest:write"}
    with pytest.raises(ForbiddenError):
        require_scope(event_with(COGNITO_DEVICE), "quarantine:review")


def test_a_prefix_that_is_not_a_resource_server_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_SCOPE_PREFIX", "sluice")  # no "/": it would strip "sluice" off "sluiceingest:write"

    with pytest.raises(ValueError, match="scope_prefix"):
        ScopeSettings()
