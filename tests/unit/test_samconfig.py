"""samconfig.toml's sample environment names only the template's parameters, each with a value it allows."""

import re
import tomllib
from typing import Any

import pytest

from ..lambdas import template
from ..paths import REPO_ROOT


def example_overrides() -> dict[str, str]:
    config: dict[str, Any] = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    overrides: list[str] = config["example"]["deploy"]["parameters"]["parameter_overrides"]
    return dict(override.split("=", 1) for override in overrides)


def test_the_sample_sets_every_parameter_without_a_default() -> None:
    required = {name for name, body in template()["Parameters"].items() if "Default" not in body}

    assert required <= set(example_overrides())


@pytest.mark.parametrize(("name", "value"), sorted(example_overrides().items()))
def test_each_sample_value_is_one_the_template_allows(name: str, value: str) -> None:
    parameter = template()["Parameters"][name]

    if "AllowedPattern" in parameter:
        assert re.fullmatch(parameter["AllowedPattern"], value), f"{name}={value}"
    if "AllowedValues" in parameter:
        assert value in [str(allowed) for allowed in parameter["AllowedValues"]], f"{name}={value}"
    assert len(value) >= parameter.get("MinLength", 0)


def test_the_sample_is_a_placeholder_account() -> None:
    accounts = {account for value in example_overrides().values() for account in re.findall(r":(\d{12}):", value)}

    assert accounts == {"111122223333"}
