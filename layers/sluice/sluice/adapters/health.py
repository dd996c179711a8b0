"""The deep health check: can this deployment reach everything it depends on, and is the schema current?

Each dependency is checked with the cheapest call that proves it answers, all at once in threads, so the answer
takes as long as the slowest dependency, not the sum. A check never raises: a fault is its detail.
"""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from psycopg import sql

from sluice import __version__
from sluice.adapters.aws import probe_clients
from sluice.adapters.migrations import SCHEMA_VERSION, VERSION_TABLE
from sluice.adapters.timescale import DatabaseConnector
from sluice.errors import SchemaBehindError
from sluice.models.api import DeepHealth, HealthCheck
from sluice.settings import HealthSettings

_NEWEST_MIGRATION = sql.SQL("SELECT max(version) FROM {}").format(sql.Identifier(VERSION_TABLE))


@dataclass(frozen=True, slots=True)
class HealthService:
    """HealthFunction's view of the deployment, built once per execution environment."""

    settings: HealthSettings
    connector: DatabaseConnector

    def deep_check(self) -> DeepHealth:
        """Every dependency checked; ``degraded`` when any fails."""
        checks: dict[str, Callable[[], str]] = {
            "database": self._database,
            "bucket": self._bucket,
            "ingest_queue": self._ingest_queue,
            "jobs_table": self._jobs_table,
        }
        with ThreadPoolExecutor(max_workers=len(checks)) as pool:
            futures = {name: pool.submit(_timed, check) for name, check in checks.items()}
            results = {name: future.result() for name, future in futures.items()}
        status = "ok" if all(check.ok for check in results.values()) else "degraded"
        return DeepHealth(status=status, version=__version__, checks=results)

    def _database(self) -> str:
        row = self.connector.checked_connection().execute(_NEWEST_MIGRATION).fetchone()
        applied = None if row is None else row[0]
        if applied is None or applied < SCHEMA_VERSION:
            raise SchemaBehindError(f"schema version {applied}, this code needs {SCHEMA_VERSION}: run the migrations")
        newer = f" (newer than this code's {SCHEMA_VERSION})" if applied > SCHEMA_VERSION else ""
        return f"reachable, schema version {applied}{newer}"

    def _bucket(self) -> str:
        probe_clients()[0].head_bucket(Bucket=self.settings.batch_bucket)
        return f"bucket {self.settings.batch_bucket} reachable"

    def _ingest_queue(self) -> str:
        depth = self._depth(self.settings.ingest_queue_url)
        parked = self._depth(self.settings.dead_letter_queue_url)
        return f"{depth} messages waiting, {parked} in the dead-letter queue"

    def _jobs_table(self) -> str:
        table = probe_clients()[2].describe_table(TableName=self.settings.jobs_table)["Table"]
        return f"table {self.settings.jobs_table} is {table.get('TableStatus', 'UNKNOWN')}"

    @staticmethod
    def _depth(queue_url: str) -> int:
        attributes = probe_clients()[1].get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", 0))


def _timed(check: Callable[[], str]) -> HealthCheck:
    started = time.perf_counter()
    try:
        detail, ok = check(), True
    except Exception as exc:  # every fault is a failed check: reported, never raised
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return HealthCheck(ok=ok, latency_ms=round((time.perf_counter() - started) * 1000, 1), detail=detail)
