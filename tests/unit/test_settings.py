"""Settings come from the environment, validated once."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from sluice.settings import (
    AwsSettings,
    FunctionDatabaseSettings,
    IngestApiSettings,
    LoadWorkerSettings,
    MaintenanceSettings,
    QuarantineSettings,
)
from sluice_tools.settings import LOCAL_DB_DSN, DatabaseSettings, MigrationSettings


def test_tool_defaults_point_at_the_local_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLUICE_DB_DSN", "SLUICE_MIGRATIONS_DIR"):
        monkeypatch.delenv(name, raising=False)

    settings = MigrationSettings()

    assert settings.db_dsn == LOCAL_DB_DSN == "postgresql://postgres@127.0.0.1:5433/sluice"
    assert settings.migrations_dir == Path("infra/migrations")


def test_environment_overrides_and_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_DB_SECRET_ARN", raising=False)
    monkeypatch.setenv("SLUICE_DB_DSN", "postgresql://worker@db.internal/sluice")
    monkeypatch.setenv("SLUICE_DB_STATEMENT_TIMEOUT_MS", "1500")

    assert FunctionDatabaseSettings().db_statement_timeout_ms == 1500
    assert FunctionDatabaseSettings().db_dsn == "postgresql://worker@db.internal/sluice"
    assert DatabaseSettings().db_dsn == "postgresql://worker@db.internal/sluice"

    monkeypatch.setenv("SLUICE_DB_STATEMENT_TIMEOUT_MS", "0")
    with pytest.raises(ValidationError, match="db_statement_timeout_ms"):
        FunctionDatabaseSettings()


@pytest.mark.parametrize("empty", [None, ""], ids=["unset", "empty"])
def test_a_functions_database_must_be_named(monkeypatch: pytest.MonkeyPatch, empty: str | None) -> None:
    # No development default: a deployed function missing its secret fails naming the variable to set.
    for name in ("SLUICE_DB_SECRET_ARN", "SLUICE_DB_DSN"):
        if empty is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, empty)

    with pytest.raises(ValidationError, match="SLUICE_DB_SECRET_ARN"):
        FunctionDatabaseSettings()
    with pytest.raises(ValidationError, match="SLUICE_DB_SECRET_ARN"):
        LoadWorkerSettings(jobs_table="jobs", ingest_queue_url="https://sqs.local/ingest")
    with pytest.raises(ValidationError, match="SLUICE_DB_SECRET_ARN"):
        MaintenanceSettings(
            jobs_table="jobs",
            ingest_queue_url="https://sqs.local/ingest",
            dead_letter_queue_url="https://sqs.local/dlq",
        )


def test_either_a_secret_or_a_dsn_names_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_DB_DSN", raising=False)
    monkeypatch.setenv("SLUICE_DB_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db")
    assert FunctionDatabaseSettings().db_dsn is None

    monkeypatch.delenv("SLUICE_DB_SECRET_ARN")
    monkeypatch.setenv("SLUICE_DB_DSN", "postgresql://worker@db.internal/sluice")
    assert FunctionDatabaseSettings().db_secret_arn is None


def test_the_functions_settings_have_no_fault_switches() -> None:
    # Fault injection is a development tool (sluice_tools.faults); nothing a function reads can switch it on.
    for model in (LoadWorkerSettings, IngestApiSettings):
        assert not [name for name in model.model_fields if name.startswith("fault")], model.__name__


def test_an_empty_aws_endpoint_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_AWS_ENDPOINT_URL", "")
    assert AwsSettings().aws_endpoint_url is None

    monkeypatch.setenv("SLUICE_AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    assert AwsSettings().aws_endpoint_url == "http://127.0.0.1:5000"


def test_the_review_limits_default_to_the_apis_bound_and_must_let_a_full_bulk_review_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {"SLUICE_DB_DSN": "postgresql://r@db/s", "SLUICE_JOBS_TABLE": "jobs"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLUICE_RATE_LIMIT_TABLE", "rate")

    defaults = QuarantineSettings()
    assert (defaults.read_rate_limit_requests, defaults.review_rate_limit_requests) == (120, 30)
    assert (defaults.review_max_rows_per_request, defaults.review_rows_per_minute) == (500, 5000)

    monkeypatch.setenv("SLUICE_REVIEW_ROWS_PER_MINUTE", "499")
    with pytest.raises(ValidationError, match="SLUICE_REVIEW_ROWS_PER_MINUTE must be at least"):
        QuarantineSettings()
    monkeypatch.setenv("SLUICE_REVIEW_ROWS_PER_MINUTE", "5000")
    monkeypatch.setenv("SLUICE_REVIEW_MAX_ROWS_PER_REQUEST", "501")  # over the API's own bound
    with pytest.raises(ValidationError, match="review_max_rows_per_request"):
        QuarantineSettings()


def test_the_rollups_are_kept_ten_years_and_never_shorter_than_the_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SLUICE_DB_DSN": "postgresql://owner@db/s",
        "SLUICE_JOBS_TABLE": "jobs",
        "SLUICE_INGEST_QUEUE_URL": "https://sqs.local/ingest",
        "SLUICE_DEAD_LETTER_QUEUE_URL": "https://sqs.local/dlq",
    }.items():
        monkeypatch.setenv(name, value)

    defaults = MaintenanceSettings()
    assert (defaults.retention_years, defaults.rollup_retention_years) == (5, 10)

    monkeypatch.setenv("SLUICE_ROLLUP_RETENTION_YEARS", "5")
    assert MaintenanceSettings().rollup_retention_years == 5  # as long as the readings: allowed
    monkeypatch.setenv("SLUICE_ROLLUP_RETENTION_YEARS", "4")
    with pytest.raises(ValidationError, match=r"SLUICE_ROLLUP_RETENTION_YEARS \(4\) must be at least SLUICE_RETENTION"):
        MaintenanceSettings()
    monkeypatch.setenv("SLUICE_RETENTION_YEARS", "3")
    assert MaintenanceSettings().rollup_retention_years == 4
