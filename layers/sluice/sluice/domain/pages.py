"""Opaque keyset cursors: where the next page starts, in a form clients pass back untouched.

A cursor names a position (the sort key of the last row a page showed), never an offset, so rows added while a
client pages cannot shift the pages it has yet to read. It carries no tenant: the caller's tenant always comes from
its token, so a cursor handed to another tenant can only position that tenant's own listing.
"""

import base64
import binascii
import json
from typing import Any

from sluice.errors import InvalidRequestError, Problem


def encode_cursor(kind: str, position: dict[str, Any]) -> str:
    """A URL-safe cursor for ``position`` in a listing of ``kind``."""
    text = json.dumps({"k": kind, "p": position}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, field: str = "cursor") -> dict[str, Any]:
    """The position a cursor of ``kind`` names; 400 for anything this API did not hand out."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        decoded = None
    if not isinstance(decoded, dict) or decoded.get("k") != kind or not isinstance(decoded.get("p"), dict):
        raise bad_cursor(field)
    position: dict[str, Any] = decoded["p"]
    return position


def bad_cursor(field: str = "cursor") -> InvalidRequestError:
    """The error for a cursor that decodes but names no usable position."""
    return InvalidRequestError(
        "the cursor is not one this listing handed out",
        [Problem(field=field, reason="pass next_cursor from the previous page unchanged")],
    )
