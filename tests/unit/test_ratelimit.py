"""The sliding-log rate limit: exact over any rolling window, it tells how long to wait, and each principal has a
budget of its own for each purpose (ingest, reads, reviews, reviewed rows)."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.domain.ratelimit import (
    READ_BUDGET,
    REVIEW_BUDGET,
    REVIEWED_ROWS_BUDGET,
    PrincipalBudget,
    RateLimit,
    Spend,
    SpendDecision,
    bound_bulk_review,
    budget_key,
    decide_spend,
    rows_asked,
)
from sluice.errors import InvalidRequestError, RateLimitedError
from sluice.models.api import BULK_REVIEW_MAX, BulkReviewRequest

LIMIT = RateLimit(requests=15, window_s=60)


def spends(*moments: float) -> tuple[Spend, ...]:
    """A log of requests of one unit each."""
    return tuple(Spend(moment) for moment in moments)


def test_fifteen_requests_pass_and_the_sixteenth_waits_for_the_oldest_to_leave_the_window() -> None:
    history: tuple[Spend, ...] = ()
    for second in range(15):
        decision = decide_spend(history, 1000.0 + second, LIMIT)
        assert decision.allowed
        history = decision.history

    refused = decide_spend(history, 1020.0, LIMIT)

    assert not refused.allowed
    assert refused.retry_after_s == 40
    assert refused.history == history


def test_a_request_passes_again_once_the_oldest_has_left_the_window() -> None:
    history = spends(*(1000.0 + second for second in range(15)))

    decision = decide_spend(history, 1060.0, LIMIT)

    assert decision.allowed
    assert decision.history == (*history[1:], Spend(1060.0))


def test_the_wait_is_at_least_one_second() -> None:
    history = spends(*(1000.0 + second / 100 for second in range(15)))

    assert decide_spend(history, 1059.999, LIMIT).retry_after_s == 1


@given(st.lists(st.floats(min_value=0, max_value=600, allow_nan=False), max_size=80))
def test_no_rolling_window_ever_holds_more_than_the_limit(moments: list[float]) -> None:
    history: tuple[Spend, ...] = ()
    admitted = []
    for moment in sorted(moments):
        decision = decide_spend(history, moment, LIMIT)
        history = decision.history
        if decision.allowed:
            admitted.append(moment)

    for start in admitted:
        assert sum(start <= moment < start + LIMIT.window_s for moment in admitted) <= LIMIT.requests


# --- budgets a request spends more than one unit of (the rows of a bulk review) ---------------------------------

ROWS = RateLimit(requests=5000, window_s=60)


def test_a_bulk_review_spends_its_rows_and_the_next_waits_until_enough_have_left_the_window() -> None:
    history: tuple[Spend, ...] = ()
    for second, rows in enumerate((2000, 2000, 500)):
        decision = decide_spend(history, 1000.0 + second, ROWS, rows)
        assert decision.allowed
        history = decision.history

    refused = decide_spend(history, 1010.0, ROWS, 600)

    # 4,500 spent; 600 more fit only once the first 2,000 (spent at 1000 s) have left the window.
    assert not refused.allowed
    assert refused.retry_after_s == 50
    assert refused.history == history
    assert decide_spend(history, 1010.0, ROWS, 500).allowed


def test_an_amount_over_the_whole_budget_never_fits_and_waits_a_window() -> None:
    refused = decide_spend((), 1000.0, ROWS, 5001)

    assert not refused.allowed
    assert refused.retry_after_s == ROWS.window_s


def test_a_log_written_under_a_higher_limit_keeps_only_what_fits_the_lower_one() -> None:
    history = [Spend(1000.0, 3000), Spend(1001.0, 3000)]

    decision = decide_spend(history, 1002.0, RateLimit(requests=4000, window_s=60), 500)

    assert decision.allowed
    assert decision.history == (Spend(1001.0, 3000), Spend(1002.0, 500))


@given(
    st.lists(
        st.tuples(st.floats(min_value=0, max_value=600, allow_nan=False), st.integers(min_value=1, max_value=700)),
        max_size=80,
    )
)
def test_no_rolling_window_ever_holds_more_than_the_budget(requests: list[tuple[float, int]]) -> None:
    budget = RateLimit(requests=1000, window_s=60)
    history: tuple[Spend, ...] = ()
    admitted = []
    for moment, amount in sorted(requests):
        decision = decide_spend(history, moment, budget, amount)
        history = decision.history
        if decision.allowed:
            admitted.append((moment, amount))
        else:
            # Retry-After is honest: just after it, the same amount fits (when nothing else is spent meanwhile).
            later = moment + decision.retry_after_s + 0.001
            assert amount > budget.requests or decide_spend(history, later, budget, amount).allowed

    for start, _ in admitted:
        assert sum(amount for moment, amount in admitted if start <= moment < start + budget.window_s) <= 1000


# --- one budget per principal and purpose -------------------------------------------------------------------------


def test_each_budget_and_principal_has_a_key_of_its_own() -> None:
    keys = {
        budget_key(budget, tenant, principal)
        for budget in (READ_BUDGET, REVIEW_BUDGET, REVIEWED_ROWS_BUDGET)
        for tenant, principal in (("demo", "anna"), ("demo", "ben"), ("other", "anna"), ("", "anna"))
    }

    assert len(keys) == 12
    assert budget_key(READ_BUDGET, "demo", "anna") == "read#demo/anna"
    # Ingest's log keeps its original key, "<tenant>/<sub>", which no budget's key can equal.
    assert all("#" in key for key in keys)


class MemoryLimiter:
    """The limiter port over an in-memory log per key."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.logs: dict[str, tuple[Spend, ...]] = {}
        self.asked: list[tuple[str, int]] = []

    def admit(self, principal_key: str, now: datetime, amount: int = 1) -> SpendDecision:
        self.asked.append((principal_key, amount))
        decision = decide_spend(self.logs.get(principal_key, ()), now.timestamp(), self.limit, amount)
        if decision.allowed:
            self.logs[principal_key] = decision.history
        return decision


def test_a_spent_budget_is_a_429_with_the_wait_and_other_principals_are_untouched() -> None:
    limiter = MemoryLimiter(RateLimit(requests=2, window_s=60))
    reads = PrincipalBudget(READ_BUDGET, limiter)
    now = datetime(2026, 12, 5, 8, tzinfo=UTC)

    reads.spend("demo", "anna", now)
    reads.spend("demo", "anna", now + timedelta(seconds=10))
    with pytest.raises(RateLimitedError) as refused:
        reads.spend("demo", "anna", now + timedelta(seconds=20))
    reads.spend("demo", "ben", now + timedelta(seconds=20))

    assert refused.value.retry_after_s == 40
    assert refused.value.message == "rate limit reached (read): try again in 40 s"
    assert limiter.asked[-2:] == [("read#demo/anna", 1), ("read#demo/ben", 1)]


def test_a_refused_row_spend_says_how_many_rows_it_asked_for() -> None:
    rows = PrincipalBudget(REVIEWED_ROWS_BUDGET, MemoryLimiter(RateLimit(requests=100, window_s=60)), unit="rows")

    with pytest.raises(RateLimitedError, match=r"review-rows; this request spends 500 rows\): try again in 60 s"):
        rows.spend("demo", "anna", datetime(2026, 12, 5, 8, tzinfo=UTC), 500)


# --- the bound of rows per bulk review ----------------------------------------------------------------------------


def bulk(**fields: object) -> BulkReviewRequest:
    return BulkReviewRequest.model_validate({"action": "reject"} | fields)


def test_a_filter_without_a_limit_takes_the_bound_and_spends_it() -> None:
    bounded = bound_bulk_review(bulk(filter={}), 200)

    assert bounded.limit == 200
    assert rows_asked(bounded) == 200
    assert rows_asked(bound_bulk_review(bulk(filter={}, limit=7), 200)) == 7
    assert rows_asked(bound_bulk_review(bulk(ids=[1, 2, 3]), 200)) == 3


@pytest.mark.parametrize(
    ("fields", "field"), [({"ids": list(range(1, 202))}, "ids"), ({"filter": {}, "limit": 201}, "limit")]
)
def test_more_rows_than_the_bound_are_refused_naming_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        bound_bulk_review(bulk(**fields), 200)

    (problem,) = refused.value.details
    assert problem.field == field
    assert problem.reason.endswith("at most 200 per request")


def test_the_default_bound_is_the_apis_own() -> None:
    assert bound_bulk_review(bulk(filter={}), BULK_REVIEW_MAX).limit == BULK_REVIEW_MAX == 500
