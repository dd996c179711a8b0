"""Listing pages bounded by bytes as well as rows: what an item costs in a Lambda answer, and where a page stops."""

import json
from collections.abc import Iterator

from pydantic import BaseModel

from sluice.domain.pages import answer_bytes, fill_page


class Item(BaseModel):
    text: str


def in_answer(items: list[Item]) -> int:
    """The bytes ``items`` take in a Lambda answer whose body is their JSON list (python3.12+ runtime's JSON)."""
    body = "[" + ",".join(item.model_dump_json() for item in items) + "]"
    return len(json.dumps({"body": body}, ensure_ascii=False).encode()) - len(json.dumps({"body": "[]"}).encode())


def test_an_item_costs_its_json_escaped_again_as_the_body_string_is() -> None:
    # Given items whose text escapes differently: plain, quotes (4 bytes each), a control character, non-ASCII
    items = [Item(text="plain"), Item(text='"' * 100), Item(text="\x01\n"), Item(text="é水🙂")]

    # Then each costs what it adds to the answer, a comma between items included
    assert sum(answer_bytes(item) for item in items) - 1 == in_answer(items)
    assert answer_bytes(Item(text='"' * 100)) > 400


def test_a_page_stops_before_the_item_that_would_cross_the_budget() -> None:
    items = [Item(text="x" * 100) for _ in range(5)]
    cost = answer_bytes(items[0])

    page, more = fill_page(iter(items), limit=10, budget=3 * cost)
    assert (len(page), more) == (3, True)

    page, more = fill_page(iter(items), limit=10, budget=3 * cost - 1)
    assert (len(page), more) == (2, True)


def test_a_page_stops_at_its_limit_and_says_whether_more_follow() -> None:
    items = [Item(text=str(n)) for n in range(4)]

    assert fill_page(iter(items), limit=3) == (items[:3], True)
    assert fill_page(iter(items), limit=4) == (items, False)
    assert fill_page(iter([]), limit=4) == ([], False)


def test_the_first_item_always_fits_so_every_page_moves_the_listing_on() -> None:
    huge = [Item(text="x" * 1000), Item(text="y")]

    assert fill_page(iter(huge), limit=10, budget=10) == (huge[:1], True)


def test_a_page_reads_no_more_than_one_item_past_itself() -> None:
    read: list[int] = []

    def items() -> Iterator[Item]:
        for n in range(100):
            read.append(n)
            yield Item(text=str(n))

    page, more = fill_page(items(), limit=3)

    assert (len(page), more, len(read)) == (3, True, 4)
