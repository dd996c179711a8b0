"""Webhooks as the Standard Webhooks specification has them: the events a subscription may ask for, its signing
secret, the signature of a delivery, and which target URLs a subscription may name.

A delivery's headers are ``webhook-id`` (the message id: the same on every attempt, so a receiver drops a repeat),
``webhook-timestamp`` (integer seconds of this attempt) and ``webhook-signature``: ``v1,`` and the base64 of
HMAC-SHA256, keyed with the secret's decoded bytes, over ``{id}.{timestamp}.{body}``.
"""

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

# The events a subscription may name, in the order the docs list them.
EVENT_TYPES: Final = ("alarm.raised", "alarm.cleared", "alarm.acknowledged", "job.completed", "job.failed")
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the specification's prefix, not a secret
# 32 bytes of key: the specification asks for between 24 and 64.
SECRET_BYTES: Final = 32
MESSAGE_PREFIX: Final = "msg_"


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def new_message_id() -> str:
    """A delivery's ``webhook-id``: unique, and the same on every attempt of that delivery."""
    return MESSAGE_PREFIX + secrets.token_hex(16)


def signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header of one attempt (one ``v1`` signature)."""
    signed = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, message_id: str, at: datetime, body: str) -> dict[str, str]:
    """The headers of one attempt sent at ``at``."""
    timestamp = int(at.timestamp())
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }


def verify(secret: str, headers: Mapping[str, str], body: str) -> bool:
    """Whether ``headers`` carry a valid ``v1`` signature of ``body`` (any of the space-separated ones). What a
    receiver runs; the tests' receiver uses it, and so may a client written in Python."""
    try:
        message_id, timestamp = headers["webhook-id"], int(headers["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    expected = signature(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in headers.get("webhook-signature", "").split())


@dataclass(frozen=True, slots=True)
class Announcement:
    """One change to announce: its event type, the key naming the change (``alarm.raised:<alarm id>``,
    ``job.completed:<job id>``: one delivery per subscription and key, however often it is announced), its tenant,
    when it happened and what the body's ``data`` holds."""

    tenant_id: str
    event_type: str
    event_key: str
    at: datetime
    data: Mapping[str, Any]

    @property
    def body(self) -> str:
        """The delivery's body."""
        return event_body(self.event_type, self.at, self.data)


def event_body(event_type: str, at: datetime, data: Mapping[str, Any]) -> str:
    """A delivery's body as sent: ``{"type", "timestamp", "data"}``, the shape the specification recommends. Built
    once, when the delivery is written; every attempt sends (and signs) these exact bytes."""
    return json.dumps(
        {"type": event_type, "timestamp": at.isoformat().replace("+00:00", "Z"), "data": data},
        separators=(",", ":"),
        default=str,
    )


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Which URLs a subscription may name. In AWS: ``https`` only, and every address the host resolves to must be
    public (no private, loopback, link-local, multicast or reserved address: a subscription must not reach into the
    VPC, the instance metadata service or the function itself). Locally (the twin and the tests) ``http`` and
    loopback addresses are allowed as well, so a receiver can run on the machine."""

    allow_local: bool = False


class TargetRefusedError(ValueError):
    """A URL the policy refuses; the message says why, in words for the API's answer."""


# Every address a host name resolves to (``sluice.adapters.outbox.resolve_addresses`` asks the system's
# resolver); raises TargetRefusedError when it resolves to none.
Resolver = Callable[[str, int], Iterable[str]]


def check_target(url: str, policy: TargetPolicy, resolve: Resolver) -> list[str]:
    """The addresses ``url`` may be sent to, or :class:`TargetRefusedError`. The dispatcher checks again before every
    attempt and connects to an address it checked, so a name that later resolves somewhere private is refused."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:  # an unbalanced or invalid bracketed host: "http://[zz]/"
        raise TargetRefusedError("the URL's host is not a name or an address") from exc
    allowed_schemes = ("https", "http") if policy.allow_local else ("https",)
    if parts.scheme not in allowed_schemes:
        raise TargetRefusedError(f"the URL must use {' or '.join(allowed_schemes)}")
    if not host:
        raise TargetRefusedError("the URL names no host")
    if parts.username or parts.password:
        raise TargetRefusedError("the URL must not carry credentials")
    try:
        port = parts.port
    except ValueError as exc:
        raise TargetRefusedError("the URL's port is not a number between 1 and 65535") from exc
    if port == 0:
        raise TargetRefusedError("the URL's port is not a number between 1 and 65535")
    port = port or (443 if parts.scheme == "https" else 80)
    addresses = list(resolve(host, port))
    if not addresses:
        raise TargetRefusedError(f"the host {host!r} does not resolve")
    for address in addresses:
        if not _allowed(ipaddress.ip_address(address.split("%")[0]), policy):
            refused = f"the host {host!r} resolves to {address}, which is not a public address"
            raise TargetRefusedError(refused)
    return addresses


def _allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address, policy: TargetPolicy) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if policy.allow_local and address.is_loopback:
        return True
    return address.is_global and not address.is_multicast
