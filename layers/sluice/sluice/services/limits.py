"""The per-principal budgets of the API functions: settings -> a DynamoDB limiter per budget."""

from sluice.adapters.dynamodb import DynamoRequestLimiter
from sluice.domain.ratelimit import (
    ALERTS_WRITE_BUDGET,
    INGEST_BUDGET,
    READ_BUDGET,
    REVIEW_BUDGET,
    REVIEWED_ROWS_BUDGET,
    REVIEWED_ROWS_WINDOW_S,
    SYSTEMS_WRITE_BUDGET,
    PrincipalBudget,
    RateLimit,
)
from sluice.settings import AlertsSettings, IngestApiSettings, QuarantineSettings, ReadLimitSettings, SystemsSettings


def ingest_budget(settings: IngestApiSettings) -> PrincipalBudget:
    """Ingest requests, apart from reads and reviews: a device out of requests may still be looked at."""
    limit = RateLimit(requests=settings.rate_limit_requests, window_s=settings.rate_limit_window_seconds)
    return PrincipalBudget(INGEST_BUDGET, DynamoRequestLimiter(settings.rate_limit_table, limit))


def read_budget(settings: ReadLimitSettings) -> PrincipalBudget:
    """Reads (GETs of jobs, quarantined rows, the deep health check): one budget per principal across them."""
    limit = RateLimit(requests=settings.read_rate_limit_requests, window_s=settings.rate_limit_window_seconds)
    return PrincipalBudget(READ_BUDGET, DynamoRequestLimiter(settings.rate_limit_table, limit))


def review_budget(settings: QuarantineSettings) -> PrincipalBudget:
    """Review requests (single and bulk), apart from reads: a principal out of reads may still review."""
    limit = RateLimit(requests=settings.review_rate_limit_requests, window_s=settings.rate_limit_window_seconds)
    return PrincipalBudget(REVIEW_BUDGET, DynamoRequestLimiter(settings.rate_limit_table, limit))


def reviewed_rows_budget(settings: QuarantineSettings) -> PrincipalBudget:
    """Rows reviewed per minute: each is a database transaction, and one bulk review asks for up to hundreds."""
    limit = RateLimit(requests=settings.review_rows_per_minute, window_s=REVIEWED_ROWS_WINDOW_S)
    return PrincipalBudget(REVIEWED_ROWS_BUDGET, DynamoRequestLimiter(settings.rate_limit_table, limit), unit="rows")


def systems_write_budget(settings: SystemsSettings) -> PrincipalBudget:
    """Registrations and renames, apart from reads: an import spending its writes leaves the console its reads."""
    limit = RateLimit(requests=settings.systems_write_rate_limit_requests, window_s=settings.rate_limit_window_seconds)
    return PrincipalBudget(SYSTEMS_WRITE_BUDGET, DynamoRequestLimiter(settings.rate_limit_table, limit))


def alerts_write_budget(settings: AlertsSettings) -> PrincipalBudget:
    """Changes to rules and subscriptions and acknowledgements, apart from reads: a script creating rules leaves the
    console its reads."""
    limit = RateLimit(requests=settings.alerts_write_rate_limit_requests, window_s=settings.rate_limit_window_seconds)
    return PrincipalBudget(ALERTS_WRITE_BUDGET, DynamoRequestLimiter(settings.rate_limit_table, limit))
