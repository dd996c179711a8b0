"""TokenClaimsFunction: Amazon Cognito's pre token generation trigger (V3_0 events, V2_0 alike). It writes the
tenant claim into every access token the user pool issues, from a person's administrator-set attribute or a
device client's mapping, and refuses the token when there is no tenant: Cognito then issues none."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.domain.token_claims import TokenRequest, claims_response, tenant_for
from sluice.errors import StorageUnavailableError, TokenRefusedError
from sluice.services import per_environment
from sluice.services.token_claims import TokenClaimsService, wire_token_claims_service

logger = Logger()
tracer = Tracer()
metrics = Metrics()


# The device clients table's client: built once per execution environment (at init in Lambda).
get_service = per_environment(wire_token_claims_service)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: TokenClaimsService | None = None
) -> dict[str, Any]:
    service = service or get_service()
    request = TokenRequest.from_event(event)
    kind = "device" if request.for_device else "person"
    try:
        tenant = tenant_for(request, tenant_attribute=service.tenant_attribute, clients=service.clients)
    except TokenRefusedError as exc:
        # Raising is how a trigger refuses: Cognito answers the sign-in or token request with an error.
        logger.warning("token refused", kind=kind, client_id=request.client_id, reason=str(exc))
        metrics.add_metric(name="RefusedTokens", unit=MetricUnit.Count, value=1)
        raise
    except StorageUnavailableError:
        # Cognito does not retry a trigger: this sign-in fails, and the caller may ask again.
        logger.exception("device mapping unreadable", client_id=request.client_id)
        metrics.add_metric(name="StorageFailures", unit=MetricUnit.Count, value=1)
        raise
    logger.info("token claims set", kind=kind, client_id=request.client_id, tenant_id=tenant)
    metrics.add_metric(name="IssuedTokens", unit=MetricUnit.Count, value=1)
    return claims_response(event, service.tenant_claim, tenant)
