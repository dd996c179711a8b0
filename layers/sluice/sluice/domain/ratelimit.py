"""A sliding-log rate limit: at most N requests in any rolling window, counted per principal.

A fixed window (N per calendar minute) would let a client send 2N requests across a window boundary; the log of
the last N admitted requests is exact and small (N timestamps), so it is kept whole.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimit:
    """How many requests a principal may make in a rolling window."""

    requests: int
    window_s: int


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether one request may pass, and the log to keep afterwards."""

    allowed: bool
    # Epoch seconds of the admitted requests still inside the window, oldest first.
    history: tuple[float, ...]
    # Whole seconds until the request would pass; 0 when it passes now.
    retry_after_s: int


def decide_request(history: Sequence[float], now: float, limit: RateLimit) -> RateDecision:
    """Admit the request at ``now`` if fewer than ``limit.requests`` were admitted in the window before it."""
    recent = tuple(sorted(t for t in history if t > now - limit.window_s))[-limit.requests :]
    if len(recent) < limit.requests:
        return RateDecision(allowed=True, history=(*recent, now), retry_after_s=0)
    # The oldest request in the window must leave it before another one fits.
    wait = recent[0] + limit.window_s - now
    return RateDecision(allowed=False, history=recent, retry_after_s=max(1, math.ceil(wait)))
