"""A sliding-log rate limit: at most N requests in any rolling window, counted per principal.

A fixed window (N per calendar minute) would let a client send 2N requests across a window boundary; the log of
the last N admitted requests is exact and small (N timestamps), so it is kept whole. A request may spend more than
one unit (a bulk review spends one per row): the log then keeps each request's amount, and still holds at most N
entries.

Each principal has one log per budget, so exhausting one (say, reads) leaves the others (ingest, reviews) whole.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sluice.errors import InvalidRequestError, Problem, RateLimitedError
from sluice.models.api import BulkReviewRequest

# The budgets of the rate-limit table, one log per principal each (``<budget>#<tenant>/<sub>``).
INGEST_BUDGET = "ingest"
READ_BUDGET = "read"
REVIEW_BUDGET = "review"
REVIEWED_ROWS_BUDGET = "review-rows"
SYSTEMS_WRITE_BUDGET = "systems-write"
ALERTS_WRITE_BUDGET = "alerts-write"
# The reviewed-rows budget is stated per minute.
REVIEWED_ROWS_WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class RateLimit:
    """How many requests a principal may make in a rolling window."""

    requests: int
    window_s: int


@dataclass(frozen=True, slots=True)
class Spend:
    """One admitted request in a log: when, and how many units of the limit it took."""

    at: float
    amount: int = 1


@dataclass(frozen=True, slots=True)
class SpendDecision:
    """Whether one request may spend its amount, and the log to keep afterwards."""

    allowed: bool
    # The admitted requests still inside the window, oldest first.
    history: tuple[Spend, ...]
    # Whole seconds until the request would pass; 0 when it passes now.
    retry_after_s: int


def decide_spend(history: Sequence[Spend], now: float, limit: RateLimit, amount: int = 1) -> SpendDecision:
    """Admit a request spending ``amount`` at ``now`` if the amounts admitted in the window before it leave room."""
    recent = sorted((spend for spend in history if spend.at > now - limit.window_s), key=lambda spend: spend.at)
    used = sum(spend.amount for spend in recent)
    # A limit lowered since the log was written keeps only the newest requests that fit it.
    dropped = 0
    while used > limit.requests:
        used -= recent[dropped].amount
        dropped += 1
    recent = recent[dropped:]
    if used + amount <= limit.requests:
        return SpendDecision(allowed=True, history=(*recent, Spend(now, amount)), retry_after_s=0)
    wait = float(limit.window_s)  # an amount over the whole limit never fits: the answer is "not within a window"
    freed = 0
    for spend in recent:
        # The oldest requests must leave the window until the amount fits.
        freed += spend.amount
        if used - freed + amount <= limit.requests:
            wait = spend.at + limit.window_s - now
            break
    return SpendDecision(allowed=False, history=tuple(recent), retry_after_s=max(1, math.ceil(wait)))


def budget_key(budget: str, tenant_id: str, principal: str) -> str:
    """The rate-limit table's key of one principal's budget: ``<budget>#<tenant>/<sub>``. A tenant id never holds
    ``#`` or ``/``, so no two budgets or principals share a key."""
    return f"{budget}#{tenant_id}/{principal}"


class BudgetLimiter(Protocol):
    """Keeps one sliding log per key."""

    def admit(self, principal_key: str, now: datetime, amount: int = 1) -> SpendDecision:
        """Record a request spending ``amount`` if the key's log has room for it, and say whether it had."""


@dataclass(frozen=True, slots=True)
class PrincipalBudget:
    """One budget every principal has (ingest, reads, reviews, reviewed rows), each principal's in a log of its
    own."""

    name: str
    limiter: BudgetLimiter
    # What one unit is, for the refusal's message: "requests", "rows".
    unit: str = "requests"

    def spend(self, tenant_id: str, principal: str, now: datetime, amount: int = 1) -> None:
        """Spend ``amount`` of the principal's budget; RateLimitedError (429, with Retry-After) when it is used up."""
        decision = self.limiter.admit(budget_key(self.name, tenant_id, principal), now, amount)
        if not decision.allowed:
            spends = "" if amount == 1 else f"; this request spends {amount} {self.unit}"
            raise RateLimitedError(
                f"rate limit reached ({self.name}{spends}): try again in {decision.retry_after_s} s",
                retry_after_s=decision.retry_after_s,
            )


def bound_bulk_review(request: BulkReviewRequest, max_rows: int) -> BulkReviewRequest:
    """``request`` within the deployment's bound of rows per bulk review: a filter that sends no ``limit`` takes the
    bound as its limit; more ids, or a larger limit, are refused (400) before any row is touched."""
    if request.ids is not None and len(request.ids) > max_rows:
        reason = f"{len(request.ids)} ids; at most {max_rows} per request"
        raise InvalidRequestError("the request body is not valid", [Problem(field="ids", reason=reason)])
    if request.filter is None:
        return request
    if "limit" not in request.model_fields_set:
        return request.model_copy(update={"limit": min(request.limit, max_rows)})
    if request.limit > max_rows:
        reason = f"{request.limit}; at most {max_rows} per request"
        raise InvalidRequestError("the request body is not valid", [Problem(field="limit", reason=reason)])
    return request


def rows_asked(request: BulkReviewRequest) -> int:
    """The rows a bulk review may touch: its ids, or its filter's limit (the most rows the filter can choose)."""
    return len(request.ids) if request.ids is not None else request.limit
