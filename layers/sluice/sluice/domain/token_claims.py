"""Which tenant a token is for, decided before Amazon Cognito signs it (its pre token generation trigger).

A person's tenant is a user attribute only an administrator can set; a device's (an app client using the client
credentials grant) is the operator's mapping from its client id. Neither comes from anything the caller sends:
client metadata and the requested scopes are the caller's choice and are never read.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from sluice.errors import TokenRefusedError
from sluice.models.types import TenantId

# Cognito's trigger source for a machine-to-machine token (a V3_0 event); every other source signs in a person.
CLIENT_CREDENTIALS = "TokenGeneration_ClientCredentials"

_tenant_id = TypeAdapter[str](TenantId)


class DeviceClients(Protocol):
    """The operator's mapping of device app clients to tenants."""

    def tenant_of(self, client_id: str) -> str | None:
        """The tenant of the app client ``client_id``; None when it is not mapped."""
        ...


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What the trigger event says of the token to be issued."""

    client_id: str
    for_device: bool
    user_attributes: Mapping[str, str]

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> "TokenRequest":
        """The request of a V2_0 or V3_0 pre token generation event."""
        request = event.get("request") or {}
        return cls(
            client_id=str((event.get("callerContext") or {}).get("clientId") or ""),
            for_device=event.get("triggerSource") == CLIENT_CREDENTIALS,
            user_attributes={str(name): str(value) for name, value in (request.get("userAttributes") or {}).items()},
        )


def tenant_for(request: TokenRequest, *, tenant_attribute: str, clients: DeviceClients) -> str:
    """The tenant the token names; TokenRefusedError when there is none, or none usable."""
    if request.for_device:
        found = clients.tenant_of(request.client_id) if request.client_id else None
        where = f"the app client {request.client_id or '(none)'} is mapped to no tenant"
    else:
        found = request.user_attributes.get(tenant_attribute)
        where = f"the user has no {tenant_attribute} attribute"
    if not found:
        raise TokenRefusedError(f"no tenant: {where}; ask the operator")
    try:
        return _tenant_id.validate_python(found)
    except ValidationError:
        raise TokenRefusedError("no tenant: the one on record is not a usable tenant id; ask the operator") from None


def claims_response(event: Mapping[str, Any], tenant_claim: str, tenant: str) -> dict[str, Any]:
    """The event with its response: the tenant claim added to the access token (what the API reads) only."""
    response = {
        "claimsAndScopeOverrideDetails": {
            "accessTokenGeneration": {"claimsToAddOrOverride": {tenant_claim: tenant}},
        }
    }
    return {**event, "response": response}
