"""Every exception Sluice raises on purpose. Invalid readings are values, not exceptions.

Errors carry plain details (``Problem``); the HTTP adapter maps them to status codes and response bodies.
"""

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem with a request: where (field path, list index) and what."""

    field: str | None
    reason: str
    index: int | None = None


class SluiceError(Exception):
    """Base of Sluice's own errors."""


class MigrationError(SluiceError):
    """The migrations on disk and the versions recorded in the database cannot be reconciled."""


class MigrationFileError(MigrationError):
    """A migration file is missing, misnamed or unpaired."""


class MigrationChecksumError(MigrationError):
    """An applied migration's file has changed since it was applied."""


class SchemaBehindError(MigrationError):
    """The database's schema is older than the running code needs: the migrations have not been run."""


class StorageUnavailableError(SluiceError):
    """S3 or DynamoDB could not be reached or refused a write: a fault worth a retry, never the client's fault."""


class UnreadableObjectError(SluiceError):
    """A batch object that cannot be read at all (not gzip, not UTF-8, an unknown format, gone): its job fails with
    this message, and retrying would not help."""


class OutOfTimeError(SluiceError):
    """The invocation is about to time out: the message is retried and resumes after its last committed chunk."""


class TokenRefusedError(SluiceError):
    """Cognito must not issue this token: it would name no tenant, or one nobody gave its holder. The message
    reaches the client that asked for the token, so it names the reason and nothing of other tenants."""


class RequestError(SluiceError):
    """A request the API refuses; ``sluice.adapters.http`` maps each subclass to its status code."""

    code = "invalid_request"

    def __init__(self, message: str, details: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = tuple(details)


class InvalidRequestError(RequestError):
    """The body or a header is malformed (400)."""


class UnauthorizedError(RequestError):
    """No verified identity reached the function (401)."""

    code = "unauthorized"


class ForbiddenError(RequestError):
    """The identity lacks a tenant or the route's scope (403)."""

    code = "forbidden"


class NotFoundError(RequestError):
    """No such route, or nothing the caller's tenant may see (404)."""

    code = "not_found"


class PayloadTooLargeError(RequestError):
    """The body, sent or decompressed, is over the limit (413)."""

    code = "payload_too_large"


class UnsupportedMediaTypeError(RequestError):
    """The body is not JSON, or is encoded in a way the API does not read (415)."""

    code = "unsupported_media_type"


class IdempotencyKeyReusedError(RequestError):
    """An Idempotency-Key came back with a different body (422)."""

    code = "idempotency_key_reused"


class IdempotencyInProgressError(RequestError):
    """A request with the same Idempotency-Key is still being accepted (409)."""

    code = "idempotency_in_progress"


class RateLimitedError(RequestError):
    """The principal used up its requests for the window (429)."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotPendingError(RequestError):
    """A quarantined reading that was already reviewed cannot be reviewed again (409)."""

    code = "not_pending"


class DuplicateReadingError(RequestError):
    """A reviewed reading would repeat one already in ``readings`` (409)."""

    code = "duplicate_reading"


class ReadingInvalidError(RequestError):
    """A reading approved or fixed by a reviewer still breaks a rule (422); it stays pending."""

    code = "reading_invalid"


class NameTakenError(RequestError):
    """Another system of the tenant has the name (409)."""

    code = "name_taken"


class SystemIdTakenError(RequestError):
    """A system id that is registered already: under another tenant (never said whose), or under this tenant with
    another name (409)."""

    code = "system_id_taken"


class AlarmNotActiveError(RequestError):
    """An alarm that is cleared or already acknowledged cannot be acknowledged (409); the message says by whom and
    when."""

    code = "not_active"


class LimitReachedError(RequestError):
    """The tenant has as many alert rules or webhook subscriptions as a tenant may (409): delete one first."""

    code = "limit_reached"
