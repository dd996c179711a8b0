"""Fixtures shared by the integration tests that drive LoadWorkerFunction."""

from collections.abc import Iterator

import pytest

from sluice.settings import get_load_worker_settings
from sluice_tools.local.template import StackContext, function_environment

from ..lambdas import handler_module
from ..worker_harness import WorkerHarness


@pytest.fixture
def worker(
    aws_stack: StackContext, migrated_db: str, database_secret: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerHarness]:
    """LoadWorkerFunction, imported cold, with the template's environment; its DSN comes from a Secrets Manager
    secret in moto, as in AWS."""
    for name, value in function_environment(aws_stack, "LoadWorkerFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", database_secret)
    get_load_worker_settings.cache_clear()
    harness = WorkerHarness(handler_module("LoadWorkerFunction"), aws_stack, migrated_db)
    yield harness
    harness.module.get_service().connector.close()
    get_load_worker_settings.cache_clear()
