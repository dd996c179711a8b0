"""Webhook signing and the target policy (sluice.domain.webhooks), checked against the Standard Webhooks
specification's published example and a signature computed here independently."""

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from sluice.domain.webhooks import (
    TargetPolicy,
    TargetRefusedError,
    check_target,
    new_message_id,
    new_secret,
    secret_key,
    signature,
    signed_headers,
    verify,
)

# The example of the specification's reference libraries (standard-webhooks, svix).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signature_is_the_specifications_example() -> None:
    assert signature(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_the_signature_is_hmac_sha256_of_id_timestamp_and_body_keyed_with_the_decoded_secret() -> None:
    secret = new_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    body = '{"type":"alarm.raised","data":{"value":3.5,"name":"Druck über"}}'
    digest = hmac.new(key, f"msg_1.1700000000.{body}".encode(), hashlib.sha256).digest()

    assert signature(secret, "msg_1", 1700000000, body) == "v1," + base64.b64encode(digest).decode()


def test_secrets_and_message_ids_are_fresh_and_well_formed() -> None:
    secrets = {new_secret() for _ in range(50)}
    ids = {new_message_id() for _ in range(50)}

    assert len(secrets) == len(ids) == 50
    assert all(secret.startswith("whsec_") and len(secret_key(secret)) == 32 for secret in secrets)
    assert all(message_id.startswith("msg_") for message_id in ids)


def signed() -> dict[str, str]:
    return signed_headers(SPEC_SECRET, SPEC_ID, datetime.fromtimestamp(SPEC_TIMESTAMP, UTC), SPEC_BODY)


def test_verify_accepts_the_headers_signed_for_the_body() -> None:
    headers = signed()

    assert headers["webhook-id"] == SPEC_ID
    assert headers["webhook-timestamp"] == str(SPEC_TIMESTAMP)
    assert headers["webhook-signature"] == SPEC_SIGNATURE
    assert verify(SPEC_SECRET, headers, SPEC_BODY)


def test_verify_accepts_any_one_of_several_signatures() -> None:
    headers = signed() | {"webhook-signature": f"v1,bm90IGl0 {SPEC_SIGNATURE}"}

    assert verify(SPEC_SECRET, headers, SPEC_BODY)


def test_verify_rejects_a_wrong_secret() -> None:
    assert not verify(new_secret(), signed(), SPEC_BODY)


def test_verify_rejects_a_changed_body() -> None:
    assert not verify(SPEC_SECRET, signed(), SPEC_BODY.replace("2432232314", "2432232315"))


def test_verify_rejects_a_changed_timestamp() -> None:
    assert not verify(SPEC_SECRET, signed() | {"webhook-timestamp": str(SPEC_TIMESTAMP + 1)}, SPEC_BODY)


def test_verify_rejects_a_changed_id_and_missing_or_malformed_headers() -> None:
    assert not verify(SPEC_SECRET, signed() | {"webhook-id": "msg_other"}, SPEC_BODY)
    assert not verify(SPEC_SECRET, signed() | {"webhook-timestamp": "yesterday"}, SPEC_BODY)
    assert not verify(SPEC_SECRET, {k: v for k, v in signed().items() if k != "webhook-signature"}, SPEC_BODY)


# --- the target policy ------------------------------------------------------------------------------------------

AWS = TargetPolicy(allow_local=False)
LOCAL = TargetPolicy(allow_local=True)


def resolving_to(*addresses: str):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",  # noqa: S104 - an address refused, not one listened on
        "100.64.0.1",
        "224.0.0.1",
        "::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::",
    ],
)
def test_in_aws_no_private_loopback_or_link_local_address_is_a_target(address: str) -> None:
    with pytest.raises(TargetRefusedError, match="not a public address"):
        check_target("https://hooks.example.com/x", AWS, resolving_to(address))


def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    with pytest.raises(TargetRefusedError, match=r"resolves to 10\.0\.0\.7"):
        check_target("https://hooks.example.com/", AWS, resolving_to("93.184.216.34", "10.0.0.7"))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111"])
def test_in_aws_https_to_a_public_address_is_a_target(address: str) -> None:
    assert check_target("https://hooks.example.com/x?a=1", AWS, resolving_to(address)) == [address]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/", "must use https"),
        ("ftp://hooks.example.com/", "must use https"),
        ("https:///nohost", "names no host"),
        ("https://user:pw@hooks.example.com/", "credentials"),
        ("https://hooks.example.com:99999/", "port"),
        ("https://hooks.example.com:0/", "port"),
        ("https://[zz]/", "not a name or an address"),
        ("https://[::1/", "not a name or an address"),
    ],
)
def test_in_aws_other_urls_are_refused_saying_why(url: str, why: str) -> None:
    with pytest.raises(TargetRefusedError, match=why):
        check_target(url, AWS, resolving_to("93.184.216.34"))


def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(TargetRefusedError, match="does not resolve"):
        check_target("https://hooks.example.com/", AWS, resolving_to())


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_locally_http_to_loopback_is_a_target(address: str) -> None:
    assert check_target("http://localhost:8080/hook", LOCAL, resolving_to(address)) == [address]


@pytest.mark.parametrize("address", ["10.0.0.1", "192.168.1.1", "169.254.169.254", "fe80::1"])
def test_locally_private_and_link_local_addresses_stay_refused(address: str) -> None:
    with pytest.raises(TargetRefusedError):
        check_target("http://hooks.internal/", LOCAL, resolving_to(address))
