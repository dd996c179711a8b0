"""Idempotency-Key handling on Powertools' idempotency utility, persisted in DynamoDB.

Powertools gives the semantics a retrying device needs: the first request's result is remembered, a retry gets it
back, a retry with a different body is refused, a request still running blocks its twin, and a request that failed
is forgotten so its retry runs again.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.adapters.aws import dynamodb_client
from sluice.errors import IdempotencyInProgressError, IdempotencyKeyReusedError, Problem, StorageUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Part of every record's key: renaming it forgets every remembered request.
_KEY_PREFIX = "ingest"


class PowertoolsIdempotencyGuard:
    """Remembers (scope, key) -> result for ``ttl_s`` seconds in the idempotency table."""

    def __init__(self, table: str, ttl_s: int, client: "DynamoDBClient | None" = None) -> None:
        self._store = DynamoDBPersistenceLayer(table_name=table, boto3_client=client or dynamodb_client())
        self._config = IdempotencyConfig(
            event_key_jmespath="[scope, key]",
            payload_validation_jmespath="fingerprint",
            expires_after_seconds=ttl_s,
            hash_function="sha256",
        )

    def register_lambda_context(self, context: LambdaContext) -> None:
        """Let a request that dies with its invocation stop blocking retries when the invocation's time is up."""
        self._config.register_lambda_context(context)

    def run_once(self, scope: str, key: str, fingerprint: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``action`` once per (scope, key); see ``sluice.domain.ingest.IdempotencyGuard``."""

        @idempotent_function(
            data_keyword_argument="request",
            config=self._config,
            persistence_store=self._store,
            key_prefix=_KEY_PREFIX,
        )
        def run(request: dict[str, str]) -> dict[str, Any]:
            return action()

        try:
            result: dict[str, Any] = run(request={"scope": scope, "key": key, "fingerprint": fingerprint})
        except IdempotencyValidationError:
            raise IdempotencyKeyReusedError(
                "this Idempotency-Key was used for a different body; use a new key for a new batch",
                [Problem(field="Idempotency-Key", reason="already used with a different body")],
            ) from None
        except IdempotencyAlreadyInProgressError:
            raise IdempotencyInProgressError(
                "a request with this Idempotency-Key is still being accepted; retry shortly",
                [Problem(field="Idempotency-Key", reason="a request with this key is in progress")],
            ) from None
        except IdempotencyPersistenceLayerError as exc:
            raise StorageUnavailableError(f"the idempotency table could not be used: {exc}") from exc
        return result
