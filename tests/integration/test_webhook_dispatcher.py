"""The webhook dispatcher against the real outbox (a migrated TimescaleDB, connected as a sluice_notifier login) and a
real receiver that verifies every signature. A clock the tests move stands in for the hours of the backoff."""

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sluice.adapters.outbox import enqueue
from sluice.adapters.webhooks import HttpWebhookSender
from sluice.domain.dispatch import attempt_times
from sluice.domain.webhooks import Announcement, TargetPolicy, new_secret
from sluice.services.webhook_dispatcher import WebhookDispatcher, build_webhook_dispatcher
from sluice.settings import WebhookDispatcherSettings

from ..logins import group_login
from ..webhook_receiver import WebhookReceiver

Conn = psycopg.Connection[tuple[Any, ...]]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class MovableClock:
    """The dispatcher's clock, moved by the test."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
def notifier_dsn(migrated_db: str) -> Iterator[str]:
    """A login user of sluice_notifier, the role WebhookDispatcherFunction connects as."""
    with group_login(migrated_db, "NotifierDatabaseSecretArn", "sluice_notifier", "notifier") as dsn:
        yield dsn


@pytest.fixture
def dispatcher_for(notifier_dsn: str) -> Iterator[Callable[..., WebhookDispatcher]]:
    """Dispatchers connected as the notifier login, loopback targets allowed unless told otherwise; closed after."""
    made: list[WebhookDispatcher] = []

    def make(clock: Any = None, **settings: Any) -> WebhookDispatcher:
        # A short lease, so that a dead dispatcher's claims come back within the test.
        chosen: dict[str, Any] = {"db_dsn": notifier_dsn, "webhook_allow_local": True, "webhook_lease_seconds": 5}
        chosen |= {"webhook_timeout_seconds": 2} | settings
        made.append(build_webhook_dispatcher(WebhookDispatcherSettings(**chosen), clock))
        return made[-1]

    yield make
    for dispatcher in made:
        dispatcher.close()


def subscribe(conn: Conn, tenant: str, url: str, events: tuple[str, ...] = ("alarm.raised",)) -> tuple[str, str]:
    """A subscription and its secret, as the API writes them."""
    secret = new_secret()
    row = conn.execute(
        "INSERT INTO webhooks (tenant_id, url, events, created_by) VALUES (%s, %s, %s, 'test') RETURNING id::text",
        (tenant, url, list(events)),
    ).fetchone()
    assert row is not None
    conn.execute("INSERT INTO webhook_secrets (webhook_id, secret) VALUES (%s, %s)", (row[0], secret))
    return row[0], secret


def subscribe_receiver(conn: Conn, tenant: str, receiver: WebhookReceiver, path: str) -> str:
    """A subscription of ``tenant`` to ``path`` of the receiver, which checks its deliveries with its secret."""
    webhook_id, secret = subscribe(conn, tenant, receiver.base_url + path)
    receiver.url_for(path, secret)
    return webhook_id


def announce(conn: Conn, tenant: str, key: str, at: datetime = T0) -> int:
    return enqueue(conn, Announcement(tenant, "alarm.raised", f"alarm.raised:{key}", at, {"id": key, "value": 3.5}))


def delivery_rows(conn: Conn) -> dict[str, tuple[Any, ...]]:
    rows = conn.execute("SELECT id, status, attempts, delivered_at, body FROM webhook_deliveries").fetchall()
    return {row[0]: row[1:] for row in rows}


def attempt_rows(conn: Conn, delivery_id: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT attempt, at, status_code, error, response FROM webhook_attempts WHERE delivery_id = %s"
        " ORDER BY attempt",
        (delivery_id,),
    ).fetchall()


def test_a_delivery_arrives_once_signed_and_is_recorded_delivered(
    conn: Conn, dispatcher_for: Callable[..., WebhookDispatcher], webhook_receiver: WebhookReceiver
) -> None:
    subscribe_receiver(conn, "acme", webhook_receiver, "/acme")
    assert announce(conn, "acme", "a1") == 1
    # Another tenant's event reaches nobody here.
    assert announce(conn, "other", "o1") == 0

    report = dispatcher_for(MovableClock()).drain()
    again = dispatcher_for(MovableClock(T0 + timedelta(hours=1))).drain()

    (received,) = webhook_receiver.received()
    (delivery_id, (status, attempts, delivered_at, body)), *_ = delivery_rows(conn).items()
    assert received.verified
    assert received.webhook_id == delivery_id
    assert received.body == body
    assert received.payload == {
        "type": "alarm.raised",
        "timestamp": "2026-03-01T12:00:00Z",
        "data": {"id": "a1", "value": 3.5},
    }
    assert received.timestamp == int(T0.timestamp())
    assert received.headers["content-type"] == "application/json"
    assert (status, attempts) == ("delivered", 1)
    assert delivered_at >= T0
    assert [row[2] for row in attempt_rows(conn, delivery_id)] == [204]
    assert (report.delivered, report.attempts) == (1, 1)
    assert again.attempts == 0


def test_every_attempt_carries_the_same_id_with_a_fresh_timestamp_and_signature(
    conn: Conn, dispatcher_for: Callable[..., WebhookDispatcher], webhook_receiver: WebhookReceiver
) -> None:
    subscribe_receiver(conn, "acme", webhook_receiver, "/acme")
    announce(conn, "acme", "a1")
    clock = MovableClock()
    dispatcher = dispatcher_for(clock)

    webhook_receiver.answer(500)
    dispatcher.drain()
    clock.advance(timedelta(seconds=5))
    dispatcher.drain()
    webhook_receiver.answer(200)
    clock.advance(timedelta(seconds=30))
    dispatcher.drain()

    first, second, third = webhook_receiver.received()
    assert first.webhook_id == second.webhook_id == third.webhook_id
    assert [d.timestamp for d in (first, second, third)] == [int(T0.timestamp()) + s for s in (0, 5, 35)]
    assert len({d.headers["webhook-signature"] for d in (first, second, third)}) == 3
    assert all(d.verified for d in (first, second, third))
    assert first.body == second.body == third.body
    assert [(row[0], row[2]) for row in attempt_rows(conn, str(first.webhook_id))] == [(1, 500), (2, 500), (3, 200)]
    assert attempt_rows(conn, str(first.webhook_id))[0][4] == '{"error":"as told"}'


def test_a_receiver_down_for_a_while_gets_each_delivery_once_after_it_returns(
    conn: Conn, dispatcher_for: Callable[..., WebhookDispatcher], webhook_receiver: WebhookReceiver
) -> None:
    subscribe_receiver(conn, "acme", webhook_receiver, "/acme")
    for n in range(5):
        announce(conn, "acme", f"a{n}")
    clock = MovableClock()
    dispatcher = dispatcher_for(clock)

    webhook_receiver.go_down()
    for wait in (timedelta(0), timedelta(seconds=5), timedelta(seconds=30), timedelta(minutes=2)):
        clock.advance(wait)
        dispatcher.drain()
    webhook_receiver.come_back()
    clock.advance(timedelta(minutes=10))
    dispatcher.drain()
    clock.advance(timedelta(hours=30))
    dispatcher.drain()

    assert webhook_receiver.count == 5
    assert webhook_receiver.distinct_ids() == set(delivery_rows(conn))
    assert all(d.verified for d in webhook_receiver.received())
    for delivery_id, (status, attempts, _, _) in delivery_rows(conn).items():
        assert (status, attempts) == ("delivered", 5)
        attempts_made = attempt_rows(conn, delivery_id)
        assert [row[2] for row in attempts_made] == [None, None, None, None, 204]
        assert all("connection failed" in row[3] for row in attempts_made[:4])


def test_after_24_hours_of_failures_the_delivery_is_failed_with_every_attempt_recorded(
    conn: Conn, dispatcher_for: Callable[..., WebhookDispatcher], webhook_receiver: WebhookReceiver
) -> None:
    subscribe_receiver(conn, "acme", webhook_receiver, "/acme")
    announce(conn, "acme", "a1")
    webhook_receiver.answer(503)
    clock = MovableClock()
    dispatcher = dispatcher_for(clock)
    schedule = attempt_times(T0)

    failed = 0
    for moment in schedule:
        clock.now = moment
        failed += dispatcher.drain().failed
    clock.advance(timedelta(days=2))
    after = dispatcher.drain()

    ((delivery_id, (status, attempts, delivered_at, _)),) = delivery_rows(conn).items()
    assert (status, attempts, delivered_at) == ("failed", len(schedule), None)
    assert [row[1] for row in attempt_rows(conn, delivery_id)] == schedule
    assert {row[2] for row in attempt_rows(conn, delivery_id)} == {503}
    assert webhook_receiver.count == len(schedule)
    assert (failed, after.attempts) == (1, 0)


def test_a_slow_receiver_of_one_tenant_does_not_delay_another_tenants_deliveries(
    conn: Conn, dispatcher_for: Callable[..., WebhookDispatcher], webhook_receiver: WebhookReceiver
) -> None:
    subscribe_receiver(conn, "slow", webhook_receiver, "/slow")
    subscribe_receiver(conn, "quick", webhook_receiver, "/quick")
    # Slower than the dispatcher's 1 s timeout: every attempt there takes the full second and fails.
    webhook_receiver.answer(204, delay_s=3, path="/slow")
    for n in range(8):
        announce(conn, "slow", f"s{n}", datetime.now(UTC))
    for n in range(4):
        announce(conn, "quick", f"q{n}", datetime.now(UTC))
    dispatcher = dispatcher_for(None, webhook_timeout_seconds=1, webhook_senders=4)

    started = time.time()
    report = dispatcher.drain()

    quick = webhook_receiver.received("/quick")
    assert len(quick) == 4
    assert all(d.verified for d in quick)
    # The slow tenant had two senders at a time for four rounds of a second; the quick one went out at once.
    assert max(d.received_at for d in quick) - started < 0.8
    assert report.delivered == 4
    assert report.retried >= 8
    # The receiver records a slow request once it has answered it, after the dispatcher gave up waiting.
    assert len({d.webhook_id for d in webhook_receiver.wait_for(8, timeout_s=5, path="/slow")}) == 8


def test_two_dispatchers_at_once_never_send_one_delivery_twice(
    conn: Conn, dispatcher_for: Callable[..., WebhookDispatcher], webhook_receiver: WebhookReceiver
) -> None:
    for tenant in ("a", "b", "c"):
        subscribe_receiver(conn, tenant, webhook_receiver, f"/{tenant}")
        for n in range(40):
            announce(conn, tenant, f"{tenant}{n}", datetime.now(UTC))
    dispatchers = [dispatcher_for(None, webhook_senders=8) for _ in range(2)]
    reports = []

    threads = [threading.Thread(target=lambda d=d: reports.append(d.drain())) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert webhook_receiver.count == 120
    assert len(webhook_receiver.distinct_ids()) == 120
    assert sum(report.delivered for report in reports) == 120
    assert conn.execute("SELECT count(*), max(attempt) FROM webhook_attempts").fetchone() == (120, 1)


def test_a_dispatcher_killed_after_claiming_loses_nothing(
    conn: Conn, dispatcher_for: Callable[..., WebhookDispatcher], webhook_receiver: WebhookReceiver
) -> None:
    subscribe_receiver(conn, "acme", webhook_receiver, "/acme")
    for n in range(3):
        announce(conn, "acme", f"a{n}")
    clock = MovableClock()
    killed, survivor = dispatcher_for(clock), dispatcher_for(clock)

    # The claim commits; then the dispatcher dies before sending anything.
    killed.store.open()
    claimed = killed.store.claim(clock(), 10, 10, {}, clock() + timedelta(seconds=5))
    during_lease = survivor.drain()
    clock.advance(timedelta(seconds=5))
    after_lease = survivor.drain()

    assert len(claimed) == 3
    assert during_lease.attempts == 0
    assert after_lease.delivered == 3
    assert webhook_receiver.count == 3 == len(webhook_receiver.distinct_ids())
    assert {row[:2] for row in delivery_rows(conn).values()} == {("delivered", 1)}


def test_in_aws_a_loopback_or_http_target_is_refused_and_recorded_as_a_failed_attempt(
    conn: Conn, dispatcher_for: Callable[..., WebhookDispatcher], webhook_receiver: WebhookReceiver
) -> None:
    subscribe_receiver(conn, "acme", webhook_receiver, "/acme")
    announce(conn, "acme", "a1")

    report = dispatcher_for(MovableClock(), webhook_allow_local=False).drain()

    ((delivery_id, (status, attempts, _, _)),) = delivery_rows(conn).items()
    ((_, _, status_code, error, _),) = attempt_rows(conn, delivery_id)
    assert webhook_receiver.count == 0
    assert (status, attempts, status_code) == ("pending", 1, None)
    assert error == "target refused: the URL must use https"
    assert report.retried == 1


@pytest.mark.parametrize("address", ["10.0.0.5", "169.254.169.254", "fd00::5", "::ffff:192.168.0.9", "127.0.0.1"])
def test_a_name_resolving_to_a_private_address_at_send_time_is_refused_and_recorded(
    conn: Conn, dispatcher_for: Callable[..., WebhookDispatcher], address: str
) -> None:
    # The subscription was accepted when its name resolved to a public address; now it resolves inside.
    subscribe(conn, "acme", "https://hooks.example.com/sluice")
    announce(conn, "acme", "a1")
    dispatcher = dispatcher_for(MovableClock(), webhook_allow_local=False)
    dispatcher.sender = HttpWebhookSender(TargetPolicy(allow_local=False), 2, resolve=lambda host, port: [address])

    report = dispatcher.drain()

    ((delivery_id, (status, attempts, _, _)),) = delivery_rows(conn).items()
    ((_, _, status_code, error, _),) = attempt_rows(conn, delivery_id)
    assert (status, attempts, status_code, report.retried) == ("pending", 1, None, 1)
    assert error == f"target refused: the host 'hooks.example.com' resolves to {address}, which is not a public address"


def test_a_redirect_is_not_followed_and_fails_the_attempt(
    conn: Conn, dispatcher_for: Callable[..., WebhookDispatcher], webhook_receiver: WebhookReceiver
) -> None:
    subscribe_receiver(conn, "acme", webhook_receiver, "/acme")
    announce(conn, "acme", "a1")
    webhook_receiver.answer(307)

    report = dispatcher_for(MovableClock()).drain()

    assert webhook_receiver.count == 1
    assert (report.delivered, report.retried) == (0, 1)
    assert conn.execute("SELECT status_code FROM webhook_attempts").fetchone() == (307,)


# --- https: the checked address, the URL's host name ---------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def tls_contexts(folder: Path, host: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for ``host`` from a test CA, and a client context trusting that CA."""
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def certificate(subject: str, public_key: Any, *extensions: tuple[Any, bool]) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(_name("sluice test CA"))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(ca_key, hashes.SHA256())

    ca = certificate(
        "sluice test CA",
        ca_key.public_key(),
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
        (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
    )
    leaf = certificate(
        host,
        key.public_key(),
        (x509.SubjectAlternativeName([x509.DNSName(host)]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "leaf.pem", folder / "key.pem")
    client = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    return server, client


@pytest.fixture
def https_receiver(tmp_path: Path) -> Iterator[tuple[WebhookReceiver, ssl.SSLContext, list[str | None]]]:
    """A receiver speaking https with a certificate for hooks.example.test; the client context trusting it; the
    server names (SNI) its clients asked for."""
    server, client = tls_contexts(tmp_path, "hooks.example.test")
    asked: list[str | None] = []
    server.sni_callback = lambda _socket, name, _context: asked.append(name)
    receiver = WebhookReceiver(tls=server).start()
    yield receiver, client, asked
    receiver.stop()


@pytest.mark.parametrize(("host", "delivered"), [("hooks.example.test", True), ("other.example.test", False)])
def test_https_goes_to_the_checked_address_with_the_urls_host_name_and_a_verified_certificate(
    conn: Conn,
    dispatcher_for: Callable[..., WebhookDispatcher],
    https_receiver: tuple[WebhookReceiver, ssl.SSLContext, list[str | None]],
    host: str,
    delivered: bool,
) -> None:
    receiver, client_tls, asked = https_receiver
    path = "/hook?tenant=acme"
    _, secret = subscribe(conn, "acme", f"https://{host}:{receiver.port}{path}")
    receiver.url_for(path, secret)
    announce(conn, "acme", "a1")
    resolved: list[str] = []

    def resolve(name: str, port: int) -> list[str]:
        resolved.append(name)
        return ["127.0.0.1"]  # the name's only address, checked (loopback: allowed locally) and connected to

    dispatcher = dispatcher_for(MovableClock())
    dispatcher.sender = HttpWebhookSender(TargetPolicy(allow_local=True), 2, resolve=resolve, tls=client_tls)

    report = dispatcher.drain()

    assert resolved == [host]
    assert asked == [host]
    ((delivery_id, (status, _, _, _)),) = delivery_rows(conn).items()
    if delivered:
        (received,) = receiver.received()
        assert received.verified
        assert received.headers["host"] == f"{host}:{receiver.port}"
        assert (status, report.delivered) == ("delivered", 1)
    else:
        # The certificate is for hooks.example.test: the name in the URL is what it is checked against.
        assert receiver.count == 0
        ((_, _, status_code, error, _),) = attempt_rows(conn, delivery_id)
        assert (status, status_code) == ("pending", None)
        assert error.startswith("TLS failed: ")
        assert "certificate" in error


def test_a_run_wakes_for_a_retry_falling_due_without_a_notification(
    conn: Conn, dispatcher_for: Callable[..., WebhookDispatcher], webhook_receiver: WebhookReceiver
) -> None:
    subscribe_receiver(conn, "acme", webhook_receiver, "/acme")
    webhook_receiver.answer(503)
    dispatcher = dispatcher_for(None, webhook_timeout_seconds=1, webhook_reserve_ms=1_000)
    deadline = time.monotonic() + 9
    reports = []
    run = threading.Thread(
        target=lambda: reports.append(dispatcher.run(lambda: int((deadline - time.monotonic()) * 1000)))
    )
    run.start()

    announce(conn, "acme", "a1", datetime.now(UTC))
    (first,) = webhook_receiver.wait_for(1, timeout_s=2)
    webhook_receiver.answer(204)
    first_answered, second = webhook_receiver.wait_for(2, timeout_s=8)
    run.join(10)

    # The first attempt failed; the second came when its 5 s were up, woken by the retry's due time alone.
    assert first_answered == first
    assert 4.5 < second.received_at - first.received_at < 6.5
    assert second.webhook_id == first.webhook_id
    assert [(r.delivered, r.retried) for r in reports] == [(1, 1)]


def test_a_subscription_deleted_while_its_delivery_is_in_flight_leaves_the_run_going(
    conn: Conn, dispatcher_for: Callable[..., WebhookDispatcher], webhook_receiver: WebhookReceiver
) -> None:
    gone = subscribe_receiver(conn, "acme", webhook_receiver, "/gone")
    subscribe_receiver(conn, "acme", webhook_receiver, "/kept")
    webhook_receiver.answer(204, delay_s=0.5, path="/gone")
    announce(conn, "acme", "a1")
    dispatcher = dispatcher_for(MovableClock())
    reports = []
    drain = threading.Thread(target=lambda: reports.append(dispatcher.drain()))

    drain.start()
    webhook_receiver.wait_for(1, path="/kept")
    conn.execute("DELETE FROM webhooks WHERE id = %s", (gone,))  # the API's DELETE: its deliveries go with it
    drain.join(10)

    assert [(r.delivered, r.superseded) for r in reports] == [(1, 1)]
    assert {row[:2] for row in delivery_rows(conn).values()} == {("delivered", 1)}
