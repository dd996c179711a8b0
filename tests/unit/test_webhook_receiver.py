"""The tests' webhook receiver is trustworthy: it accepts what verify accepts, refuses connections while down, comes
back on its port, answers as told and counts repeats apart from distinct messages."""

import http.client
from datetime import UTC, datetime

import pytest

from sluice.domain.webhooks import new_secret, signed_headers

from ..webhook_receiver import WebhookReceiver

BODY = '{"type":"alarm.raised","timestamp":"2026-01-01T00:00:00Z","data":{}}'


def post(receiver: WebhookReceiver, path: str, headers: dict[str, str], body: str = BODY) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
    try:
        connection.request("POST", path, body.encode(), headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_signed_delivery_is_verified_and_a_forged_one_is_not(webhook_receiver: WebhookReceiver) -> None:
    secret = new_secret()
    webhook_receiver.url_for("/a", secret)
    headers = signed_headers(secret, "msg_1", datetime.now(UTC), BODY)

    assert post(webhook_receiver, "/a", headers) == 204
    assert post(webhook_receiver, "/a", signed_headers(new_secret(), "msg_2", datetime.now(UTC), BODY)) == 204
    assert post(webhook_receiver, "/a", headers, BODY.replace("raised", "cleared")) == 204

    first, forged, changed = webhook_receiver.wait_for(3)
    assert (first.verified, forged.verified, changed.verified) == (True, False, False)
    assert first.webhook_id == "msg_1"
    assert first.payload["type"] == "alarm.raised"


def test_repeats_are_counted_apart_from_distinct_messages(webhook_receiver: WebhookReceiver) -> None:
    secret = new_secret()
    webhook_receiver.url_for("/a", secret)
    for message_id in ("msg_1", "msg_1", "msg_2"):
        post(webhook_receiver, "/a", signed_headers(secret, message_id, datetime.now(UTC), BODY))

    assert webhook_receiver.count == 3
    assert webhook_receiver.distinct_ids() == {"msg_1", "msg_2"}
    assert [d.webhook_id for d in webhook_receiver.accepted()] == ["msg_1", "msg_2"]


def test_down_refuses_connections_and_comes_back_on_the_same_port(webhook_receiver: WebhookReceiver) -> None:
    port = webhook_receiver.port
    webhook_receiver.go_down()

    with pytest.raises(ConnectionRefusedError):
        post(webhook_receiver, "/a", {})

    webhook_receiver.come_back()
    assert webhook_receiver.port == port
    assert post(webhook_receiver, "/a", {}) == 204


def test_it_answers_the_status_it_is_told_per_path(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.answer(503)
    webhook_receiver.answer(200, path="/ok")

    assert post(webhook_receiver, "/a", {}) == 503
    assert post(webhook_receiver, "/ok", {}) == 200
    assert webhook_receiver.accepted() == webhook_receiver.received("/ok")
