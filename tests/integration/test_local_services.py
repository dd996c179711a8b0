"""The local service scripts: the project's own database cluster and the moto server."""

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from ..paths import REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def moto(command: str, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO_ROOT / "infra" / "moto.sh"), command],
        env={**os.environ, "MOTO_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def moto_port() -> Iterator[int]:
    port = free_port()
    yield port
    moto("stop", port)


def test_moto_server_starts_serves_aws_apis_and_stops(moto_port: int) -> None:
    started = moto("start", moto_port)
    assert started.returncode == 0, started.stderr
    assert moto("start", moto_port).returncode == 0  # twice is fine
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{moto_port}",
        region_name="eu-central-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket="sluice-test", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_object(Bucket="sluice-test", Key="incoming/a.json", Body=b"{}")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="sluice-test")["Contents"]] == ["incoming/a.json"]
    assert moto("status", moto_port).stdout.startswith("running")

    stopped = moto("stop", moto_port)

    assert stopped.returncode == 0, stopped.stderr
    status = moto("status", moto_port)
    assert status.returncode == 3
    assert status.stdout.strip() == "stopped"
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", moto_port)) != 0


def test_the_database_script_leaves_a_server_of_the_users_own_alone(tmp_path: Path) -> None:
    # Given SLUICE_DB_DSN naming another server, and a cluster home nobody has made
    home = tmp_path / "pg"
    env = {
        **os.environ,
        "SLUICE_DB_DSN": "postgresql://sluice@db.example.invalid:5432/sluice",
        "SLUICE_DB_HOME": str(home),
    }

    # When make test or make run ask for the database
    ensured = subprocess.run(
        ["bash", str(REPO_ROOT / "infra" / "db.sh"), "ensure"], capture_output=True, text=True, env=env, check=False
    )

    # Then nothing is installed or started: the DSN's server is used as it is
    assert ensured.returncode == 0, ensured.stderr
    assert "names a server other than this checkout's cluster" in ensured.stderr
    assert not home.exists()


@pytest.mark.parametrize(
    ("dsn", "owned"),
    [
        ("postgresql://postgres@127.0.0.1:5433/sluice", True),
        ("postgresql://postgres@localhost:5433/other?sslmode=disable", True),
        ("host=127.0.0.1 port=5433 dbname=sluice", True),
        ("postgresql://sluice:secret@db.example.invalid:5433/sluice", False),
        ("postgresql://postgres@127.0.0.1:5434/sluice", False),
        ("postgresql://postgres@127.0.0.1/sluice", False),
        ("host=db.example.invalid port=5433", False),
    ],
)
def test_the_database_script_knows_which_dsn_names_its_cluster(dsn: str, owned: bool) -> None:
    asked = subprocess.run(
        ["bash", str(REPO_ROOT / "infra" / "db.sh"), "owns-dsn"],
        capture_output=True,
        text=True,
        env={**os.environ, "SLUICE_DB_DSN": dsn, "SLUICE_DB_PORT": "5433"},
        check=False,
    )

    assert asked.returncode == (0 if owned else 1), asked.stderr
