"""The functions' database connection verifies the server by default: the DSN built from the database secret."""

import json
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from sluice.adapters.timescale import dsn_from_secret, root_certificate_file
from sluice.settings import FunctionDatabaseSettings

SECRET = {"host": "db.example.internal", "port": 5432, "username": "sluice_worker", "password": "pw", "dbname": "s"}


def test_a_secret_without_sslmode_verifies_the_server_against_the_platforms_trust_store() -> None:
    dsn = conninfo_to_dict(dsn_from_secret(json.dumps(SECRET)))

    assert (dsn["sslmode"], dsn["sslrootcert"]) == ("verify-full", "system")


def test_a_shipped_ca_file_is_the_root_certificate_when_named() -> None:
    dsn = conninfo_to_dict(dsn_from_secret(json.dumps(SECRET), "/opt/sluice/rds-global-bundle.pem"))

    assert (dsn["sslmode"], dsn["sslrootcert"]) == ("verify-full", "/opt/sluice/rds-global-bundle.pem")


@pytest.mark.parametrize("sslmode", ["disable", "require"])
def test_a_secret_may_still_name_a_weaker_sslmode_which_takes_no_root_certificate(sslmode: str) -> None:
    # libpq refuses sslrootcert=system beside any mode but verify-full, so a CA is only named where it is checked.
    dsn = conninfo_to_dict(dsn_from_secret(json.dumps(SECRET | {"sslmode": sslmode})))

    assert dsn["sslmode"] == sslmode
    assert "sslrootcert" not in dsn


def test_the_root_certificate_setting_defaults_to_the_system_store_and_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLUICE_DB_DSN", "postgresql://worker@db.internal/sluice")
    monkeypatch.delenv("SLUICE_DB_SSLROOTCERT", raising=False)
    assert FunctionDatabaseSettings().db_sslrootcert == "system"

    monkeypatch.setenv("SLUICE_DB_SSLROOTCERT", "/opt/ca.pem")
    assert FunctionDatabaseSettings().db_sslrootcert == "/opt/ca.pem"


def test_the_system_store_is_the_platforms_ca_bundle_as_pythons_openssl_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # psycopg's binary wheel bundles an OpenSSL whose own default store does not exist: libpq's "system" would
    # trust nothing, so the bundle is named by path.
    bundle = tmp_path / "ca-bundle.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))

    assert root_certificate_file("system") == str(bundle)
    assert root_certificate_file("/opt/python/sluice/certs/db-ca.pem") == "/opt/python/sluice/certs/db-ca.pem"


def test_without_a_bundle_python_can_find_libpq_looks_for_the_system_store_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.crt"))

    assert root_certificate_file("system") == "system"
