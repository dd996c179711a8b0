"""The webhook outbox's sending side: claiming due deliveries, recording each attempt, and the HTTP sender.

A dispatcher claims a batch of due deliveries (``FOR UPDATE SKIP LOCKED``, so two dispatchers never claim one row)
and, in the same statement, pushes their ``next_attempt_at`` a lease ahead: the claim commits before anything is
sent, so a dispatcher killed mid-send leaves rows that become due again when the lease runs out, and none is lost.
After the attempt, the attempt's row and the delivery's new state are written in one transaction, guarded by the
attempt number, so an attempt is recorded once even if a lease ran out under a very slow dispatcher.

The sender checks the target again before each attempt (the policy of ``sluice.domain.webhooks.check_target``) and
connects to one of the addresses it checked, never resolving the name a second time: a name that now resolves to a
private address is refused, and one that changes between the check and the connection (DNS rebinding) cannot lead
it elsewhere. ``https`` is verified against the URL's host name (SNI and the certificate's name); redirects are
never followed (a 3xx fails the attempt: its target was not checked).
"""

import http.client
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, LiteralString
from urllib.parse import urlsplit

from psycopg import sql

from sluice.adapters.outbox import resolve_addresses
from sluice.adapters.timescale import Connection, DatabaseConnector
from sluice.domain.dispatch import AttemptResult, NextStep, excerpt
from sluice.domain.webhooks import Resolver, TargetPolicy, TargetRefusedError, check_target

# The channel migration 0010's trigger notifies when deliveries are written.
CHANNEL: Final = "sluice_webhook_deliveries"
USER_AGENT: Final = "Sluice-Webhooks/1"

# Due rows ranked within their subscription; the first ``free`` of each subscription are candidates (``free``: the
# subscription's slots left in this dispatcher, or the full cap when it has none in flight), taken rank by rank so
# that every subscription with something due gets its first delivery before any gets a second. The candidates are
# then locked, skipping rows another dispatcher holds, and leased; the WHERE is checked again on the locked row, so
# a row another dispatcher leased meanwhile is not taken.
_CLAIM: LiteralString = """
WITH due AS (
    SELECT d.id, d.seq, d.next_attempt_at, coalesce(f.free, %(per_subscription)s) AS free,
           row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.next_attempt_at, d.seq) AS rank
    FROM webhook_deliveries d
    LEFT JOIN unnest(%(busy_ids)s::uuid[], %(busy_free)s::int4[]) AS f (webhook_id, free) ON f.webhook_id = d.webhook_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= %(now)s
), chosen AS (
    SELECT id FROM due WHERE rank <= free ORDER BY rank, next_attempt_at, seq LIMIT %(limit)s
), locked AS (
    SELECT d.id FROM webhook_deliveries d
    WHERE d.id IN (SELECT id FROM chosen) AND d.status = 'pending' AND d.next_attempt_at <= %(now)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d SET next_attempt_at = %(lease_until)s
FROM locked, webhooks w, webhook_secrets s
WHERE d.id = locked.id AND w.id = d.webhook_id AND s.webhook_id = d.webhook_id
RETURNING d.id, d.webhook_id::text, d.tenant_id, d.event_type, d.body, d.attempts, d.created_at, w.url, s.secret
"""
# The delivery locked first: a subscription deleted meanwhile (its deliveries go with it) waits for this commit, or
# has gone already and the attempt is not recorded; a delivery whose attempt count moved on was taken over by
# another dispatcher after this one's lease ran out, which recorded that attempt itself.
_LOCK_DELIVERY: LiteralString = "SELECT attempts, status FROM webhook_deliveries WHERE id = %s FOR UPDATE"
_RECORD_ATTEMPT: LiteralString = """
INSERT INTO webhook_attempts (delivery_id, attempt, at, duration_ms, status_code, error, response)
VALUES (%(id)s, %(attempt)s, %(at)s, %(duration_ms)s, %(status_code)s, %(error)s, %(response)s)
"""
_SETTLE: LiteralString = """
UPDATE webhook_deliveries
SET attempts = %(attempt)s, status = %(status)s, next_attempt_at = coalesce(%(retry_at)s, next_attempt_at),
    delivered_at = %(delivered_at)s
WHERE id = %(id)s
"""
_NEXT_DUE: LiteralString = "SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'"


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery this dispatcher holds the lease of, with where it goes and the secret it is signed with."""

    id: str  # the webhook-id
    webhook_id: str
    tenant_id: str
    event_type: str
    body: str
    attempts: int  # made before this one
    created_at: datetime
    url: str
    secret: str


def listen(connection: Connection) -> None:
    """Subscribe a (new) connection to the outbox's notifications."""
    connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))


class TimescaleDeliveryStore:
    """The outbox, as the dispatcher sees it: one connection (LISTENing), used from the dispatcher's loop only."""

    def __init__(self, connector: DatabaseConnector) -> None:
        self._connector = connector

    def open(self) -> None:
        """Make sure the connection answers (and listens: a new one is subscribed by the connector's ``prepare``)."""
        self._connector.checked_connection()

    def close(self) -> None:
        """Close the connection."""
        self._connector.close()

    def claim(
        self, now: datetime, limit: int, per_subscription: int, busy: Mapping[str, int], lease_until: datetime
    ) -> list[ClaimedDelivery]:
        """Up to ``limit`` deliveries due at ``now``, at most ``per_subscription`` of one subscription (``busy``:
        the slots left of subscriptions that have some in flight here), leased until ``lease_until``."""
        if limit <= 0:
            return []
        params = {
            "now": now,
            "limit": limit,
            "per_subscription": per_subscription,
            "busy_ids": list(busy),
            "busy_free": list(busy.values()),
            "lease_until": lease_until,
        }
        rows = self._connector.connection().execute(_CLAIM, params).fetchall()
        return [ClaimedDelivery(*row) for row in rows]

    def record(self, outcomes: Sequence[tuple[ClaimedDelivery, AttemptResult, NextStep]]) -> list[bool]:
        """Write each attempt and its delivery's new state, all in one transaction (one commit for every attempt
        that ended meanwhile); per attempt, False when it is not recorded: another dispatcher took the delivery
        after this one's lease ran out and recorded that attempt, or its subscription was deleted meanwhile."""
        recorded = []
        conn = self._connector.connection()
        with conn.transaction():
            for delivery, result, step in outcomes:
                recorded.append(_record(conn, delivery, result, step))
        return recorded

    def next_due(self) -> datetime | None:
        """When the earliest pending delivery is due (leased ones included), or None when none is pending."""
        row = self._connector.connection().execute(_NEXT_DUE).fetchone()
        return row[0] if row else None

    def wait_for_deliveries(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a notification that deliveries were written; whether one came. Every
        notification waiting is taken, so a burst of writes wakes the dispatcher once."""
        conn = self._connector.connection()
        notified = any(True for _ in conn.notifies(timeout=max(timeout_s, 0.0), stop_after=1))
        if notified:
            for _ in conn.notifies(timeout=0):
                pass
        return notified


def _record(conn: Connection, delivery: ClaimedDelivery, result: AttemptResult, step: NextStep) -> bool:
    attempt = delivery.attempts + 1
    if conn.execute(_LOCK_DELIVERY, (delivery.id,)).fetchone() != (delivery.attempts, "pending"):
        return False
    conn.execute(
        _RECORD_ATTEMPT,
        {
            "id": delivery.id,
            "attempt": attempt,
            "at": result.started_at,
            "duration_ms": result.duration_ms,
            "status_code": result.status_code,
            "error": _text(result.error),
            "response": _text(result.response),
        },
    )
    finished = result.started_at + timedelta(milliseconds=result.duration_ms)
    conn.execute(
        _SETTLE,
        {
            "id": delivery.id,
            "attempt": attempt,
            "status": step.status,
            "retry_at": step.retry_at,
            "delivered_at": finished if step.status == "delivered" else None,
        },
    )
    return True


def _text(value: str | None) -> str | None:
    # PostgreSQL's text takes no NUL, which a receiver's answer may hold.
    return None if value is None else value.replace("\x00", "\ufffd")


class HttpWebhookSender:
    """Sends one attempt: checks the target, connects to a checked address, POSTs, keeps the start of the answer."""

    def __init__(
        self,
        policy: TargetPolicy,
        timeout_s: float,
        resolve: Resolver = resolve_addresses,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._policy = policy
        self._timeout_s = timeout_s
        self._resolve = resolve
        self._tls = tls or ssl.create_default_context()

    def send(self, url: str, headers: Mapping[str, str], body: str, started_at: datetime) -> AttemptResult:
        """One attempt; never raises: a refused target, a timeout or a broken answer is a failed attempt."""
        started = time.monotonic()

        def result(**outcome: Any) -> AttemptResult:
            elapsed = round((time.monotonic() - started) * 1000)
            return AttemptResult(started_at=started_at, duration_ms=elapsed, **outcome)

        try:
            addresses = check_target(url, self._policy, self._resolve)
        except TargetRefusedError as exc:
            return result(error=f"target refused: {exc}")
        try:
            status, answer = self._post(url, addresses, headers, body.encode())
        except TimeoutError:
            return result(error=f"no answer within {self._timeout_s:g} s")
        except ssl.SSLError as exc:
            return result(error=f"TLS failed: {exc}")
        except http.client.HTTPException as exc:
            return result(error=f"not an HTTP answer: {type(exc).__name__}: {exc}")
        except OSError as exc:
            return result(error=f"connection failed: {exc.strerror or exc}")
        return result(status_code=status, response=excerpt(answer))

    def _post(self, url: str, addresses: Sequence[str], headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        # One deadline for the whole attempt: each step (connect, TLS, send, the answer's head, its start) may take
        # only what is left of it, so a receiver answering a byte at a time cannot hold a sender longer.
        deadline = time.monotonic() + self._timeout_s
        parts = urlsplit(url)
        host = parts.hostname or ""
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        connection = self._connect(host, addresses, port, https, deadline)
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            sent = {"user-agent": USER_AGENT, "connection": "close", **headers}
            _until(connection.sock, deadline)
            connection.request("POST", target, body, sent)
            _until(connection.sock, deadline)
            response = connection.getresponse()
            _until(connection.sock, deadline)
            # Only the start is kept; a receiver answering more does not hold the sender.
            return response.status, response.read(1024)
        finally:
            connection.close()

    def _connect(
        self, host: str, addresses: Sequence[str], port: int, https: bool, deadline: float
    ) -> http.client.HTTPConnection:
        """A connection to the first checked address that answers; the Host header (and for https the SNI and the
        certificate's name) is the URL's host."""
        failure: OSError = ConnectionError("no address to connect to")
        for address in addresses:
            try:
                sock = socket.create_connection((address, port), timeout=_left(deadline))
            except TimeoutError:
                raise
            except OSError as exc:
                failure = exc
                continue
            connection: http.client.HTTPConnection
            if https:
                try:
                    _until(sock, deadline)
                    sock = self._tls.wrap_socket(sock, server_hostname=host)
                except BaseException:
                    sock.close()
                    raise
                connection = http.client.HTTPSConnection(host, port, timeout=self._timeout_s, context=self._tls)
            else:
                connection = http.client.HTTPConnection(host, port, timeout=self._timeout_s)
            connection.sock = sock
            return connection
        raise failure


def _left(deadline: float) -> float:
    """The seconds left until ``deadline``; TimeoutError when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _until(sock: socket.socket | None, deadline: float) -> None:
    """Give the socket's next operations only the time left."""
    if sock is not None:
        sock.settimeout(_left(deadline))
