"""The webhook dispatcher's policy: when a delivery is tried again, what counts as delivered, and how many of one
subscription's deliveries may be in flight at once. Pure: the adapters (``sluice.adapters.webhooks``) claim, send
and record; the service (``sluice.services.webhook_dispatcher``) runs the loop.

A delivery is tried as soon as it is written, then after each failed attempt at a growing delay (the table below),
and once more 24 hours after it was written; that last attempt failing, the delivery is ``failed`` for good.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

# The wait after the n-th failed attempt (the last one repeats). Each is a few times the one before: a receiver
# down for a minute gets its deliveries within a minute of coming back; one down for hours is not hammered.
RETRY_DELAYS: Final = (
    timedelta(seconds=5),
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
    timedelta(hours=8),
)
# How long after it was written a delivery is last tried.
DELIVERY_WINDOW: Final = timedelta(hours=24)
# The most of a response's body kept with its attempt.
RESPONSE_EXCERPT_BYTES: Final = 1024


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt got: the receiver's status code and the start of its body, or why there was no answer."""

    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    response: str | None = None

    @property
    def delivered(self) -> bool:
        """Only a 2xx answer delivers. A redirect is not followed (its target was never checked) and so fails."""
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class NextStep:
    """What becomes of a delivery after an attempt: delivered, tried again at ``retry_at``, or failed for good."""

    status: str  # "delivered" | "pending" | "failed"
    retry_at: datetime | None = None


def retry_delay(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt."""
    return RETRY_DELAYS[min(max(attempts, 1), len(RETRY_DELAYS)) - 1]


def next_step(created_at: datetime, attempts: int, result: AttemptResult) -> NextStep:
    """After attempt number ``attempts`` (1 for the first): delivered on a 2xx; otherwise again after the backoff,
    never later than 24 hours after ``created_at``; failed once an attempt at or past that moment has failed."""
    if result.delivered:
        return NextStep("delivered")
    last_chance = created_at + DELIVERY_WINDOW
    if result.started_at >= last_chance:
        return NextStep("failed")
    return NextStep("pending", min(result.started_at + retry_delay(attempts), last_chance))


def attempt_times(created_at: datetime) -> list[datetime]:
    """When a delivery whose every attempt fails at once is tried: the schedule in full, for the docs and tests."""
    times = [created_at]
    while True:
        result = AttemptResult(started_at=times[-1], duration_ms=0, error="refused")
        step = next_step(created_at, len(times), result)
        if step.retry_at is None:
            return times
        times.append(step.retry_at)


def free_slots(in_flight: Mapping[str, int], per_subscription: int) -> dict[str, int]:
    """How many more deliveries each subscription with some in flight may have claimed (0 when at its cap); a
    subscription not named may have ``per_subscription``. One slow or dead receiver thus holds at most that many of
    the dispatcher's senders, and every other subscription's deliveries go out meanwhile."""
    return {webhook: max(per_subscription - count, 0) for webhook, count in in_flight.items()}


def excerpt(body: bytes) -> str:
    """The start of a response body as kept with its attempt (at most 1 KiB; bytes that are not UTF-8 replaced)."""
    return body[:RESPONSE_EXCERPT_BYTES].decode("utf-8", "replace")
