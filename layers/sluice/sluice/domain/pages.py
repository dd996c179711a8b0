"""Opaque keyset cursors: where the next page starts, in a form clients pass back untouched.

A cursor names a position (the sort key of the last row a page showed), never an offset, so rows added while a
client pages cannot shift the pages it has yet to read. It carries no tenant: the caller's tenant always comes from
its token, so a cursor handed to another tenant can only position that tenant's own listing.

A page is bounded twice: by the ``limit`` a client asks for, and by bytes. Lambda refuses to return an answer over
6 MB (API Gateway then answers 500), so a page stops before the item that would take it past ``PAGE_BYTES_MAX``,
and its cursor continues from there. The first item is always shown, so every page moves the listing forward.
"""

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from sluice.errors import InvalidRequestError, Problem
from sluice.limits import PAGE_BYTES_MAX


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


def fill_page[Item: BaseModel](
    items: Iterable[Item], limit: int, budget: int = PAGE_BYTES_MAX
) -> tuple[list[Item], bool]:
    """The leading ``items`` that fit in ``limit`` items and ``budget`` bytes of the answer (the first always fits),
    and whether any item was left out. Reads one item past the page at most."""
    page: list[Item] = []
    used = 0
    for item in items:
        size = answer_bytes(item)
        if len(page) == limit or (page and used + size > budget):
            return page, True
        page.append(item)
        used += size
    return page, False


def answer_bytes(item: BaseModel) -> int:
    """The bytes ``item`` adds to a Lambda answer that carries it in a list in a JSON body, separator included.

    The body is itself a JSON string inside the answer, so its text is escaped a second time (a quote in a value
    takes four bytes there, a control character seven). The python3.12+ runtime writes the answer with
    ``ensure_ascii=False``: other characters count as their UTF-8 bytes."""
    escaped = json.dumps(item.model_dump_json(), ensure_ascii=False)
    return len(escaped.encode("utf-8", "surrogatepass")) - 1  # the two quotes around it, less one for the comma
