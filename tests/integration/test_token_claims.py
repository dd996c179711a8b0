"""TokenClaimsFunction, Cognito's pre token generation trigger, with template.yaml's device clients table in moto
(the stack rendered with CognitoUserPool on): Cognito's own V3_0 and V2_0 event shapes from events/, the tenant
claim it writes into access tokens, and every token it refuses."""

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from moto import mock_aws

from sluice.adapters.aws import dynamodb_client, forget_clients, s3_client, sqs_client
from sluice.errors import StorageUnavailableError, TokenRefusedError
from sluice.settings import get_token_claims_settings
from sluice_tools.local.resources import provision_stack
from sluice_tools.local.template import StackContext, function_environment

from ..conftest import AWS_REGION
from ..lambdas import FakeLambdaContext, handler_module, load_event, template

DEVICE_CLIENT = "5ksqe0s7fc4r1p2d7tgm8dn0kq"  # events/token-claims-device.json
PEOPLE_CLIENT = "7d2b9qk1m3o5p7r9t1v3x5z7b9"  # events/token-claims-person.json


class Trigger:
    """The handler, the device mapping it reads, and a way to ask it for a token's claims."""

    def __init__(self, module: ModuleType, table: str) -> None:
        self.module = module
        self.table = table

    def map_client(self, client_id: str, tenant: str) -> None:
        """What the operator does for a new device client (docs/deploy.md)."""
        dynamodb_client().put_item(
            TableName=self.table, Item={"client_id": {"S": client_id}, "tenant_id": {"S": tenant}}
        )

    def unmap_client(self, client_id: str) -> None:
        dynamodb_client().delete_item(TableName=self.table, Key={"client_id": {"S": client_id}})

    def issue(self, event: dict[str, Any]) -> dict[str, Any]:
        """The claims the trigger adds to the access token; raises when it refuses the token."""
        answer: dict[str, Any] = self.module.lambda_handler(event, FakeLambdaContext())
        overrides = answer["response"]["claimsAndScopeOverrideDetails"]
        assert set(overrides) == {"accessTokenGeneration"}
        claims: dict[str, Any] = overrides["accessTokenGeneration"]["claimsToAddOrOverride"]
        return claims


def stack_with_pool(monkeypatch: pytest.MonkeyPatch, parameters: dict[str, str]) -> Iterator[Trigger]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        forget_clients()
        context = StackContext(
            template(),
            stack_name="sluice-test",
            region=AWS_REGION,
            parameter_overrides={"CognitoUserPool": "true", **parameters},
        )
        provision_stack(context, s3_client(), sqs_client(), dynamodb_client())
        for name, value in function_environment(context, "TokenClaimsFunction").items():
            monkeypatch.setenv(name, value)
        get_token_claims_settings.cache_clear()
        yield Trigger(handler_module("TokenClaimsFunction"), context.ref("DeviceClientsTable"))
    get_token_claims_settings.cache_clear()
    forget_clients()


@pytest.fixture
def trigger(monkeypatch: pytest.MonkeyPatch) -> Iterator[Trigger]:
    """TokenClaimsFunction with the environment the template gives it when the pool is on, imported cold."""
    yield from stack_with_pool(monkeypatch, {})


def test_a_mapped_device_gets_its_tenant_in_the_access_token(trigger: Trigger) -> None:
    trigger.map_client(DEVICE_CLIENT, "acme")

    claims = trigger.issue(load_event("token-claims-device.json"))

    assert claims == {"tenant_id": "acme"}


def test_the_answer_is_the_event_with_its_response(trigger: Trigger) -> None:
    trigger.map_client(DEVICE_CLIENT, "acme")
    event = load_event("token-claims-device.json")

    answer = trigger.module.lambda_handler(event, FakeLambdaContext())

    # Cognito reads the response back from the event it sent; the rest goes back as it came.
    assert {key: value for key, value in answer.items() if key != "response"} == {
        key: value for key, value in event.items() if key != "response"
    }


def test_a_device_client_nobody_mapped_gets_no_token(trigger: Trigger) -> None:
    with pytest.raises(TokenRefusedError, match=f"app client {DEVICE_CLIENT} is mapped to no tenant"):
        trigger.issue(load_event("token-claims-device.json"))


def test_a_device_cannot_choose_its_tenant(trigger: Trigger) -> None:
    trigger.map_client(DEVICE_CLIENT, "acme")
    event = load_event("token-claims-device.json")
    # The token request's aws_client_metadata and the scopes it asks for are the caller's to choose.
    event["request"]["clientMetadata"] = {"tenant_id": "globex", "custom:tenant_id": "globex"}
    event["request"]["userAttributes"] = {"custom:tenant_id": "globex"}
    event["request"]["scopes"] = ["globex/ingest:write"]

    assert trigger.issue(event) == {"tenant_id": "acme"}


def test_an_unmapped_client_is_refused_from_its_next_token_on(trigger: Trigger) -> None:
    trigger.map_client(DEVICE_CLIENT, "acme")
    trigger.issue(load_event("token-claims-device.json"))

    trigger.unmap_client(DEVICE_CLIENT)

    with pytest.raises(TokenRefusedError):
        trigger.issue(load_event("token-claims-device.json"))


@pytest.mark.parametrize("version", ["3", "2"])
def test_a_person_gets_the_tenant_an_administrator_set(trigger: Trigger, version: str) -> None:
    event = load_event("token-claims-person.json")
    event["version"] = version  # a V2_0 trigger's event has the same shape

    assert trigger.issue(event) == {"tenant_id": "demo"}


@pytest.mark.parametrize(
    "trigger_source",
    [
        "TokenGeneration_HostedAuth",
        "TokenGeneration_Authentication",
        "TokenGeneration_NewPasswordChallenge",
        "TokenGeneration_AuthenticateDevice",
        "TokenGeneration_RefreshTokens",
    ],
)
def test_a_person_is_read_from_the_attribute_whichever_way_they_signed_in(
    trigger: Trigger, trigger_source: str
) -> None:
    # Even through a client the operator also mapped to a tenant: a person's tenant is their own attribute.
    trigger.map_client(PEOPLE_CLIENT, "globex")
    event = load_event("token-claims-person.json")
    event["triggerSource"] = trigger_source

    assert trigger.issue(event) == {"tenant_id": "demo"}


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({}, "the user has no custom:tenant_id attribute"),
        ({"custom:tenant_id": ""}, "the user has no custom:tenant_id attribute"),
        # A standard attribute a user may write themselves is not the administrator's custom attribute.
        ({"tenant_id": "acme", "custom:tenant": "acme"}, "the user has no custom:tenant_id attribute"),
        ({"custom:tenant_id": "../acme"}, "not a usable tenant id"),
        ({"custom:tenant_id": "acme corp"}, "not a usable tenant id"),
    ],
    ids=["none", "empty", "other attributes", "a path", "a space"],
)
def test_a_person_without_a_usable_tenant_gets_no_token(
    trigger: Trigger, attributes: dict[str, str], reason: str
) -> None:
    event = load_event("token-claims-person.json")
    event["request"]["userAttributes"] = {"sub": "a3f4b2c1-0d9e-4f8a-b7c6-d5e4f3a2b1c0", **attributes}

    with pytest.raises(TokenRefusedError, match=reason):
        trigger.issue(event)


def test_a_mapped_tenant_that_is_not_a_tenant_id_is_refused(trigger: Trigger) -> None:
    trigger.map_client(DEVICE_CLIENT, "acme/../globex")

    with pytest.raises(TokenRefusedError, match="not a usable tenant id"):
        trigger.issue(load_event("token-claims-device.json"))


def test_the_claim_is_the_one_the_api_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    for trigger in stack_with_pool(monkeypatch, {"TenantClaim": "org"}):
        trigger.map_client(DEVICE_CLIENT, "acme")

        assert trigger.issue(load_event("token-claims-device.json")) == {"org": "acme"}
        assert trigger.issue(load_event("token-claims-person.json")) == {"org": "demo"}


def test_a_mapping_that_cannot_be_read_issues_no_token(trigger: Trigger) -> None:
    dynamodb_client().delete_table(TableName=trigger.table)

    with pytest.raises(StorageUnavailableError):
        trigger.issue(load_event("token-claims-device.json"))
