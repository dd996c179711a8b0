"""Traces record no response bodies: Powertools' Tracer stores a decorated function's return value as trace
metadata unless told not to, and a function's return value here is a tenant's jobs, rows or readings."""

import ast
from pathlib import Path

import pytest

from ..paths import REPO_ROOT

CAPTURES = {"capture_method", "capture_lambda_handler"}
HANDLERS = sorted((REPO_ROOT / "functions").glob("*/app.py"))


def tracer_decorators(source: Path) -> list[ast.expr]:
    """Every ``@tracer.capture_method`` / ``@tracer.capture_lambda_handler`` in a module, called or bare."""
    found = []
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Attribute) and target.attr in CAPTURES:
                    found.append(decorator)
    return found


# ConsoleFunction serves its own files and reaches nothing a trace would show; Lambda's own segment (Tracing: Active)
# still times it. The X-Ray SDK would double its cold start, which a person loading the console waits for.
UNTRACED = {"console"}


def test_every_function_is_traced() -> None:
    assert {path.parent.name for path in HANDLERS} >= {"ingest_api", "job_status", "quarantine", "health"}
    for path in HANDLERS:
        if path.parent.name in UNTRACED:
            assert not tracer_decorators(path)
            assert "aws_xray_sdk" not in path.read_text(encoding="utf-8")
            continue
        assert tracer_decorators(path), f"{path.parent.name} has no traced handler"


@pytest.mark.parametrize("path", HANDLERS, ids=lambda path: path.parent.name)
def test_no_traced_function_records_its_return_value(path: Path) -> None:
    unguarded = [
        f"line {decorator.lineno}"
        for decorator in tracer_decorators(path)
        if not (
            isinstance(decorator, ast.Call)
            and any(
                keyword.arg == "capture_response"
                and isinstance(keyword.value, ast.Constant)
                and keyword.value.value is False
                for keyword in decorator.keywords
            )
        )
    ]

    assert unguarded == [], f"{path.parent.name}: capture_response=False missing at {', '.join(unguarded)}"
