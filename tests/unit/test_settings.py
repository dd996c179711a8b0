"""Settings come from the environment, validated once."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from sluice.settings import LOCAL_DB_DSN, DatabaseSettings, MigrationSettings


def test_defaults_point_at_the_local_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLUICE_DB_DSN", "SLUICE_DB_STATEMENT_TIMEOUT_MS", "SLUICE_MIGRATIONS_DIR"):
        monkeypatch.delenv(name, raising=False)

    settings = MigrationSettings()

    assert settings.db_dsn == LOCAL_DB_DSN == "postgresql://postgres@127.0.0.1:5433/sluice"
    assert settings.migrations_dir == Path("infra/migrations")


def test_environment_overrides_and_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_DB_DSN", "postgresql://worker@db.internal/sluice")
    monkeypatch.setenv("SLUICE_DB_STATEMENT_TIMEOUT_MS", "1500")

    assert DatabaseSettings().db_statement_timeout_ms == 1500
    assert DatabaseSettings().db_dsn == "postgresql://worker@db.internal/sluice"

    monkeypatch.setenv("SLUICE_DB_STATEMENT_TIMEOUT_MS", "0")
    with pytest.raises(ValidationError, match="db_statement_timeout_ms"):
        DatabaseSettings()
