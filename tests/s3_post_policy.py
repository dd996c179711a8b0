"""What S3 in AWS checks of a presigned POST form before it stores the file, checked here because the local S3
(moto 5.2.5) checks none of it: its POST handler stores whatever it is sent, with no signature, expiry, key or
length check.

``refusals`` follows the S3 POST policy rules (AWS SigV4 "Creating a POST policy"): the policy is base64 JSON with
an ``expiration`` and ``conditions``; its SigV4 signature is an HMAC of the base64 text with the key derived from
the signer's secret, date, region and service; every form field must satisfy a condition (an exact match, a
``starts-with`` or, for the body, ``content-length-range``), and every condition must be satisfied.
"""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

# Fields S3 does not match against the policy: the policy and signature themselves, the file, and x-ignore-*.
_UNMATCHED = {"policy", "x-amz-signature", "file"}


def refusals(url: str, fields: dict[str, str], body_size: int, secret_key: str, now: datetime) -> list[str]:
    """Why S3 would refuse to store a body of ``body_size`` bytes POSTed to ``url`` with ``fields`` at ``now``
    (empty: it would store it)."""
    found: list[str] = []
    policy_text = fields.get("policy", "")
    if not _signature_matches(policy_text, fields, secret_key):
        found.append("the signature does not match the policy")
    policy: dict[str, Any] = json.loads(base64.b64decode(policy_text))
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    if now.astimezone(UTC) >= expiration:
        found.append(f"the policy expired at {policy['expiration']}")
    form = {name.lower(): value for name, value in fields.items()}
    form["bucket"] = bucket_of(url)
    matched: set[str] = set()
    for condition in policy["conditions"]:
        name, problem = _check(condition, form, body_size)
        matched.add(name)
        if problem:
            found.append(problem)
    unmatched = {
        name for name in form if name not in matched and name not in _UNMATCHED and not name.startswith("x-ignore-")
    }
    found += [f"the field {name} is not allowed by any condition" for name in sorted(unmatched)]
    return found


def bucket_of(url: str) -> str:
    """The bucket a form URL names: in its host (``<bucket>.s3.<region>.amazonaws.com``) or its path."""
    parts = urlsplit(url)
    if ".s3." in parts.netloc:
        return parts.netloc[: parts.netloc.index(".s3.")]
    return parts.path.strip("/").split("/")[0]


def _check(condition: Any, form: dict[str, str], body_size: int) -> tuple[str, str | None]:
    """The field a condition names, and what is wrong with the form against it (None: satisfied)."""
    if isinstance(condition, dict):
        ((name, wanted),) = condition.items()
        return _compare("eq", name.lower(), str(wanted), form)
    if condition[0] == "content-length-range":
        _, low, high = condition
        within = low <= body_size <= high
        return "content-length", None if within else f"the body has {body_size} bytes, not {low} to {high}"
    operator, subject, wanted = condition
    return _compare(operator, subject.removeprefix("$").lower(), str(wanted), form)


def _compare(operator: str, name: str, wanted: str, form: dict[str, str]) -> tuple[str, str | None]:
    value = form.get(name)
    if value is None:
        return name, f"the field {name} is missing"
    ok = value == wanted if operator == "eq" else value.startswith(wanted)
    return name, None if ok else f"the field {name} is {value!r}, the policy wants {operator} {wanted!r}"


def _signature_matches(policy_text: str, fields: dict[str, str], secret_key: str) -> bool:
    _, date, region, service, _ = fields["x-amz-credential"].split("/")
    key = f"AWS4{secret_key}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, policy_text.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("x-amz-signature", ""))
