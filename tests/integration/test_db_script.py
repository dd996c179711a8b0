"""infra/db.sh for a checkout that the cluster's owner cannot enter: a clone under root's own home (mode 0700).

As root the cluster belongs to the `postgres` user, who cannot reach such a checkout: db.sh keeps the data under
/var/tmp with a symlink from the checkout, and hands PostgreSQL only resolved paths. Each test copies infra/ into a
checkout under a fresh 0700 directory and runs a cluster of its own there on a free port, stopped and removed after.
"""

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from ..paths import REPO_ROOT
from ..stack_harness import free_port

AS_ROOT = os.geteuid() == 0


@dataclass
class Cluster:
    """A checkout under a 0700 directory, and the cluster db.sh runs for it on ``port``."""

    checkout: Path
    home: Path  # db.sh's pg_home: the checkout's .local/pg, or SLUICE_DB_HOME
    port: int
    env: dict[str, str]

    def db(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.checkout / "infra" / "db.sh"), command],
            env=self.env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/sluice"


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """The checkout's own cluster (.local/pg), or with ``indirect`` parametrisation "SLUICE_DB_HOME" a second one."""
    parent = tmp_path / "home"
    parent.mkdir()
    parent.chmod(0o700)  # whatever the umask
    checkout = parent / "sluice"
    shutil.copytree(REPO_ROOT / "infra", checkout / "infra")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"SLUICE_DB_HOME", "SLUICE_DB_NAME"}}
    env["SLUICE_DB_PORT"] = str(port)
    home = checkout / ".local" / "pg"
    if getattr(request, "param", None) == "SLUICE_DB_HOME":  # a second cluster, as make reliability's pg-faults
        home = checkout / ".local" / "pg-second"
        env["SLUICE_DB_HOME"] = str(home)
    subject = Cluster(checkout, home, port, env)
    try:
        yield subject
    finally:
        stopped = subject.db("stop")
        # The data may live outside the checkout (under /var/tmp): remove it there too, as make clean does.
        if home.is_symlink():
            shutil.rmtree(home.resolve(), ignore_errors=True)
        shutil.rmtree(parent, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stderr


def server_settings(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        settings = {}
        for name in ("data_directory", "unix_socket_directories", "shared_preload_libraries"):
            row = conn.execute(f"SHOW {name}").fetchone()
            assert row is not None
            settings[name] = str(row[0])
        return settings


@pytest.mark.parametrize("cluster", ["default-home", "SLUICE_DB_HOME"], indirect=True)
def test_a_cluster_for_a_checkout_its_owner_cannot_enter_starts_serves_and_stops(cluster: Cluster) -> None:
    started = cluster.db("start")

    assert started.returncode == 0, started.stderr
    resolved = cluster.home.resolve()
    if AS_ROOT:  # postgres cannot enter the 0700 directory: the data lives where it can
        assert cluster.home.is_symlink(), started.stderr
        assert resolved.parent == Path("/var/tmp"), resolved  # noqa: S108 - where db.sh puts it
        assert "the cluster data lives in" in started.stderr
    settings = server_settings(cluster.dsn)
    assert settings["data_directory"] == str(resolved / "data")
    assert settings["unix_socket_directories"] == str(resolved / "run")
    assert settings["shared_preload_libraries"] == "timescaledb"
    assert (resolved / "postgres.log").stat().st_size > 0
    if AS_ROOT:  # nothing PostgreSQL was handed goes through the checkout
        for handed in ("postgresql.conf", "postmaster.pid", "postmaster.opts"):
            assert str(cluster.checkout) not in (resolved / "data" / handed).read_text(encoding="utf-8"), handed

    again = cluster.db("start")  # twice in a row is fine
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    status = cluster.db("status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip() == f"running: {cluster.dsn} (data: {resolved / 'data'})"

    stopped = cluster.db("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stderr
    assert cluster.db("status").returncode == 3
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", cluster.port)) != 0

    restarted = cluster.db("start")  # the same cluster, found through the symlink
    assert restarted.returncode == 0, restarted.stderr
    assert "creating cluster" not in restarted.stderr
    assert server_settings(cluster.dsn)["data_directory"] == str(resolved / "data")


def test_a_cluster_whose_data_is_gone_is_created_again(cluster: Cluster) -> None:
    assert cluster.db("start").returncode == 0
    assert cluster.db("stop").returncode == 0
    shutil.rmtree(cluster.home.resolve())  # as root, under /var/tmp: a tmp cleaner, a reboot

    started = cluster.db("start")

    assert started.returncode == 0, started.stderr
    assert "creating cluster" in started.stderr
    assert server_settings(cluster.dsn)["data_directory"] == str(cluster.home.resolve() / "data")
