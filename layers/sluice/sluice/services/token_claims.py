"""TokenClaimsFunction's wiring: settings -> the device clients table."""

from dataclasses import dataclass

from sluice.adapters.device_clients import DynamoDeviceClients
from sluice.domain.token_claims import DeviceClients
from sluice.settings import TokenClaimsSettings, get_token_claims_settings


@dataclass(frozen=True, slots=True)
class TokenClaimsService:
    """What the trigger needs, built once per execution environment."""

    clients: DeviceClients
    tenant_claim: str
    tenant_attribute: str


def build_token_claims_service(settings: TokenClaimsSettings) -> TokenClaimsService:
    """The DynamoDB-backed device mapping of TokenClaimsFunction."""
    return TokenClaimsService(
        clients=DynamoDeviceClients(settings.device_clients_table),
        tenant_claim=settings.tenant_claim,
        tenant_attribute=settings.tenant_attribute,
    )


def wire_token_claims_service() -> TokenClaimsService:
    """The service from the function's environment; each execution environment builds it once."""
    return build_token_claims_service(get_token_claims_settings())
