"""``loads_lenient`` reads a text with the plain decoder first and keeps that document only when it holds every string
of the text; the result is always what the duplicate-key decoder gives: an object naming a key twice, at any depth,
is still a ``RepeatedKeys``."""

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sluice.domain import formats
from sluice.domain.formats import RepeatedKeys, loads_lenient

KEYS = st.sampled_from(["a", "b", "system_id", "readings", ":", "a:b", " ", "", "é", ',"', "x\\y"])
SCALARS = st.one_of(
    st.sampled_from([None, True, False, 0, -0.0, 1.5, 10**30, ":", "", '"', "08:00:00", "\\", "€"]),
    st.text(alphabet=':,"{}[] ab\\é\t', max_size=6),
    st.integers(),
    st.floats(allow_nan=False),
)
SPACES = st.sampled_from(["", " ", "\n", "\t "])


def render(value: Any, space: str) -> str:
    """JSON text of a value whose objects are lists of (key, value) pairs, so that keys can repeat."""
    if type(value) is list and value and type(value[0]) is tuple:
        pairs = (f"{json.dumps(key, ensure_ascii=False)}{space}:{space}{render(item, space)}" for key, item in value)
        return "{" + f",{space}".join(pairs) + "}"
    if type(value) is list:
        return "[" + f",{space}".join(render(item, space) for item in value) + "]"
    if type(value) is dict:  # an empty object
        return "{}"
    return json.dumps(value, ensure_ascii=False)


VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).filter(lambda items: not items or type(items[0]) is not tuple),
        st.lists(st.tuples(KEYS, inner), min_size=1, max_size=5),
        st.just({}),
    ),
    max_leaves=20,
)


def shape(value: Any) -> Any:
    """A value with its types spelled out: a RepeatedKeys differs from the dict it holds, and shows its pairs."""
    if type(value) is RepeatedKeys:
        return ("RepeatedKeys", [(key, shape(item)) for key, item in value.pairs])
    if type(value) is dict:
        return ("dict", [(key, shape(item)) for key, item in value.items()])
    if type(value) is list:
        return ("list", [shape(item) for item in value])
    return (type(value).__name__, repr(value))


def by_the_hook(text: str) -> Any:
    """What the duplicate-key decoder reads: the text inside an array with an escaped quote, which keeps it off the
    plain decoder's way."""
    return loads_lenient(f'["\\"",{text}]')[1]


@settings(max_examples=500, deadline=None)
@given(value=VALUES, space=SPACES)
@example(value=[("a", 1), ("a", 2)], space="")
@example(value=[("readings", [[("a", "08:00"), ("b", ":"), ("a", ":")]]), ("system_id", "x")], space=" ")
@example(value=[("a", [[("b", 1), ("b", 1)]])], space="\n")
@example(value=[("a", "1" + "0" * 5000)], space="")
def test_loads_lenient_reads_as_the_duplicate_key_decoder_does(value: Any, space: str) -> None:
    text = render(value, space)

    assert shape(loads_lenient(text)) == shape(by_the_hook(text))


def test_an_integer_past_the_digit_limit_is_still_read_as_a_float() -> None:
    assert loads_lenient('{"value": ' + "1" * 5000 + "}") == {"value": float("inf")}


@pytest.mark.parametrize("text", ['{"a": 1, "a": 1}', '[{"a": {"b": 1, "b": 2}}]', '{"a": [{}, {"a": 1, "a": 1}]}'])
def test_an_object_naming_a_key_twice_is_found_at_any_depth(text: str) -> None:
    assert "RepeatedKeys" in repr(shape(loads_lenient(text)))


def test_a_document_without_repeats_is_read_by_the_plain_decoder_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    text = '{"system_id": "s", "readings": [{"a": "08:00", "b": [1, "x", {"c": ":"}]}, "text", [["y"]]]}'
    monkeypatch.setattr(formats, "_decoder", None)  # the duplicate-key decoder is not there to be asked

    assert loads_lenient(text) == json.loads(text)
