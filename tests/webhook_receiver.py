"""A real webhook receiver on 127.0.0.1 for the tests: it checks every delivery's Standard Webhooks signature with
``sluice.domain.webhooks.verify``, records what it got, and can be taken down, made to answer an error or to be slow.

A receiver, as the specification asks of one, treats a repeated ``webhook-id`` as the same message: ``count`` is
every request that arrived, ``distinct_ids`` the messages it would act on. A delivery to a path with no secret
known is recorded, unverified.

    receiver = WebhookReceiver()
    receiver.start()
    url = receiver.url_for("/tenant-a", secret)   # the secret that path's deliveries must be signed with
    receiver.answer(503)                          # every path answers 503 (or answer(503, path="/tenant-a"))
    receiver.go_down() ... receiver.come_back()   # connections refused meanwhile, then the same port again
    receiver.wait_for(3, timeout_s=5)

With ``tls`` (a server-side ``ssl.SSLContext`` holding a certificate) it speaks https.
"""

import json
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sluice.domain.webhooks import verify


@dataclass(frozen=True, slots=True)
class ReceivedDelivery:
    """One request as the receiver got it."""

    path: str
    headers: Mapping[str, str]  # lower-case names
    body: str
    verified: bool
    received_at: float  # time.time() when the body was read
    status: int  # what the receiver answered

    @property
    def webhook_id(self) -> str | None:
        """The message id (``webhook-id``)."""
        return self.headers.get("webhook-id")

    @property
    def timestamp(self) -> int | None:
        """The attempt's ``webhook-timestamp``, in seconds."""
        value = self.headers.get("webhook-timestamp")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def payload(self) -> Any:
        """The body parsed as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _Server(ThreadingHTTPServer):
    # socketserver's backlog of 5 drops the connections of a burst of senders (a SYN retried a second later).
    request_queue_size = 128


@dataclass(frozen=True, slots=True)
class _Behaviour:
    status: int = 204
    delay_s: float = 0.0


class WebhookReceiver:
    """An HTTP server in a thread of its own, on a free loopback port it keeps while taken down and brought back."""

    def __init__(
        self, secrets: Mapping[str, str] | None = None, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self._host = host
        # A server context with a certificate: the receiver speaks https.
        self._tls = tls
        self._port = 0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._secrets: dict[str, str] = dict(secrets or {})
        self._behaviours: dict[str | None, _Behaviour] = {None: _Behaviour()}
        self._deliveries: list[ReceivedDelivery] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Set when stopping: a slow answer stops waiting.
        self._stopping = threading.Event()

    # --- life ---------------------------------------------------------------------------------------------------
    def start(self) -> "WebhookReceiver":
        """Listen (on a free port the first time, on the same port after ``go_down``)."""
        self._stopping.clear()
        server = _Server((self._host, self._port), self._handler_class())
        server.daemon_threads = True
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=f"receiver-{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: the port refuses connections until ``start`` again."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def go_down(self) -> None:
        """Close the listening socket: connections to the port are refused (a receiver that is down)."""
        self.stop()

    def come_back(self) -> None:
        """Listen again on the same port."""
        self.start()

    @property
    def is_up(self) -> bool:
        """Is it listening?"""
        return self._server is not None

    # --- where and how ------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port (known once started)."""
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https`` with TLS)."""
        return f"{'https' if self._tls else 'http'}://{self._host}:{self._port}"

    def url_for(self, path: str, secret: str | None = None) -> str:
        """The URL of ``path`` (starting with "/"); with ``secret``, the secret its deliveries are checked with."""
        if secret is not None:
            with self._lock:
                self._secrets[path] = secret
        return self.base_url + path

    def answer(self, status: int, *, delay_s: float = 0.0, path: str | None = None) -> None:
        """Answer ``status`` after ``delay_s`` seconds, on ``path`` or (None) on every path without its own."""
        with self._lock:
            self._behaviours[path] = _Behaviour(status, delay_s)

    # --- what arrived -------------------------------------------------------------------------------------------
    @property
    def deliveries(self) -> list[ReceivedDelivery]:
        """Every request received, in order of arrival (repeats included)."""
        with self._lock:
            return list(self._deliveries)

    def received(self, path: str | None = None) -> list[ReceivedDelivery]:
        """The requests received on ``path`` (all when None)."""
        return [delivery for delivery in self.deliveries if path is None or delivery.path == path]

    @property
    def count(self) -> int:
        """Requests received, repeats included."""
        with self._lock:
            return len(self._deliveries)

    def distinct_ids(self, path: str | None = None) -> set[str]:
        """The distinct ``webhook-id`` values received (what a receiver deduplicating by id acts on)."""
        return {d.webhook_id for d in self.received(path) if d.webhook_id is not None}

    def accepted(self, path: str | None = None) -> list[ReceivedDelivery]:
        """The requests answered 2xx, once per ``webhook-id`` (the first), as a deduplicating receiver keeps them."""
        seen: set[str | None] = set()
        kept = []
        for delivery in self.received(path):
            if 200 <= delivery.status < 300 and delivery.webhook_id not in seen:
                seen.add(delivery.webhook_id)
                kept.append(delivery)
        return kept

    def wait_for(self, count: int, timeout_s: float = 10.0, path: str | None = None) -> list[ReceivedDelivery]:
        """Wait until ``count`` requests (on ``path``, or on any) have arrived; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while True:
                found = [d for d in self._deliveries if path is None or d.path == path]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(found)} of {count} deliveries arrived within {timeout_s} s")
                self._arrived.wait(left)

    def clear(self) -> None:
        """Forget what arrived."""
        with self._lock:
            self._deliveries.clear()

    # --- the server's side --------------------------------------------------------------------------------------
    def _record(self, path: str, headers: dict[str, str], body: str) -> int:
        with self._lock:
            secret = self._secrets.get(path)
            behaviour = self._behaviours.get(path) or self._behaviours[None]
        verified = secret is not None and verify(secret, headers, body)
        received_at = time.time()
        if behaviour.delay_s:
            self._stopping.wait(behaviour.delay_s)
        delivery = ReceivedDelivery(path, headers, body, verified, received_at, behaviour.status)
        with self._arrived:
            self._deliveries.append(delivery)
            self._arrived.notify_all()
        return behaviour.status

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The head and the body of an answer go out as two writes: without TCP_NODELAY the body would wait for
            # the sender's delayed ACK of the head (40 ms on Linux), which no real receiver's stack adds.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace")
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = receiver._record(self.path, headers, body)
                answer = b'{"ok":true}' if 200 <= status < 300 else b'{"error":"as told"}'
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(answer)))
                    # One request per connection: a receiver taken down must not keep serving an open one.
                    self.send_header("connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    self.wfile.write(answer)
                except OSError:
                    pass  # the sender gave up waiting (its timeout) and closed the connection

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
