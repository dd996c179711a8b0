"""The sliding-log rate limit: exact over any rolling window, and it tells how long to wait."""

from hypothesis import given
from hypothesis import strategies as st

from sluice.domain.ratelimit import RateLimit, decide_request

LIMIT = RateLimit(requests=15, window_s=60)


def test_fifteen_requests_pass_and_the_sixteenth_waits_for_the_oldest_to_leave_the_window() -> None:
    history: tuple[float, ...] = ()
    for second in range(15):
        decision = decide_request(history, 1000.0 + second, LIMIT)
        assert decision.allowed
        history = decision.history

    refused = decide_request(history, 1020.0, LIMIT)

    assert not refused.allowed
    assert refused.retry_after_s == 40
    assert refused.history == history


def test_a_request_passes_again_once_the_oldest_has_left_the_window() -> None:
    history = tuple(1000.0 + second for second in range(15))

    decision = decide_request(history, 1060.0, LIMIT)

    assert decision.allowed
    assert decision.history == (*history[1:], 1060.0)


def test_the_wait_is_at_least_one_second() -> None:
    history = tuple(1000.0 + second / 100 for second in range(15))

    assert decide_request(history, 1059.999, LIMIT).retry_after_s == 1


@given(st.lists(st.floats(min_value=0, max_value=600, allow_nan=False), max_size=80))
def test_no_rolling_window_ever_holds_more_than_the_limit(moments: list[float]) -> None:
    history: tuple[float, ...] = ()
    admitted = []
    for moment in sorted(moments):
        decision = decide_request(history, moment, LIMIT)
        history = decision.history
        if decision.allowed:
            admitted.append(moment)

    for start in admitted:
        assert sum(start <= moment < start + LIMIT.window_s for moment in admitted) <= LIMIT.requests
