"""The dispatcher's policy (sluice.domain.dispatch): the backoff over 24 hours, what delivers, the per-subscription
cap."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from sluice.domain.dispatch import (
    DELIVERY_WINDOW,
    AttemptResult,
    attempt_times,
    excerpt,
    free_slots,
    next_step,
    retry_delay,
)
from sluice.settings import WebhookDispatcherSettings

CREATED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def failed_at(at: datetime, status_code: int | None = 503) -> AttemptResult:
    return AttemptResult(started_at=at, duration_ms=40, status_code=status_code)


@pytest.mark.parametrize("status_code", [200, 201, 202, 204, 299])
def test_a_2xx_answer_delivers(status_code: int) -> None:
    assert next_step(CREATED, 1, failed_at(CREATED, status_code)).status == "delivered"


@pytest.mark.parametrize("status_code", [None, 100, 301, 302, 307, 308, 400, 404, 410, 429, 500, 503])
def test_anything_else_is_tried_again_redirects_included(status_code: int | None) -> None:
    step = next_step(CREATED, 1, failed_at(CREATED, status_code))

    assert step.status == "pending"
    assert step.retry_at == CREATED + timedelta(seconds=5)


def test_the_delays_grow_and_the_last_one_repeats() -> None:
    delays = [retry_delay(n) for n in range(1, 13)]

    assert delays[:3] == [timedelta(seconds=5), timedelta(seconds=30), timedelta(minutes=2)]
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays))
    assert delays[-1] == delays[-2] == timedelta(hours=8)


def test_every_failing_attempt_leads_to_a_last_one_24_hours_after_creation_then_failed() -> None:
    times = attempt_times(CREATED)

    assert times[0] == CREATED
    assert times[-1] == CREATED + DELIVERY_WINDOW
    assert times == sorted(set(times))
    assert len(times) == 12
    assert next_step(CREATED, len(times), failed_at(times[-1])).status == "failed"


def test_a_retry_is_never_later_than_the_window() -> None:
    late = CREATED + timedelta(hours=23, minutes=59)

    assert next_step(CREATED, 9, failed_at(late)).retry_at == CREATED + DELIVERY_WINDOW


def test_an_attempt_after_the_window_that_fails_is_final_and_one_that_delivers_counts() -> None:
    late = CREATED + DELIVERY_WINDOW + timedelta(minutes=3)  # a dispatcher that was down when it fell due

    assert next_step(CREATED, 5, failed_at(late)).status == "failed"
    assert next_step(CREATED, 5, failed_at(late, 200)).status == "delivered"


def test_a_subscription_at_its_cap_gets_no_slot() -> None:
    assert free_slots({"a": 2, "b": 1, "c": 5}, 2) == {"a": 0, "b": 1, "c": 0}


def test_the_excerpt_keeps_at_most_a_kib_of_the_answer_as_text() -> None:
    assert excerpt(b"x" * 5000) == "x" * 1024
    assert excerpt(b"\xff ok") == "\ufffd ok"


def test_the_settings_refuse_a_lease_an_attempt_could_outlast() -> None:
    with pytest.raises(ValidationError, match="SLUICE_WEBHOOK_LEASE_SECONDS must be at least twice"):
        WebhookDispatcherSettings(db_dsn="postgresql://x", webhook_timeout_seconds=10, webhook_lease_seconds=15)


def test_the_settings_refuse_a_reserve_shorter_than_an_attempt() -> None:
    with pytest.raises(ValidationError, match="SLUICE_WEBHOOK_RESERVE_MS must be at least"):
        WebhookDispatcherSettings(db_dsn="postgresql://x", webhook_timeout_seconds=10, webhook_reserve_ms=5_000)


def test_by_default_only_https_to_public_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_WEBHOOK_ALLOW_LOCAL", raising=False)

    assert WebhookDispatcherSettings(db_dsn="postgresql://x").webhook_allow_local is False
