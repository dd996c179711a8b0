"""The local service scripts: the project's own database cluster and the moto server."""

import os
import socket
import subprocess
from collections.abc import Iterator

import boto3
import psycopg
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


def test_the_database_script_reports_the_running_cluster(server_dsn: str) -> None:
    status = subprocess.run(
        ["bash", str(REPO_ROOT / "infra" / "db.sh"), "status"], capture_output=True, text=True, check=False
    )

    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.startswith("running: postgresql://postgres@127.0.0.1:5433/sluice")
    with psycopg.connect(server_dsn) as conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
        assert preload == ("timescaledb",)
