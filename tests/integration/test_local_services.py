"""The local service scripts: the project's own database cluster and the moto server."""

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import boto3
import psycopg
import pytest

from sluice.settings import get_database_settings

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


def test_run_brings_up_the_stack_and_stops_what_it_started(server_dsn: str) -> None:
    port = free_port()
    run = subprocess.Popen(
        ["bash", str(REPO_ROOT / "infra" / "run.sh")],
        env={**os.environ, "MOTO_PORT": str(port), "SLUICE_DEMO_TENANT": "run-test"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert run.stdout is not None
        banner = []
        for line in run.stdout:
            banner.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        output = "".join(banner)
        assert "Sluice is running" in output, output
        assert f"http://127.0.0.1:{port}" in output
        assert moto("status", port).returncode == 0
        with psycopg.connect(get_database_settings().db_dsn) as conn:
            demo = conn.execute("SELECT id FROM systems WHERE tenant_id = 'run-test'").fetchone()
        assert demo is not None
        assert str(demo[0]) in output
        assert_template_resources_serve_drops(port, output)
    finally:
        os.killpg(run.pid, signal.SIGINT)
        run.communicate(timeout=30)
        exit_code = run.returncode
        with psycopg.connect(get_database_settings().db_dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM systems WHERE tenant_id = 'run-test'")

    assert exit_code == 0
    assert moto("status", port).returncode == 3
    # The database was already up (the test session needs it), so the run left it running.
    with psycopg.connect(server_dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def assert_template_resources_serve_drops(port: int, banner: str) -> None:
    """The moto server holds template.yaml's bucket, named in the banner, and a drop reaches the queue."""
    endpoint = f"http://localhost:{port}"
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-central-1"
    )
    s3 = session.client("s3", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    bucket = "sluice-local-batches-123456789012-eu-central-1"
    assert f"bucket      {bucket}" in banner
    s3.put_object(
        Bucket=bucket, Key="drops/run-test/sample.csv", Body=(REPO_ROOT / "tests/data/drops/sample.csv").read_bytes()
    )
    queue = sqs.get_queue_url(QueueName="sluice-local-IngestQueue")["QueueUrl"]
    bodies = [
        m["Body"]
        for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
    ]
    assert any("drops%2Frun-test%2Fsample.csv" in body or "drops/run-test/sample.csv" in body for body in bodies), (
        bodies
    )


def test_a_test_needing_an_unreachable_database_fails_instead_of_skipping() -> None:
    # Given the DSN setting points at a port where nothing listens
    env = {**os.environ, "SLUICE_DB_DSN": "postgresql://postgres@127.0.0.1:1/sluice?connect_timeout=2"}

    # When a database test runs
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/integration/test_schema.py::test_readings_is_a_hypertable_with_seven_day_chunks",
            "-p",
            "no:cacheprovider",
            "--no-cov",
            "-q",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then it errors, naming the DSN, and nothing is skipped
    assert result.returncode == 1, result.stdout
    assert "cannot reach PostgreSQL at" in result.stdout
    assert "127.0.0.1:1" in result.stdout or "port=1" in result.stdout
    assert "1 error" in result.stdout
    assert "skipped" not in result.stdout
