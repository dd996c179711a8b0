"""The Lambda layer holds what the functions run and nothing else: ``make build`` builds it as a deployment would
(``sam build``, arm64 wheels), and its ``sluice`` package is read as Lambda would load it."""

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..paths import REPO_ROOT

LAYER = REPO_ROOT / ".aws-sam" / "build" / "SharedLayer" / "python"
FUNCTIONS = REPO_ROOT / "functions"


@pytest.fixture(scope="module")
def built_layer() -> Path:
    """The layer as ``make build`` leaves it."""
    built = subprocess.run(["make", "-C", str(REPO_ROOT), "build"], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return LAYER


def imported_names(path: Path) -> Iterator[str]:
    """The absolute imports a module runs (those under ``if TYPE_CHECKING:`` only type-check, so they are left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for statement in block.body
        for node in ast.walk(statement)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def module_name(root: Path, path: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def test_the_layer_holds_no_development_code(built_layer: Path) -> None:
    modules = {module_name(built_layer, path) for path in (built_layer / "sluice").rglob("*.py")}

    assert "sluice.domain.load" in modules  # the package is there
    assert not (built_layer / "sluice_tools").exists()
    # sluice.adapters.systems is SystemsFunction's register (the CLI's own side of it stays in sluice_tools.systems).
    development = {"sluice.local", "sluice.cli", "sluice.adapters.redrive"}
    assert not {module for module in modules if module.startswith(tuple(development)) or "fault" in module}


def test_every_layer_module_imports_only_the_standard_library_and_what_the_layer_installs(built_layer: Path) -> None:
    installed = {path.name.removesuffix(".py") for path in built_layer.iterdir()} - {"requirements.txt"}
    missing = {
        f"{module_name(built_layer, path)} imports {name}"
        for path in (built_layer / "sluice").rglob("*.py")
        for name in imported_names(path)
        if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] not in installed
    }

    assert not missing, sorted(missing)


def test_every_layer_module_is_run_by_some_function(built_layer: Path) -> None:
    # Given the modules each function's handler imports, followed through the layer's own imports
    modules = {module_name(built_layer, path): path for path in (built_layer / "sluice").rglob("*.py")}
    reached: set[str] = set()
    pending = [name for handler in FUNCTIONS.glob("*/app.py") for name in imported_names(handler)]
    while pending:
        parts = pending.pop().split(".")
        # Importing sluice.domain.load runs sluice/__init__.py and sluice/domain/__init__.py first.
        for end in range(1, len(parts) + 1):
            prefix = ".".join(parts[:end])
            if prefix in modules and prefix not in reached:
                reached.add(prefix)
                pending.extend(imported_names(modules[prefix]))

    # Then no module of the layer is left that no function runs
    assert set(modules) - reached == set()
