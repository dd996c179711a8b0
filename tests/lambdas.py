"""Running the functions of template.yaml in-process: their handler modules, events and a Lambda context."""

import copy
import importlib.util
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from sluice_tools.local.template import load_template

from .paths import REPO_ROOT

EVENTS_DIR = REPO_ROOT / "events"
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


@cache
def template() -> dict[str, Any]:
    """template.yaml, parsed once per session."""
    return load_template(TEMPLATE_PATH)


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``events/<name>``, free to change."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
    return copy.deepcopy(event)


def handler_module(logical_id: str) -> ModuleType:
    """Import a function's handler module from the CodeUri the template gives it, under a unique name."""
    properties = template()["Resources"][logical_id]["Properties"]
    module_name, _ = properties["Handler"].rsplit(".", 1)
    path: Path = REPO_ROOT / properties["CodeUri"] / f"{module_name}.py"
    spec = importlib.util.spec_from_file_location(f"{logical_id}_{module_name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class FakeLambdaContext:
    """The parts of the Lambda context that Powertools reads."""

    function_name: str = "sluice-test"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:eu-central-1:123456789012:function:sluice-test"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"
    remaining_ms: int = 15_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
