"""WebhookDispatcherFunction's wiring and its loop: settings -> the outbox store and the HTTP sender -> rounds of
claiming due deliveries, sending them from a pool of threads and recording each attempt.

Only the loop's thread touches the database (one connection, LISTENing); the senders only send. A subscription has
at most ``per_subscription`` deliveries in flight, so a slow or dead receiver holds a few senders and every other
subscription's deliveries go out meanwhile. Between rounds the loop sleeps on the outbox's notification channel,
waking when a delivery is written (within milliseconds of its commit), when a retry falls due, or at the latest
after ``poll_s``.
"""

from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from aws_lambda_powertools import Logger

from sluice.adapters.timescale import DatabaseConnector, database_dsn
from sluice.adapters.webhooks import ClaimedDelivery, HttpWebhookSender, TimescaleDeliveryStore, listen
from sluice.domain.dispatch import AttemptResult, NextStep, free_slots, next_step
from sluice.domain.webhooks import TargetPolicy, signed_headers
from sluice.settings import WebhookDispatcherSettings, get_webhook_dispatcher_settings

logger = Logger(child=True)

Clock = Callable[[], datetime]
# While sends are in flight, the loop looks up from them this often (new notifications, due retries).
_IN_FLIGHT_TICK_S = 0.2


class DeliveryStore(Protocol):
    """The outbox (``TimescaleDeliveryStore``)."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def claim(
        self, now: datetime, limit: int, per_subscription: int, busy: dict[str, int], lease_until: datetime
    ) -> list[ClaimedDelivery]: ...

    def record(self, outcomes: Sequence[tuple[ClaimedDelivery, AttemptResult, NextStep]]) -> list[bool]: ...

    def next_due(self) -> datetime | None: ...

    def wait_for_deliveries(self, timeout_s: float) -> bool: ...


class WebhookSender(Protocol):
    """Sends one attempt (``HttpWebhookSender``); never raises."""

    def send(self, url: str, headers: dict[str, str], body: str, started_at: datetime) -> AttemptResult: ...


@dataclass(slots=True)
class DispatchReport:
    """What a run did: deliveries delivered, tried again later, failed for good; attempts made."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    attempts: int = 0
    # Attempts not recorded: another dispatcher recorded them first (a lease that ran out under a slow run), or the
    # subscription was deleted meanwhile; normally 0.
    superseded: int = 0

    def add(self, step: NextStep) -> None:
        """Count one recorded attempt."""
        self.attempts += 1
        if step.status == "delivered":
            self.delivered += 1
        elif step.status == "failed":
            self.failed += 1
        else:
            self.retried += 1

    def summary(self) -> dict[str, int]:
        """The counts, for the log and the answer."""
        return {
            "delivered": self.delivered,
            "retried": self.retried,
            "failed": self.failed,
            "attempts": self.attempts,
            "superseded": self.superseded,
        }


@dataclass
class WebhookDispatcher:
    """Claims, sends and records deliveries; ``drain`` for one pass over what is due, ``run`` for an invocation."""

    store: DeliveryStore
    sender: WebhookSender
    clock: Clock = field(default=lambda: datetime.now(UTC))
    senders: int = 16
    per_subscription: int = 2
    lease: timedelta = timedelta(seconds=60)
    poll_s: float = 10.0
    # No claim is made with less time than this left in the invocation (see run).
    reserve_ms: int = 15_000
    _in_flight: dict[Future[AttemptResult], ClaimedDelivery] = field(default_factory=dict)

    def drain(self) -> DispatchReport:
        """Send everything due by the clock, and what falls due meanwhile, until nothing due is left and nothing is
        in flight."""
        report = DispatchReport()
        self.store.open()
        with ThreadPoolExecutor(self.senders, thread_name_prefix="webhook-send") as pool:
            while True:
                self._claim(pool)
                if not self._in_flight:
                    return report
                done, _ = wait(self._in_flight, return_when=FIRST_COMPLETED)
                self._settle(done, report)

    def run(self, remaining_ms: Callable[[], int]) -> DispatchReport:
        """Send deliveries as they fall due until the invocation has ``reserve_ms`` left (``remaining_ms``: the
        Lambda context's clock), sleeping on the outbox's notifications in between; then let what is in flight
        finish (an attempt ends within the sender's timeout, which the reserve covers) and record it."""

        def time_left_s() -> float:
            return (remaining_ms() - self.reserve_ms) / 1000

        report = DispatchReport()
        self.store.open()
        maybe_due = True
        next_due: datetime | None = None
        with ThreadPoolExecutor(self.senders, thread_name_prefix="webhook-send") as pool:
            while time_left_s() > 0:
                if next_due is not None and self.clock() >= next_due:
                    maybe_due, next_due = True, None
                if maybe_due and len(self._in_flight) < self.senders:
                    wanted = self.senders - len(self._in_flight)
                    # A full batch: more may be waiting. Otherwise nothing more is due until told or next_due.
                    maybe_due = self._claim(pool) == wanted
                    if not maybe_due:
                        next_due = self.store.next_due()
                if self._in_flight:
                    done, _ = wait(self._in_flight, timeout=_IN_FLIGHT_TICK_S, return_when=FIRST_COMPLETED)
                    self._settle(done, report)
                    maybe_due = maybe_due or bool(done) or self.store.wait_for_deliveries(0)
                elif not maybe_due:
                    # Woken by a notification, or by the time: either way, look for due deliveries.
                    self.store.wait_for_deliveries(min(self._sleep_s(next_due), max(time_left_s(), 0.0)))
                    maybe_due = True
            if self._in_flight:
                done, _ = wait(self._in_flight)
                self._settle(done, report)
        return report

    def close(self) -> None:
        """Close the store's connection (a warm environment keeps it instead)."""
        self.store.close()

    def _sleep_s(self, next_due: datetime | None) -> float:
        """How long to wait for a notification: until the next retry falls due, at most ``poll_s``."""
        if next_due is None:
            return self.poll_s
        return min(max((next_due - self.clock()).total_seconds(), 0.0), self.poll_s)

    def _claim(self, pool: ThreadPoolExecutor) -> int:
        """Claim what there are senders for, and start sending it; the number claimed."""
        wanted = self.senders - len(self._in_flight)
        if wanted <= 0:
            return 0
        now = self.clock()
        busy = free_slots(Counter(d.webhook_id for d in self._in_flight.values()), self.per_subscription)
        claimed = self.store.claim(now, wanted, self.per_subscription, busy, now + self.lease)
        for delivery in claimed:
            self._in_flight[pool.submit(self._attempt, delivery)] = delivery
        return len(claimed)

    def _attempt(self, delivery: ClaimedDelivery) -> AttemptResult:
        # The same webhook-id every attempt; the timestamp and signature of this one.
        started_at = self.clock()
        headers = signed_headers(delivery.secret, delivery.id, started_at, delivery.body)
        return self.sender.send(delivery.url, headers, delivery.body, started_at)

    def _settle(self, done: set[Future[AttemptResult]], report: DispatchReport) -> None:
        outcomes = []
        for future in done:
            delivery = self._in_flight.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # a fault of ours; the attempt is still recorded, and retried
                logger.exception("webhook attempt failed unexpectedly", delivery_id=delivery.id)
                result = AttemptResult(self.clock(), 0, error=f"internal error: {type(exc).__name__}")
            outcomes.append((delivery, result, next_step(delivery.created_at, delivery.attempts + 1, result)))
        for (delivery, result, step), recorded in zip(outcomes, self.store.record(outcomes), strict=True):
            if not recorded:
                report.superseded += 1
                continue
            report.add(step)
            if step.status == "failed":
                logger.warning(
                    "webhook delivery failed for good",
                    delivery_id=delivery.id,
                    webhook_id=delivery.webhook_id,
                    tenant_id=delivery.tenant_id,
                    attempts=delivery.attempts + 1,
                    error=result.error,
                    status_code=result.status_code,
                )


def build_webhook_dispatcher(settings: WebhookDispatcherSettings, clock: Clock | None = None) -> WebhookDispatcher:
    """WebhookDispatcherFunction's store, sender and limits."""
    connector = DatabaseConnector(
        lambda: database_dsn(settings),
        settings.db_statement_timeout_ms,
        application_name="sluice-webhook-dispatcher",
        prepare=listen,
    )
    return WebhookDispatcher(
        store=TimescaleDeliveryStore(connector),
        sender=HttpWebhookSender(
            TargetPolicy(allow_local=settings.webhook_allow_local), settings.webhook_timeout_seconds
        ),
        clock=clock or (lambda: datetime.now(UTC)),
        senders=settings.webhook_senders,
        per_subscription=settings.webhook_per_subscription,
        lease=timedelta(seconds=settings.webhook_lease_seconds),
        poll_s=settings.webhook_poll_seconds,
        reserve_ms=settings.webhook_reserve_ms,
    )


def wire_webhook_dispatcher() -> WebhookDispatcher:
    """The dispatcher from the function's environment: each execution environment builds it once."""
    return build_webhook_dispatcher(get_webhook_dispatcher_settings())
